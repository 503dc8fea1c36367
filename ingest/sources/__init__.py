"""Source adapters: foreign device ecosystems into the same readings as the wire contract.

In: a source name (``thingsboard``, ``chirpstack``, ``ttn``, ``http``; more by adding a module
to :data:`BUILTIN` that defines ``SOURCE``, a :class:`~ingest.sources.base.Source`).  Out: the
adapter, whose ``decode(topic, payload, received_ms, mapping, max_bytes)`` returns a frozen
:class:`~ingest.sources.base.Foreign` (readings, rejections with reasons, device events) and
never raises.  The collector consults :class:`~ingest.sources.hub.SourceHub` per topic::

    src = get("chirpstack")                     # KeyError naming the known sources
    for s in available(): print(s.name, s.trust, s.subscriptions())
"""

from __future__ import annotations

import importlib
from functools import cache

from ingest.sources.base import Source

BUILTIN = (
    "ingest.sources.thingsboard",
    "ingest.sources.chirpstack",
    "ingest.sources.ttn",
    "ingest.sources.http",
)


@cache
def _registry() -> dict[str, Source]:
    out: dict[str, Source] = {}
    for mod in BUILTIN:
        src = importlib.import_module(mod).SOURCE
        out[src.name] = src
    return out


def available() -> list[Source]:
    """Every registered source adapter."""
    return list(_registry().values())


def get(name: str) -> Source:
    """The adapter called ``name``; KeyError naming the known ones."""
    try:
        return _registry()[name]
    except KeyError:
        raise KeyError(f"unknown source {name!r}; known: {', '.join(_registry())}") from None
