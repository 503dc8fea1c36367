"""Run by the vendor virtualenv's python: Orange's ngsildclient reads our NGSI-LD API.

argv: the server's URL, a credential (``key:<API key>`` or ``basic:<user>:<password>``), then
a JSON list of calls ``[[name, "method.path", {kwargs}], ...]`` made on one
``ngsildclient.Client`` (e.g. ``["devices", "query", {"type": "Device"}]``,
``["troe", "temporal.query", {...}]``).  Prints one JSON document: ``{"broker": vendor,
name: result, ...}``, entities as plain dicts, a failed call as ``{"error": "..."}``.
"""

import json
import sys
from functools import reduce
from urllib.parse import urlsplit

from ngsildclient import Client, Entity
from requests.auth import AuthBase, HTTPBasicAuth


class ApiKey(AuthBase):
    """Our API key as ``X-API-Key`` (the client has no API-key option of its own)."""

    def __init__(self, key: str) -> None:
        self.key = key

    def __call__(self, r):
        r.headers["X-API-Key"] = self.key
        return r


def plain(x):
    if isinstance(x, Entity):
        return x.to_dict()
    if isinstance(x, list):
        return [plain(i) for i in x]
    return x


url, credential, calls = urlsplit(sys.argv[1]), sys.argv[2], json.loads(sys.argv[3])
kind, _, secret = credential.partition(":")
auth = ApiKey(secret) if kind == "key" else HTTPBasicAuth(*secret.split(":", 1))
out = {}
# the client checks the connection (GET /entities?type=None&limit=0&count=true) on creation
with Client(hostname=url.hostname, port=url.port, custom_auth=auth, verbose=False) as client:
    out["broker"] = client.broker.vendor.value
    for name, path, kwargs in calls:
        method = reduce(getattr, path.split("."), client)
        try:
            out[name] = plain(method(**kwargs))
        except Exception as exc:  # noqa: BLE001 - reported to the test, which decides
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}
print(json.dumps(out), flush=True)
