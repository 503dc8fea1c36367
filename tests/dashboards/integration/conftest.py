"""The real web server process (``citypulse dashboard``: gunicorn, 2 workers) over HTTPS.

``web`` starts it once for the module on the seeded dashboards database, in production
mode with a users file, a self-signed certificate made here with ``cryptography``, and
tight throttling settings so limits are reached in a few attempts.  ``client(addr)``
gives a requests session whose connections come from another loopback address
(127.0.0.2, ...), so each test is its own "client address" for the throttle.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import secrets
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests
from requests.adapters import HTTPAdapter
from werkzeug.security import generate_password_hash

from citypulse.stack import free_port, wait_port

USERS = {"ana": ("operator", "ana-pass-1234"), "ben": ("viewer", "ben-pass-1234"),
         "adm": ("admin", "adm-pass-1234")}
KIOSK = "kiosk-" + secrets.token_urlsafe(16)
LIMITS = {"CITYPULSE_LOGIN_FREE_FAILURES": "2", "CITYPULSE_LOGIN_USER_MAX_FAILURES": "5",
          "CITYPULSE_LOGIN_ADDR_MAX_FAILURES": "8", "CITYPULSE_LOGIN_DELAY_S": "0.2",
          "CITYPULSE_LOGIN_LOCKOUT_S": "600"}


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1/localhost and its key, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName(
                [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                 x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    crt, pem = directory / "server.crt", directory / "server.key"
    crt.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pem.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                      serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption()))
    return crt, pem


def users_file(path: Path, users: dict[str, tuple[str, str]]) -> Path:
    lines = ["users:"] + [f"  - {{name: {n}, role: {r}, password_hash: "
                          f"'{generate_password_hash(p)}'}}" for n, (r, p) in users.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


@dataclass
class Web:
    url: str
    cert: Path
    proc: subprocess.Popen
    log: Path
    db_url: str

    def client(self, addr: str = "127.0.0.1") -> requests.Session:
        """A session bound to source address ``addr`` that trusts the test certificate."""
        class Bound(HTTPAdapter):
            def init_poolmanager(self, *a, **kw):
                kw["source_address"] = (addr, 0)
                super().init_poolmanager(*a, **kw)

        s = requests.Session()
        s.mount("https://", Bound())
        s.trust_env = False  # else REQUESTS_CA_BUNDLE beats s.verify
        s.verify = str(self.cert)
        s.headers["Origin"] = self.url
        return s

    def login(self, user: str, addr: str = "127.0.0.1", password: str | None = None):
        s = self.client(addr)
        r = s.post(self.url + "/login", data={"username": user,
                                              "password": password or USERS[user][1]},
                   allow_redirects=False, timeout=30)
        return s, r


def base_env(db_url: str, tmp: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CITYPULSE_")}
    env.update(CITYPULSE_DATABASE_URL=db_url, CITYPULSE_ENV="production",
               CITYPULSE_DASHBOARD_SECRET=secrets.token_urlsafe(32),
               CITYPULSE_USERS_FILE=str(users_file(tmp / "users.yaml", USERS)),
               CITYPULSE_KIOSK_TOKEN=KIOSK, CITYPULSE_WEB_WORKERS="2",
               CITYPULSE_WEB_THREADS="4", CITYPULSE_DATA_DIR=str(tmp))
    return env


@pytest.fixture(scope="module")
def web(dash_db, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("web")
    cert, key = self_signed(tmp)
    port = free_port()
    env = base_env(dash_db, tmp)
    env.update(LIMITS, CITYPULSE_WEB_TLS_CERT=str(cert), CITYPULSE_WEB_TLS_KEY=str(key))
    log = tmp / "server.log"
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "citypulse", "dashboard", "--port",
                                 str(port)], env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_port(port, timeout=90)
        yield Web(f"https://127.0.0.1:{port}", cert, proc, log, dash_db)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
