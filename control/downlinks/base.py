"""The one interface of a downlink, its route to a device and the answers it reads."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class Route:
    """How a registry device is reached through a source (a ``citypulse.source_devices`` row)."""

    source: str
    device: str             # the source's own id (ThingsBoard device name, devEui)
    scope: str | None       # where the source addressed it (ChirpStack application id)


@dataclass(frozen=True, slots=True)
class Answer:
    """What a source said about a command: its id (``uuid``) or the RPC number (``seq``)."""

    key: str                # "uuid" or "seq"
    value: Any              # the command id (str) or its seq (int)
    device: str             # the source's device id the answer came from
    status: str             # "received" | "ok" | "error" (control.records.ANSWERS)
    result: dict
    reason: str = ""


class Downlink:
    """Base class: the source's name, the topics answers come on, request and answers."""

    name = ""

    def subscriptions(self) -> list[str]:
        """Topic filters the commands worker subscribes to for this downlink's answers."""
        return []

    def claims(self, topic: str) -> bool:
        """Whether ``topic`` carries this downlink's answers."""
        return False

    def request(self, rec: dict, route: Route) -> tuple[str, bytes]:
        """The topic and payload that send command ``rec`` to ``route``'s device."""
        raise NotImplementedError

    def answers(self, topic: str, payload: bytes) -> list[Answer]:
        """The answers in one message (malformed or foreign messages: none; never raises)."""
        raise NotImplementedError


def json_object(payload: bytes) -> dict | None:
    """A JSON object, or None for anything else."""
    try:
        doc = orjson.loads(payload)
    except (orjson.JSONDecodeError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None
