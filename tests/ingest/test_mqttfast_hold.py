"""``BufferedClient``'s hold: the socket stays unread while the receiver holds too much.

The end-to-end behaviour against a real broker is in
``tests/ingest/integration/test_inflight_bound.py``; this checks the keepalive rule on a
clock the test moves.
"""

import paho.mqtt.client as mqtt

from ingest import mqttfast
from ingest.mqttfast import BufferedClient


def test_a_long_hold_still_reads_once_every_third_of_the_keepalive(monkeypatch):
    c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c._keepalive = 30
    now = [100.0]
    monkeypatch.setattr(mqttfast.time, "monotonic", lambda: now[0])
    waits: list[float] = []
    over = [True]
    c.hold = lambda timeout: waits.append(timeout) or over[0]
    assert c._holding(0.05)      # held from now on
    now[0] += 9.9
    assert c._holding(0)
    now[0] += 0.2                # a third of the keepalive: one read, so bytes keep arriving
    assert not c._holding(0)
    assert c._holding(0)         # then held again, for another third
    now[0] += 9.9
    assert c._holding(0)
    over[0] = False              # the receiver caught up: reading resumes at once
    assert not c._holding(0) and not c._holding(0)
    assert waits[0] == 0.05 and set(waits[1:]) == {0}


def test_without_a_hold_the_client_reads_as_paho_does():
    c = BufferedClient(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    assert c.hold is None and not c._holding(0.05)
