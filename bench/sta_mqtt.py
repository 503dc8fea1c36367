"""``citypulse bench sta-mqtt``: how fast the SensorThings MQTT relay turns batches into messages.

In: a number of committed batches, rows per batch and slots per row.  Out: JSON (wall time,
observations per second, CPU of this process, which is the relay plus a feeder publishing a
few batches, per observation).  A private Mosquitto; the batches (the collectors' committed
format) are published on the internal topic; ``mosquitto_sub`` (C, another process) counts
what the relay publishes on ``v1.1/#``.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import paho.mqtt.client as mqtt

from citypulse.catalogue import MAX_SLOTS
from citypulse.settings import Settings
from citypulse.stack import PrivateMosquitto
from citypulse.wire import committed as wc
from citypulse.wire import topics as wt
from standards.sta.mqtt import Relay

PROBE = "v1.1/probe"


def _batches(n: int, rows: int, slots: int) -> list[bytes]:
    t0 = datetime.now(UTC)
    pad = (None,) * (MAX_SLOTS - slots)
    return [wc.encode(tuple((t0 + timedelta(milliseconds=b * rows + i), i + 1, None)
                            + (1.5,) * slots + pad for i in range(rows))) for b in range(n)]


def run(batches: int = 20, rows: int = 1000, slots: int = 5, timeout: float = 600.0) -> dict:
    """Relay ``batches x rows x slots`` observations once; the figures as a dict."""
    if not shutil.which("mosquitto_sub"):
        raise RuntimeError("mosquitto_sub not found (apt-get install mosquitto-clients)")
    want = batches * rows * slots
    data = _batches(batches, rows, slots)
    with tempfile.TemporaryDirectory(prefix="bench-sta-mqtt-") as tmp, \
            PrivateMosquitto(Path(tmp) / "mq") as mq:
        settings = Settings(mqtt_url=mq.url, topic_prefix="bench")
        sub = subprocess.Popen(["mosquitto_sub", "-p", str(mq.port), "-q", "1", "-v",
                                "-t", wt.sta_all()], stdout=subprocess.PIPE)
        seen = {"obs": 0, "probe": 0}
        done = threading.Event()

        def count() -> None:
            for line in sub.stdout:
                seen["probe" if line.startswith(PROBE.encode()) else "obs"] += 1
                if seen["obs"] >= want:
                    done.set()
        threading.Thread(target=count, daemon=True).start()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="feed-" + uuid.uuid4().hex[:6],
                          protocol=mqtt.MQTTv5)
        pub.connect("127.0.0.1", mq.port)
        pub.loop_start()
        relay = Relay(settings, client_id="bench-sta-mqtt")
        try:
            relay.start()
            if not relay.wait_ready(20):
                raise RuntimeError("the relay did not connect")
            deadline = time.monotonic() + 20
            while not seen["probe"]:  # mosquitto_sub is subscribed once a probe comes back
                if time.monotonic() > deadline:
                    raise RuntimeError("mosquitto_sub did not subscribe")
                pub.publish(PROBE, b"probe", qos=1).wait_for_publish(5)
                done.wait(0.05)
            cpu0, t0 = time.process_time(), time.perf_counter()
            for d in data:
                pub.publish(wt.committed("bench"), d, qos=1)
            complete = done.wait(timeout)
            wall = time.perf_counter() - t0
            cpu = time.process_time() - cpu0
        finally:
            relay.stop()
            pub.disconnect()
            pub.loop_stop()
            sub.kill()
            sub.wait(10)
    return {"batches": batches, "rows_per_batch": rows, "slots": slots, "observations": want,
            "received": seen["obs"], "complete": complete, "wall_s": round(wall, 2),
            "observations_per_s": round(seen["obs"] / wall),
            "relay_cpu_us_per_observation": round(cpu / max(seen["obs"], 1) * 1e6, 1),
            "relay_bad_messages": relay.bad}
