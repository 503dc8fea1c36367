"""Run by the vendor virtualenv's python: ThingsBoard's gateway SDK answers server-side RPC.

argv: port, then a JSON document {"devices": [names], "replies": {method: reply data}}.
Connects the devices (``gw_connect_device``), prints "ready" once those publishes are
acknowledged, then for every RPC request the SDK hands to its handler prints
``rpc {"device", "id", "method", "params"}`` and answers with ``gw_send_rpc_reply``
(the method's reply data, ``{"error": ...}`` for an unknown method).  Runs until stdin closes.
"""

import json
import sys
import time

from tb_gateway_mqtt import TBGatewayMqttClient

port, plan = int(sys.argv[1]), json.loads(sys.argv[2])
gw = TBGatewayMqttClient("127.0.0.1", port, username="gateway-token", client_id="tb-gw-rpc")


def on_rpc(client, content):
    data = content.get("data") or {}
    if "method" not in data:  # a reply (ours or another gateway's) on the shared topic
        return
    print("rpc " + json.dumps({"device": content["device"], "id": data["id"],
                               "method": data["method"], "params": data.get("params")}),
          flush=True)
    reply = plan["replies"].get(data["method"], {"error": f"unknown method {data['method']}"})
    client.gw_send_rpc_reply(content["device"], data["id"], reply, quality_of_service=1)


gw.gw_set_server_side_rpc_request_handler(on_rpc)
gw.connect()
deadline = time.monotonic() + 20
while not gw.is_connected() and time.monotonic() < deadline:
    time.sleep(0.05)
assert gw.is_connected(), "TBGatewayMqttClient did not connect"
for info in [gw.gw_connect_device(name, "citypulse-test") for name in plan["devices"]]:
    assert info.get() == 0, "connect publish failed"
print("ready", flush=True)
sys.stdin.read()  # until the test closes our stdin
gw.disconnect()
print("done", flush=True)
