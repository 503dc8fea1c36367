"""Simulator dialects: the same readings as ThingsBoard gateways, ChirpStack, TTN or HTTP push.

In: the wire-contract messages :func:`device_sim.encode.encode_batch` builds (topic, payload,
readings) and a dialect name.  Out: the messages a foreign ecosystem would send for them
(:func:`translate`), so stress tests and scenarios run through every source adapter; the
``http`` dialect's bodies are POSTed by :class:`HttpPublisher` instead of going to the broker.
Sensors are named by their sensor_id on the foreign side (devEui, device id, device name).
A payload that is not JSON (an injected fault) is sent unchanged on the dialect's topic.
"""

from __future__ import annotations

import time
import urllib.error
import urllib.request
from datetime import UTC, datetime

import orjson

from citypulse.wire import foreign as wf
from citypulse.wire import topics as wt

DIALECTS = ("native", "thingsboard", "chirpstack", "ttn", "http")
CHIRPSTACK_APP = "citypulse-sim"
TTN_APP = "citypulse-sim@citypulse"
HTTP_TOPIC = "http"


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat().replace("+00:00", "Z")


def _per_sensor(topic: str, doc: object, prefix: str) -> dict | None:
    t = wt.parse(topic, prefix)
    if t.kind == wt.GATEWAY and isinstance(doc, dict):
        return doc
    if t.kind == wt.TELEMETRY:
        return {t.ident: doc if isinstance(doc, list) else [doc]}
    return None


def _chirpstack(sid: str, r: dict) -> tuple[str, bytes]:
    ev = {"deduplicationId": f"{sid}-{r.get('seq', 0)}", "time": _iso(r["ts"]),
          "deviceInfo": {"applicationId": CHIRPSTACK_APP, "deviceName": sid, "devEui": sid},
          "fCnt": r.get("seq", 0), "fPort": 1, "object": r["values"],
          "rxInfo": [{"gatewayId": "0016c001f1500001", "rssi": -80, "snr": 7.5}]}
    return wf.chirpstack(CHIRPSTACK_APP, sid), orjson.dumps(ev)


def _ttn(sid: str, r: dict) -> tuple[str, bytes]:
    up = {"end_device_ids": {"device_id": sid, "application_ids": {"application_id": "citypulse-sim"}},
          "received_at": _iso(r["ts"]),
          "uplink_message": {"f_port": 1, "f_cnt": r.get("seq", 0), "decoded_payload": r["values"],
                             "rx_metadata": [{"gateway_ids": {"gateway_id": "sim"},
                                              "time": _iso(r["ts"]), "rssi": -80, "snr": 7.5}],
                             "received_at": _iso(r["ts"])}}
    return wf.ttn(TTN_APP, sid), orjson.dumps(up)


def translate(dialect: str, msgs: list[tuple[str, bytes, int]], prefix: str
              ) -> list[tuple[str, bytes, int]]:
    """The foreign messages carrying ``msgs``' readings in ``dialect`` (see module docstring)."""
    if dialect == "native":
        return msgs
    out: list[tuple[str, bytes, int]] = []
    for topic, payload, nr in msgs:
        try:
            doc = orjson.loads(payload)
        except orjson.JSONDecodeError:
            doc = None
        per = _per_sensor(topic, doc, prefix) if doc is not None else None
        if per is None:  # a garbled payload: the dialect's adapter dead-letters it
            sid = topic.rsplit("/", 2)[-1 if wt.parse(topic, prefix).kind == wt.TELEMETRY else -2]
            dst = {"thingsboard": wf.TB_TELEMETRY, "http": HTTP_TOPIC,
                   "chirpstack": wf.chirpstack(CHIRPSTACK_APP, sid),
                   "ttn": wf.ttn(TTN_APP, sid)}[dialect]
            out.append((dst, payload, nr))
            continue
        if not per:
            continue  # a heartbeat
        if dialect in ("thingsboard", "http"):
            out.append((wf.TB_TELEMETRY if dialect == "thingsboard" else HTTP_TOPIC,
                        orjson.dumps(per), nr))
            continue
        enc = _chirpstack if dialect == "chirpstack" else _ttn
        for sid, items in per.items():
            for r in items if isinstance(items, list) else [items]:
                if isinstance(r, dict) and "values" in r and "ts" in r:
                    t, p = enc(sid, r)
                else:
                    t, p = enc(sid, {"ts": 0, "values": r})
                out.append((t, p, 1))
    return out


class HttpPublisher:
    """POSTs the http dialect's bodies to ``/api/v1/ingest`` (the Publisher interface)."""

    def __init__(self, url: str, api_key: str, timeout: float = 30.0) -> None:
        self.url = url.rstrip("/") + ("" if url.rstrip("/").endswith("/api/v1/ingest")
                                      else "/api/v1/ingest")
        self.key = api_key
        self.timeout = timeout
        self.errors = 0
        self.sent = 0
        self.recorder = None
        self.t0 = time.monotonic()

    def connect(self) -> None:
        """Nothing to connect."""

    def publish(self, topic: str, payload: bytes, qos: int = 0, retain: bool = False) -> bool:
        """POST one body (other topics, e.g. status, have no HTTP form: skipped)."""
        if topic != HTTP_TOPIC:
            return False
        req = urllib.request.Request(self.url, data=payload, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {self.key}"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                ok = resp.status == 202
        except urllib.error.HTTPError as exc:
            ok = exc.code < 500 and exc.code not in (401, 403)  # 4xx: the body was judged
        except OSError:
            ok = False
        if ok:
            self.sent += 1
        else:
            self.errors += 1
        return ok

    def pump(self, timeout: float = 0.0) -> None:
        """Nothing to drive."""
        if timeout:
            time.sleep(timeout)

    def drain(self, timeout: float = 10.0) -> None:
        """Every POST already finished."""

    def close(self) -> None:
        """Nothing to close."""
