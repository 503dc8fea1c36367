"""A broker sending past the collector's Receive Maximum is counted and logged; nothing is lost.

Real private Mosquitto, no database: the test plays the writers (it takes and acks).
Mosquitto before 2.0.13 (Debian 12 ships 2.0.11) sends another Receive Maximum of queued
messages on every ack; a compliant broker never does, and then the count is 0.
"""

import logging
import uuid

from citypulse.settings import Settings
from citypulse.wire import topics as wt
from ingest.metrics import Metrics
from ingest.session import Session
from tests.ingest.conftest import Publisher, wait_until
from tests.support import wait_for

SENT = 200
WINDOW = 10


def _session(broker, tmp_path) -> tuple[str, Session, Metrics, list[int]]:
    """A connected session with a window of WINDOW on its own prefix, and what it held.

    ``held``: the messages the session held unacked as it took in each one.
    """
    prefix = "ib" + uuid.uuid4().hex[:8]
    s = Settings(mqtt_url=broker.url, topic_prefix=prefix, max_inflight_messages=WINDOW,
                 spool_dir=tmp_path / "spool")
    metrics = Metrics()
    session = Session(s, "ib-" + uuid.uuid4().hex[:8], metrics)
    held: list[int] = []
    put = session.inbox.put
    session.inbox.put = lambda m: (put(m), held.append(session.pending))
    session.accepting.set()
    session.connect()
    wait_until(lambda: metrics.value("citypulse_ingest_mqtt_connected") == 1, 15)
    return prefix, session, metrics, held


def test_messages_past_the_receive_maximum_are_counted(broker, tmp_path, caplog):
    prefix, session, metrics, held = _session(broker, tmp_path)
    pub = Publisher(broker.port)
    caplog.set_level(logging.WARNING, "citypulse.ingest")
    try:
        for i in range(SENT):
            pub.publish(wt.telemetry(f"s{i % 7}", prefix), {"values": {"speed_kmh": i % 100}})
        pub.close(sent=SENT)
        received = 0
        while received < SENT:  # the writers' part: take what came, ack it, again
            assert wait_until(lambda done=received: len(session.inbox) >= WINDOW
                              or done + len(session.inbox) >= SENT, 30), "receiving stopped"
            msgs = session.inbox.take(max_readings=10**6, max_ms=1)
            received += len(msgs)
            session.ack(msgs)
        assert received == SENT  # nothing lost, whichever broker
        past = sum(1 for h in held if h > WINDOW)
        assert metrics.value("citypulse_ingest_receive_max_exceeded_total") == past
        warned = [r for r in caplog.records if "event=receive_maximum_exceeded" in r.getMessage()]
        assert len(warned) == (1 if past else 0)
    finally:
        session.close()


def test_past_the_receive_maximum_the_backlog_waits_at_the_broker(broker, tmp_path):
    """Over its bound the session stops reading the socket: TCP holds the broker back.

    Whichever broker: the session never holds more than one packet past the Receive Maximum
    (a broker ignoring it would otherwise push another window on every ack), and every
    message still arrives once acks free the window.
    """
    prefix, session, _metrics, held = _session(broker, tmp_path)
    pub = Publisher(broker.port)
    pad = "x" * 4000  # big messages: a 64 KB read would otherwise take in 16 at once
    sent = 400
    try:
        for i in range(sent):
            pub.publish(wt.telemetry(f"s{i % 7}", prefix), {"values": {"n": i}, "pad": pad})
        pub.close(sent=sent)
        received = 0
        while received < sent:  # the writers' part, in small steps: many acks
            assert wait_for(lambda: len(session.inbox) > 0, 30, 0.005), "receiving stopped"
            msgs = session.inbox.take(max_readings=10**6, max_ms=1, max_msgs=3)
            received += len(msgs)
            session.ack(msgs)
        assert received == sent and len(held) == sent  # nothing lost, nothing twice
        assert max(held) <= WINDOW + 1, max(held)
    finally:
        session.close()
