"""citypulse: IoT sensing and digital twin for the Dishui Lake city.

Cross-cutting pieces live here, each in one place: :mod:`citypulse.settings` (the typed
settings), :mod:`citypulse.catalogue` (sensor kinds and metrics), :mod:`citypulse.wire`
(the MQTT wire contract), :mod:`citypulse.schema` (the store's schema and interface),
:mod:`citypulse.stack` (private local services) and :mod:`citypulse.cli` (the command line).
The pipeline stages are the top-level packages device_sim, ingest, twin, analytics and
dashboards; data flows one way through them.
"""

__version__ = "0.1.0"
