"""Run by the vendor virtualenv's python: ThingsBoard's own gateway SDK talks to our broker.

argv: port, then a JSON document {"connect": [names], "telemetry": [[name, data]],
"attributes": [[name, attrs]]}.  Prints "done" when every publish was acknowledged (QoS 1).
"""

import json
import sys
import time

from tb_gateway_mqtt import TBGatewayMqttClient

port, plan = int(sys.argv[1]), json.loads(sys.argv[2])
gw = TBGatewayMqttClient("127.0.0.1", port, username="gateway-token", client_id="tb-gw-test")
gw.connect()
# a deadline poll on the condition (this runs in the vendor venv: no tests.support there;
# the SDK's connect callback is set after its loop starts, so it can miss the CONNACK)
deadline = time.monotonic() + 20
while not gw.is_connected() and time.monotonic() < deadline:
    time.sleep(0.05)
assert gw.is_connected(), "TBGatewayMqttClient did not connect"
infos = [gw.gw_connect_device(name, "citypulse-test") for name in plan["connect"]]
infos += [gw.gw_send_telemetry(name, data) for name, data in plan["telemetry"]]
infos += [gw.gw_send_attributes(name, attrs) for name, attrs in plan["attributes"]]
for info in infos:
    rc = info.get()  # waits for the broker's PUBACK
    assert rc == 0, f"publish failed: {rc}"
gw.disconnect()
print("done", flush=True)
