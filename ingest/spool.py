"""The collector's on-disk spool: batches kept durably while the database is down.

In: a directory and a byte bound.  Out: one fsynced MessagePack file per batch
(:meth:`Spool.put`), read back oldest first (:meth:`Spool.files`, :meth:`Spool.decode`).
A full spool refuses a batch (the caller then holds its acks, so the broker keeps it).
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import msgspec

from ingest.batcher import Batch
from ingest.validate import EPOCH, DeadLetter

_US = timedelta(microseconds=1)


class Spool:
    """A bounded on-disk spool of encoded batches: one fsynced file per batch."""

    def __init__(self, directory: Path, max_bytes: int) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self.bytes = sum(p.stat().st_size for p in self.dir.glob("*.batch"))

    @staticmethod
    def encode(b: Batch) -> bytes:
        """Batch -> MessagePack (times as epoch microseconds)."""
        def us(t: datetime) -> int:
            return (t - EPOCH) // _US

        return msgspec.msgpack.encode({
            "rows": [(us(r[0]), *r[1:]) for r in b.rows],
            "dead": [(us(d.received_at), d.topic, d.reason, d.payload, d.detail, d.sensor_id)
                     for d in b.dead],
            "status": [(s, st, us(t)) for s, st, t in b.status],
            "dups": b.duplicates,
            "gateways": [(g, us(t), n) for g, t, n in b.gateways],
            "side": [list(x) for x in b.side],
        })

    @staticmethod
    def decode(data: bytes) -> Batch:
        """Inverse of :meth:`encode`."""
        doc = msgspec.msgpack.decode(data)
        return Batch(
            tuple((EPOCH + r[0] * _US, *r[1:]) for r in doc["rows"]),
            tuple(DeadLetter(EPOCH + d[0] * _US, d[1], d[2], d[3], d[4], d[5])
                  for d in doc["dead"]),
            tuple((s, st, EPOCH + t * _US) for s, st, t in doc["status"]),
            doc.get("dups", 0),
            tuple((g, EPOCH + t * _US, n) for g, t, n in doc.get("gateways", ())),
            tuple(tuple(x) for x in doc.get("side", ())))

    def put(self, b: Batch) -> bool:
        """Write a batch durably; False when the spool is full (caller must not ack)."""
        data = self.encode(b)
        with self._lock:
            if self.bytes + len(data) > self.max_bytes:
                return False
            self.bytes += len(data)
        name = f"{time.time_ns():020d}-{uuid.uuid4().hex[:8]}"
        tmp = self.dir / (name + ".tmp")
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.rename(self.dir / (name + ".batch"))
        dfd = os.open(self.dir, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return True

    def files(self) -> list[Path]:
        """Spooled batch files, oldest first."""
        return sorted(self.dir.glob("*.batch"))

    def remove(self, path: Path) -> None:
        """Forget a batch that has been committed."""
        size = path.stat().st_size
        path.unlink()
        with self._lock:
            self.bytes -= size
