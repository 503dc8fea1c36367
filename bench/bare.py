"""The bare pipeline ``citypulse bench ingest --baseline`` compares against.

paho (one subscriber, MQTT 5, QoS 1, paho's automatic acks on receipt) -> msgspec typed
decode -> binary COPY in batches into a table with one index on (sensor, time).  No
validation, no dedup, no spool, no dead letters, no metrics: the floor a collector is
measured against.  Run as ``python -m bench.bare SPEC.json``; it prints ``ready`` once
subscribed, keeps ``{"stored": n}`` in the spec's ``stats`` file after each commit and, on
SIGTERM, writes the final stats (with sampled sensor -> commit lags) and exits.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
from datetime import UTC, datetime

import msgspec
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.subscribeoptions import SubscribeOptions
from psycopg import sql

from citypulse.wire import topics as wt

COLUMNS = ("time", "sensor", "seq", "v0", "v1")
TYPES = ("timestamptz", "int4", "int8", "float8", "float8")


def create_table(conn: psycopg.Connection, table: str) -> None:
    """The bare pipeline's table: one row per reading, one index."""
    t = sql.Identifier(table)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(t))
    conn.execute(sql.SQL("CREATE TABLE {} (time timestamptz NOT NULL, sensor int4 NOT NULL, "
                         "seq int8, v0 float8, v1 float8)").format(t))
    conn.execute(sql.SQL("CREATE INDEX ON {} (sensor, time)").format(t))


class _Item(msgspec.Struct):
    values: dict[str, float]
    ts: int | None = None
    seq: int | None = None


class Bare:
    """Subscriber + one writer thread (see module docstring)."""

    def __init__(self, spec: dict) -> None:
        self.spec = spec
        prefix = spec["prefix"]
        self.index = {sid: i for i, sid in enumerate(spec["sensor_ids"])}
        self.topic_sid = {wt.telemetry(sid, prefix): sid for sid in spec["sensor_ids"]}
        self.rows: list[tuple] = []
        self.lock = threading.Lock()
        self.stored = 0
        self.lags: list[float] = []
        self.stop = threading.Event()
        dec = msgspec.msgpack if spec["encoding"] == "msgpack" else msgspec.json
        self.dec_one = dec.Decoder(_Item)
        self.dec_gw = dec.Decoder(dict[str, list[_Item]])
        self.errors = 0

    def on_message(self, client, userdata, msg) -> None:
        """Decode a message into rows (paho acks it when this returns)."""
        try:
            sid = self.topic_sid.get(msg.topic)
            index = self.index
            if sid is not None:
                it = self.dec_one.decode(msg.payload)
                v = it.values
                new = [(datetime.fromtimestamp(it.ts / 1000, UTC), index[sid], it.seq,
                        v.get("vehicle_count"), v.get("speed_kmh"))]
            else:
                new = [(datetime.fromtimestamp(it.ts / 1000, UTC), index[s], it.seq,
                        it.values.get("vehicle_count"), it.values.get("speed_kmh"))
                       for s, items in self.dec_gw.decode(msg.payload).items() for it in items]
            with self.lock:
                self.rows.extend(new)
        except Exception:  # noqa: BLE001 - a bare pipeline: count and drop
            self.errors += 1

    def writer(self) -> None:
        """COPY what was received every 0.1 s, one transaction each."""
        copy_sql = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
            sql.Identifier(self.spec["table"]), sql.SQL(", ").join(map(sql.Identifier, COLUMNS)))
        with psycopg.connect(self.spec["database_url"]) as conn:
            while True:
                stopping = self.stop.wait(0.1)
                with self.lock:
                    rows, self.rows = self.rows, []
                if rows:
                    with conn.cursor() as cur, cur.copy(copy_sql) as copy:
                        copy.set_types(TYPES)
                        for r in rows:
                            copy.write_row(r)
                    conn.commit()
                    now = datetime.now(UTC)
                    step = max(1, len(rows) // 64)
                    self.lags.extend((now - r[0]).total_seconds() for r in rows[::step])
                    self.stored += len(rows)
                    self._stats()
                if stopping and not rows:
                    return

    def _stats(self, final: bool = False) -> None:
        path = self.spec["stats"]
        doc = {"stored": self.stored, "errors": self.errors}
        if final:
            doc["lags"] = self.lags
        with open(path + ".tmp", "w") as f:
            json.dump(doc, f)
        os.replace(path + ".tmp", path)

    def run(self) -> None:
        """Subscribe, print ``ready``, receive until SIGTERM, flush, write the final stats."""
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=self.spec["client_id"],
                        protocol=mqtt.MQTTv5)
        c.on_message = self.on_message
        ready = threading.Event()
        c.on_connect = lambda cl, *_a: cl.subscribe(
            [(t, SubscribeOptions(qos=1)) for t in wt.ingest_subscriptions(self.spec["prefix"])])
        c.on_subscribe = lambda *_a: ready.set()
        c.connect(self.spec["host"], self.spec["port"], keepalive=60)
        w = threading.Thread(target=self.writer, daemon=True)
        w.start()
        signal.signal(signal.SIGTERM, lambda *_a: c.disconnect())
        while not ready.is_set():
            c.loop(0.05)
        self._stats()
        print("ready", flush=True)
        c.loop_forever()
        self.stop.set()
        w.join(60)
        self._stats(final=True)


def main(argv: list[str]) -> None:
    """``python -m bench.bare SPEC.json``."""
    with open(argv[0]) as f:
        Bare(json.load(f)).run()


if __name__ == "__main__":
    main(sys.argv[1:])
