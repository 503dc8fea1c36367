"""The collector's session holds at most its bound of unacked messages, whatever the broker sends.

Real private Mosquitto, no database: the test plays the writers (it acks).  Mosquitto before
2.0.13 (Debian 12 ships 2.0.11) sends up to another Receive Maximum of queued messages on
every ack, so without the session's own guard what it holds grows with every ack.
"""

import uuid

import pytest

from citypulse.settings import Settings
from citypulse.wire import topics as wt
from ingest.metrics import Metrics
from ingest.session import Session
from tests.ingest.conftest import Publisher, wait_until

PAYLOAD = b'{"values":{"speed_kmh":1.0},"pad":"' + b"x" * 4000 + b'"}'
PER_READ = 65536 // len(PAYLOAD) + 1  # the guard is asked before each 64 KB read, not each packet
SENT = 200


@pytest.mark.parametrize("bound", ["messages", "bytes"])
def test_what_the_session_holds_stays_bounded_and_nothing_is_lost(broker, tmp_path, bound):
    prefix = "ib" + uuid.uuid4().hex[:8]
    if bound == "messages":  # the declared Receive Maximum
        s = Settings(mqtt_url=broker.url, topic_prefix=prefix, max_inflight_messages=10,
                     spool_dir=tmp_path / "spool")
    else:  # 80 B x 10 readings x (2 writers + 2) = 3,200 B: one 4 KB message fills it
        s = Settings(mqtt_url=broker.url, topic_prefix=prefix, max_inflight_messages=1000,
                     batch_max_readings=10, spool_dir=tmp_path / "spool")
    limit = min(s.max_inflight_messages, -(-3200 // len(PAYLOAD)) if bound == "bytes" else 10**9)
    metrics = Metrics()
    session = Session(s, "ib-" + uuid.uuid4().hex[:8], metrics)
    held: list[int] = []  # what the session held at each message it took in
    put = session.inbox.put
    session.inbox.put = lambda m: (put(m), held.append(session.pending))
    session.accepting.set()
    session.connect()
    wait_until(lambda: metrics.value("citypulse_ingest_mqtt_connected") == 1, 15)
    pub = Publisher(broker.port)
    try:
        for i in range(SENT):
            pub.publish(wt.telemetry(f"s{i % 7}", prefix), PAYLOAD)
        pub.close(sent=SENT)
        received = 0
        while received < SENT:  # the writers' part: take what came, ack it, again
            assert wait_until(lambda: len(session.inbox) >= limit
                              or received + len(session.inbox) >= SENT, 30), "receiving stopped"
            msgs = session.inbox.take(max_readings=10**6, max_ms=1)
            received += len(msgs)
            session.ack(msgs)
        assert received == SENT  # nothing lost: what was held back waited at the broker
        assert max(held) >= limit  # the bound was reached ...
        assert max(held) <= limit + PER_READ, (max(held), limit)  # ... and not passed
        if bound == "bytes":  # the broker had all 200 to send: only the guard held them
            assert metrics.value("citypulse_ingest_read_holds_total") > 0
    finally:
        session.close()
