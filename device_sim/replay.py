"""Replay of a recorded feed: the same messages, in the same order, with the same timing.

In: a recording written by ``citypulse sim run --record`` (Parquet: offset_s, topic, payload,
qos, retain), a broker URL and a speed factor (1 = recorded timing, 10 = ten times faster,
0 = as fast as possible).  Out: the messages re-sent over one connection (so their order is
kept) and a summary dict (messages, seconds, messages/s, errors).
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import polars as pl

from device_sim.mqtt import Publisher


def replay(path: str | Path, mqtt_url: str, speed: float = 1.0, *, qos: int | None = None,
           max_inflight: int = 200, ca_file: Path | None = None, prefix: str | None = None,
           progress: Callable[[int, int], None] | None = None) -> dict:
    """Re-send the recording at ``path``; see module docstring.

    ``prefix`` replaces the first topic level (e.g. replay a ``city`` feed under ``test``).
    """
    df = pl.read_parquet(path, columns=["offset_s", "topic", "payload", "qos", "retain"])
    if prefix:
        rest = pl.col("topic").str.splitn("/", 2).struct.field("field_1")
        df = df.with_columns((pl.lit(prefix + "/") + rest).alias("topic"))
    pub = Publisher(mqtt_url, f"citypulse-replay-{uuid.uuid4().hex[:8]}",
                    max_inflight=max_inflight, ca_file=ca_file)
    pub.connect()
    n = df.height
    first = df["offset_s"][0] if n else 0.0
    t0 = time.monotonic()
    sent = 0
    for i, (off, topic, payload, q, retain) in enumerate(df.iter_rows()):
        if speed > 0:
            wait = t0 + (off - first) / speed - time.monotonic()
            while wait > 0:
                pub.pump(min(wait, 0.05))
                wait = t0 + (off - first) / speed - time.monotonic()
        if pub.publish(topic, payload, qos=q if qos is None else qos, retain=bool(retain)):
            sent += 1
        if progress and i % 5000 == 0:
            progress(i, n)
    pub.close()
    elapsed = max(time.monotonic() - t0, 1e-6)
    if progress:
        progress(n, n)
    return {"messages": sent, "recorded": n, "seconds": round(elapsed, 3),
            "messages_per_s": round(sent / elapsed, 1), "publish_errors": pub.errors,
            "speed": speed}
