"""The dashboards' data sources, one module per concern (see :mod:`dashboards.data`)."""
