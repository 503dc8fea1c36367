"""The inbox cuts a batch at a share of the in-flight window, not only at its size or age."""

import threading

from citypulse.settings import Settings
from ingest.batcher import Inbox, Message, take

HOUR_MS = 3_600_000


def _msg(i: int) -> Message:
    return Message(0, i + 1, 1, "city/v1/telemetry/t1", b'{"values":{"speed_kmh":1}}', 0, None,
                   False)


def _take_in_thread(inbox: Inbox, **kw) -> tuple[threading.Thread, list]:
    got: list = []
    t = threading.Thread(target=lambda: got.append(inbox.take(**kw)), daemon=True)
    t.start()
    return t, got


def test_a_window_share_of_messages_ends_the_wait():
    """With the window's share waiting, take returns them instead of waiting out max_ms."""
    inbox = Inbox()
    inbox.put(_msg(0))
    t, got = _take_in_thread(inbox, max_readings=50_000, max_ms=HOUR_MS, max_msgs=3)
    inbox.put(_msg(1))
    inbox.put(_msg(2))
    t.join(60)
    assert not t.is_alive(), "take waited for max_ms although max_msgs messages were waiting"
    assert [m.mid for m in got[0]] == [1, 2, 3]
    assert len(inbox) == 0


def test_more_than_the_share_leaves_the_rest_for_the_next_batch():
    inbox = Inbox()
    for i in range(7):
        inbox.put(_msg(i))
    first = inbox.take(max_readings=50_000, max_ms=HOUR_MS, max_msgs=3)
    second = inbox.take(max_readings=50_000, max_ms=HOUR_MS, max_msgs=3)
    assert [m.mid for m in first] == [1, 2, 3]
    assert [m.mid for m in second] == [4, 5, 6]
    assert len(inbox) == 1


def test_the_share_comes_from_the_window_and_the_writers():
    """``take`` cuts at max_inflight_messages / (writers + 1): 9 / 3 = 3 here."""
    inbox = Inbox()
    for i in range(5):
        inbox.put(_msg(i))
    s = Settings(max_inflight_messages=9, writer_connections=2, batch_max_ms=HOUR_MS)
    assert [m.mid for m in take(inbox, s)] == [1, 2, 3]
    assert len(inbox) == 2
