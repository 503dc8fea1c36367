"""Downlinks: commands to devices that came through a source adapter, on that source's wire.

In: a source name (``thingsboard``, ``chirpstack``, ``ttn``; more by adding a module to :data:`BUILTIN`
that defines ``DOWNLINK``, a :class:`~control.downlinks.base.Downlink` named like its source
in :mod:`ingest.sources`).  Out: the downlink, which turns a command record and the device's
:class:`~control.downlinks.base.Route` (from ``citypulse.source_devices``, written by the
collector) into the message to publish, and the source's answers into
:class:`~control.downlinks.base.Answer` s for the worker.  Never raises on a message::

    dl = get("thingsboard")                    # KeyError naming the known downlinks
    route = routes(conn, ["vms-1"], [dl])["vms-1"]
    topic, body = dl.request(record, route)
    for a in dl.answers(topic, payload):
        command_id, device_id = command_of(conn, dl.name, a)   # None: no such command
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import Any
from uuid import UUID

import psycopg

from control.downlinks.base import Answer, Downlink, Route

__all__ = ["Answer", "Downlink", "Route", "available", "command_of", "get", "routes"]

BUILTIN = (
    "control.downlinks.thingsboard",
    "control.downlinks.chirpstack",
    "control.downlinks.ttn",
)


@cache
def _registry() -> dict[str, Downlink]:
    out: dict[str, Downlink] = {}
    for mod in BUILTIN:
        d = importlib.import_module(mod).DOWNLINK
        out[d.name] = d
    return out


def available() -> list[Downlink]:
    """Every registered downlink."""
    return list(_registry().values())


def get(name: str) -> Downlink:
    """The downlink of source ``name``; KeyError naming the known ones."""
    try:
        return _registry()[name]
    except KeyError:
        raise KeyError(f"no downlink for source {name!r}; known: {', '.join(_registry())}"
                       ) from None


def routes(conn: psycopg.Connection, device_ids: list[str], via: list[Downlink]
           ) -> dict[str, Route]:
    """The registry devices among ``device_ids`` reached through one of the downlinks ``via``.

    From ``citypulse.source_devices`` (written by the collector); a device heard through
    several sources goes the way it was heard last.
    """
    if not via or not device_ids:
        return {}
    rows = conn.execute(
        "SELECT DISTINCT ON (sensor_id) sensor_id, source, device, scope FROM "
        "citypulse.source_devices WHERE sensor_id = ANY(%s) AND source = ANY(%s) "
        "ORDER BY sensor_id, last_seen DESC",
        (list(set(device_ids)), [d.name for d in via])).fetchall()
    return {r[0]: Route(r[1], r[2], r[3]) for r in rows}


def command_of(conn: psycopg.Connection, source: str, a: Answer) -> tuple[Any, str] | None:
    """``(command id, registry device)`` an answer is about, if it was sent to that device.

    The answer must come from the source's device the command went to (another device
    naming the command's id or RPC number changes nothing).  ValueError: a malformed id.
    """
    uid = UUID(str(a.value)) if a.key == "uuid" else None
    seq = int(a.value) if a.key == "seq" else None
    return conn.execute(
        "SELECT c.id, c.device_id FROM citypulse.commands c JOIN citypulse.source_devices d "
        "ON d.sensor_id = c.device_id WHERE (c.id = %s OR c.seq = %s) AND d.source = %s "
        "AND d.device = %s", (uid, seq, source, a.device)).fetchone()
