"""SensorThings API 1.1 (sensing, read): so far the ``$filter``/``$orderby`` parser only."""
