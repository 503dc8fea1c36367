"""Topics of the foreign ecosystems citypulse takes in (their vendors' fixed layouts).

In: topic strings, or the ids to build one.  Out: parsed parts or topic strings; never
raises.  Read by the source adapters (``ingest/sources``) and the simulator's dialects, so
each layout is written once:

    v1/gateway/{connect|disconnect|telemetry|attributes}            ThingsBoard gateway API
    v1/gateway/rpc                       server-side RPC to the gateway's devices, and replies
    application/{application id}/device/{devEui}/event/{event}     ChirpStack v4 integration
    application/{application id}/device/{devEui}/command/down      ChirpStack downlink queue
    v3/{application id}@{tenant id}/devices/{device id}/{event}    The Things Stack v3
    v3/{application id}@{tenant id}/devices/{device id}/down/{push|sent|ack|nack|failed}
"""

from __future__ import annotations

TB_ROOT = "v1/gateway/"
TB_CONNECT, TB_DISCONNECT, TB_TELEMETRY, TB_ATTRIBUTES = (
    TB_ROOT + t for t in ("connect", "disconnect", "telemetry", "attributes"))
TB_TOPICS = (TB_CONNECT, TB_DISCONNECT, TB_TELEMETRY, TB_ATTRIBUTES)
# both ways on one topic: {"device", "data": {"id", "method", "params"}} to the gateway,
# {"device", "id", "data"} back from it
TB_RPC = TB_ROOT + "rpc"

CHIRPSTACK_EVENTS = ("up", "status", "join")
# downlink outcomes: txack (a gateway took the frame for transmission), ack (the device
# acknowledged a confirmed downlink, or it timed out: ``acknowledged`` false or absent)
CHIRPSTACK_DOWNLINK_EVENTS = ("txack", "ack")
TTN_EVENTS = ("up", "join")
# downlink outcomes: sent (a gateway transmitted it), ack / nack (the device acknowledged the
# confirmed downlink, or rejected it), failed (the stack could not schedule it)
TTN_DOWNLINK_EVENTS = ("down/sent", "down/ack", "down/nack", "down/failed")


def chirpstack(application: str, dev_eui: str, event: str = "up") -> str:
    """A ChirpStack v4 integration event topic (``+`` wildcards allowed)."""
    return f"application/{application}/device/{dev_eui}/event/{event}"


def chirpstack_down(application: str, dev_eui: str) -> str:
    """The ChirpStack v4 topic that enqueues a downlink for a device (``+`` allowed)."""
    return f"application/{application}/device/{dev_eui}/command/down"


def parse_chirpstack(topic: str, events: tuple[str, ...] = CHIRPSTACK_EVENTS
                     ) -> tuple[str, str, str] | None:
    """(application, devEui, event) of a ChirpStack event topic of ``events``, else None."""
    parts = topic.split("/")
    if (len(parts) == 6 and parts[0] == "application" and parts[2] == "device"
            and parts[4] == "event" and parts[5] in events and parts[1] and parts[3]):
        return parts[1], parts[3], parts[5]
    return None


def ttn(application: str, device: str, event: str = "up") -> str:
    """A The Things Stack v3 topic; ``application`` is ``{app id}@{tenant id}``."""
    return f"v3/{application}/devices/{device}/{event}"


def ttn_push(application: str, device: str) -> str:
    """The The Things Stack v3 topic that appends a downlink to a device's queue."""
    return ttn(application, device, "down/push")


def parse_ttn(topic: str, events: tuple[str, ...] = TTN_EVENTS
              ) -> tuple[str, str, str] | None:
    """(application@tenant, device id, event) of a v3 topic of ``events``, else None."""
    parts = topic.split("/", 4)
    if (len(parts) == 5 and parts[0] == "v3" and parts[2] == "devices"
            and parts[4] in events and parts[1] and parts[3]):
        return parts[1], parts[3], parts[4]
    return None
