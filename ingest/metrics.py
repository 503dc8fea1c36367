"""The collector's Prometheus metrics: their names (the one place they are spelled) and parsing.

In: nothing (``Metrics()``), or the text of a ``/metrics`` page (:func:`parse`).  Out: the
metrics in their own registry; :func:`parse` gives ``{name: value}`` summed over labels for
counters (without ``_total``) and gauges, with histogram ``_sum``/``_count``/``_bucket``
samples kept under their sample names.  Dashboards and benchmarks import the names from here.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.parser import text_string_to_metric_families

PREFIX = "citypulse_ingest_"
MESSAGES = PREFIX + "messages"
STORED = PREFIX + "readings_stored"
DEAD_LETTERS = PREFIX + "dead_letters"
COMMIT_SECONDS = PREFIX + "batch_commit_seconds"
BATCH_ROWS = PREFIX + "batch_rows"
LAG_SECONDS = PREFIX + "lag_seconds"
ARRIVAL_SECONDS = PREFIX + "arrival_to_commit_seconds"
SPOOL_BYTES = PREFIX + "spool_bytes"
SEQ_GAPS = PREFIX + "seq_gaps"
SEQ_LATE = PREFIX + "seq_late"
DUPLICATES = PREFIX + "duplicates"
INTERNAL_ERRORS = PREFIX + "internal_errors"
DB_ERRORS = PREFIX + "db_errors"
QUEUE = PREFIX + "queue_messages"
RECEIVE_MAX_EXCEEDED = PREFIX + "receive_max_exceeded"
CONNECTED = PREFIX + "mqtt_connected"
COMMITTED_PUBLISHED = PREFIX + "committed_published"

LAG_BUCKETS = (0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.5, 0.75, 1.0,
               1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0, 300.0)


def total(name: str) -> str:
    """The sample name of a counter (``<name>_total``)."""
    return name + "_total"


class Metrics:
    """The collector's Prometheus metrics, in their own registry."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.messages = Counter(MESSAGES, "MQTT messages received (source: native = the wire "
                                "contract's topics, else the adapter)", ["kind", "source"],
                                registry=r)
        self.stored = Counter(STORED, "Reading rows committed", registry=r)
        self.dead = Counter(DEAD_LETTERS, "Dead letters committed", ["reason"], registry=r)
        self.commit = Histogram(COMMIT_SECONDS, "Batch commit latency", registry=r)
        self.batch_rows = Histogram(BATCH_ROWS, "Rows per batch", registry=r,
                                    buckets=(1, 10, 100, 1000, 5000, 10000, 20000, 50000))
        self.lag = Histogram(LAG_SECONDS, "Sensor timestamp to commit (sampled)",
                             buckets=LAG_BUCKETS, registry=r)
        self.arrival = Histogram(ARRIVAL_SECONDS, "Arrival (receipt from the broker) to commit,"
                                 " the oldest message of each batch", buckets=LAG_BUCKETS,
                                 registry=r)
        self.spool_bytes = Gauge(SPOOL_BYTES, "Bytes in the on-disk spool", registry=r)
        self.seq_gaps = Counter(SEQ_GAPS, "Seqs skipped when a sensor's seq jumped ahead",
                                registry=r)
        self.seq_late = Counter(SEQ_LATE, "Readings arriving below their sensor's highest "
                                "seq (fill gaps); loss = seq_gaps - seq_late", registry=r)
        self.duplicates = Counter(DUPLICATES, "Duplicate metric values dropped", registry=r)
        self.internal = Counter(INTERNAL_ERRORS, "Unexpected exceptions", registry=r)
        self.db_errors = Counter(DB_ERRORS, "Database errors", ["kind"], registry=r)
        self.queue = Gauge(QUEUE, "Messages received, not yet acked", registry=r)
        self.receive_max_exceeded = Counter(
            RECEIVE_MAX_EXCEEDED, "Messages received past the Receive Maximum the collector "
            "declared (a broker ignoring MQTT 5 flow control)", registry=r)
        self.connected = Gauge(CONNECTED, "1 while connected and subscribed", registry=r)
        self.committed_published = Counter(
            COMMITTED_PUBLISHED, "Committed batches announced on the internal topic "
            "(CITYPULSE_STA_MQTT); failures count as internal errors", registry=r)

    def value(self, name: str, **labels: str) -> float:
        """Current value of a sample (0 when absent)."""
        return self.registry.get_sample_value(name, labels or None) or 0.0


def samples(text: str):
    """Every sample of a Prometheus text page (the one parser of it in citypulse)."""
    for fam in text_string_to_metric_families(text):
        yield from fam.samples
