"""Topic parsing and building for wire contract v1.

In: an MQTT topic string and the configured prefix.  Out: a frozen :class:`Topic`
(``kind`` one of ``telemetry``, ``gateway``, ``status``, ``alert``, ``unknown``; plus the
sensor or gateway id).  Never raises: a topic outside the contract parses as ``unknown``.

    city/v1/telemetry/{sensor_id}
    city/v1/gateway/{gateway_id}/telemetry   (at least every GATEWAY_HEARTBEAT_S: ``{}``
                                              when no sensor has a reading due)
    city/v1/status/{sensor_id}
    city/v1/alerts/{severity}/{zone}
    city/v1/commands/{device_id}              (QoS 1, never retained: commands to a device)
    city/v1/commands/{device_id}/response     (the device's answers)
    city/v1/commands/events                   (citypulse: every command's status changes)
    city/v1/shadow/{device_id}/desired        (retained, versioned desired state)
    city/v1/shadow/{device_id}/reported       (the device's reported state)
    city/v1/committed                         (citypulse internal, QoS 1: one message per
                                              committed batch, citypulse.wire.committed)
    v1.1/Datastreams({id})/Observations       (SensorThings MQTT: each new Observation,
    v1.1/Observations                          standards/sta/mqtt.py; no prefix: the standard's)
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = "v1"
# SensorThings API version: the HTTP service root /sta/<it> and the first level of its MQTT topics
STA_VERSION = "v1.1"
TELEMETRY = "telemetry"
GATEWAY = "gateway"
STATUS = "status"
ALERT = "alert"
COMMAND = "command"
COMMAND_RESPONSE = "command_response"
COMMAND_EVENTS = "command_events"
SHADOW_DESIRED = "shadow_desired"
SHADOW_REPORTED = "shadow_reported"
UNKNOWN = "unknown"

# A gateway publishes on its topic at least this often (seconds), an empty object ``{}`` when
# none of its sensors has a reading due: its heartbeat.  Any message counts.  A gateway
# silent for 3 x this is offline, whatever its sensors' own reporting intervals.
GATEWAY_HEARTBEAT_S = 1.0

_ID_FORBIDDEN = set("+#/\x00")


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic: its kind and the id it names (sensor, gateway, or severity/zone)."""

    kind: str
    ident: str = ""
    extra: str = ""


def _valid_id(s: str) -> bool:
    return bool(s) and len(s) <= 128 and not (_ID_FORBIDDEN & set(s))


def parse(topic: str, prefix: str = "city") -> Topic:
    """Parse ``topic`` under ``prefix``; anything outside the contract is ``unknown``."""
    head = prefix + "/" + VERSION + "/"
    if not topic.startswith(head):
        return Topic(UNKNOWN)
    parts = topic[len(head):].split("/")
    match parts:
        case ["telemetry", sid] if _valid_id(sid):
            return Topic(TELEMETRY, sid)
        case ["gateway", gid, "telemetry"] if _valid_id(gid):
            return Topic(GATEWAY, gid)
        case ["status", sid] if _valid_id(sid):
            return Topic(STATUS, sid)
        case ["alerts", severity, zone] if _valid_id(severity) and _valid_id(zone):
            return Topic(ALERT, severity, zone)
        case ["commands", "events"]:
            return Topic(COMMAND_EVENTS)
        case ["commands", did] if _valid_id(did):
            return Topic(COMMAND, did)
        case ["commands", did, "response"] if _valid_id(did):
            return Topic(COMMAND_RESPONSE, did)
        case ["shadow", did, "desired"] if _valid_id(did):
            return Topic(SHADOW_DESIRED, did)
        case ["shadow", did, "reported"] if _valid_id(did):
            return Topic(SHADOW_REPORTED, did)
    return Topic(UNKNOWN)


def telemetry(sensor_id: str, prefix: str = "city") -> str:
    """Topic a directly connected sensor publishes its readings on."""
    return f"{prefix}/{VERSION}/telemetry/{sensor_id}"


def gateway(gateway_id: str, prefix: str = "city") -> str:
    """Topic a gateway publishes its sensors' readings on."""
    return f"{prefix}/{VERSION}/gateway/{gateway_id}/telemetry"


def status(sensor_id: str, prefix: str = "city") -> str:
    """Retained online/offline status topic of a device (its last will)."""
    return f"{prefix}/{VERSION}/status/{sensor_id}"


def alert(severity: str, zone: str, prefix: str = "city") -> str:
    """Topic citypulse publishes an alert on."""
    return f"{prefix}/{VERSION}/alerts/{severity}/{zone}"


def command(device_id: str, prefix: str = "city") -> str:
    """Topic citypulse sends a device's commands on (QoS 1, never retained)."""
    return f"{prefix}/{VERSION}/commands/{device_id}"


def command_response(device_id: str, prefix: str = "city") -> str:
    """Topic a device answers its commands on (also the MQTT 5 response topic)."""
    return f"{prefix}/{VERSION}/commands/{device_id}/response"


def command_events(prefix: str = "city") -> str:
    """Topic citypulse publishes every command status change on."""
    return f"{prefix}/{VERSION}/commands/events"


def shadow_desired(device_id: str, prefix: str = "city") -> str:
    """Retained desired state of a device's shadow ``{"version": n, "state": {...}}``."""
    return f"{prefix}/{VERSION}/shadow/{device_id}/desired"


def shadow_reported(device_id: str, prefix: str = "city") -> str:
    """State a device reports back for its shadow."""
    return f"{prefix}/{VERSION}/shadow/{device_id}/reported"


def committed(prefix: str = "city") -> str:
    """Internal topic a collector announces each committed batch on (CITYPULSE_STA_MQTT)."""
    return f"{prefix}/{VERSION}/committed"


def sta_datastream_observations(datastream: int) -> str:
    """SensorThings MQTT topic of one Datastream's new Observations."""
    return f"{STA_VERSION}/Datastreams({datastream})/Observations"


def sta_observations() -> str:
    """SensorThings MQTT topic of every new Observation."""
    return f"{STA_VERSION}/Observations"


def sta_all() -> str:
    """Topic filter of every SensorThings MQTT topic."""
    return f"{STA_VERSION}/#"


def command_subscriptions(prefix: str = "city") -> list[str]:
    """Topic filters the commands worker subscribes to (answers and reported shadows)."""
    return [f"{prefix}/{VERSION}/commands/+/response", f"{prefix}/{VERSION}/shadow/+/reported"]


def device_subscriptions(device_id: str, prefix: str = "city") -> list[str]:
    """Topics a commandable device subscribes to: its commands and its desired shadow."""
    return [command(device_id, prefix), shadow_desired(device_id, prefix)]


def ingest_subscriptions(prefix: str = "city") -> list[str]:
    """Topic filters the collector subscribes to (before any ``$share/`` group)."""
    return [
        f"{prefix}/{VERSION}/telemetry/+",
        f"{prefix}/{VERSION}/gateway/+/telemetry",
        f"{prefix}/{VERSION}/status/+",
    ]


def shared(group: str, topic_filter: str) -> str:
    """An MQTT 5 shared subscription: ``$share/{group}/{filter}`` (collectors split the load)."""
    return f"$share/{group}/{topic_filter}"


def alert_subscription(prefix: str = "city") -> str:
    """Topic filter of every alert citypulse publishes."""
    return f"{prefix}/{VERSION}/alerts/#"
