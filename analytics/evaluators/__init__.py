"""The built-in rule evaluators, one module per family, registered by rule ``type``.

In: nothing; importing this package fills :data:`analytics.findings.EVALUATORS`.  A new
family is a module here with ``@evaluator("type")`` functions, imported below.
"""

from analytics.evaluators import (  # noqa: F401 - imported to register
    anomaly,
    crowd,
    flood,
    offline,
    rate,
    threshold,
    traffic,
)
