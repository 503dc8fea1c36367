"""Device credentials for the broker: a Mosquitto password file, an ACL and a TLS listener.

In: a deployment (Parquet or CSV with ``sensor_id, kind, lon, lat, gateway_id``; an empty
``gateway_id`` means a directly connected sensor) and an output directory.  Out, in that
directory (see :func:`write_credentials`):

- ``passwd``: Mosquitto 2 password file, PBKDF2-SHA512 (``$7$`` format) hashes only;
- ``acl``: a sensor may publish only ``{prefix}/v1/telemetry/<itself>`` and
  ``{prefix}/v1/status/<itself>``, a gateway only ``{prefix}/v1/gateway/<itself>/telemetry``
  (and its own status); a directly connected device reads only its own
  ``commands/<itself>`` and ``shadow/<itself>/desired`` and writes only its own
  ``commands/<itself>/response`` and ``shadow/<itself>/reported``; ``commands`` (the
  commands worker) sends commands and desired shadows and reads answers; ``collector`` may
  read telemetry, gateway and status topics (also through ``$share/...``) and announce
  committed batches on ``{prefix}/v1/committed``; ``sta`` (the SensorThings MQTT relay)
  reads those and writes only ``v1.1/#``; ``sta_reader`` (SensorThings MQTT subscribers)
  only reads ``v1.1/#``; ``alerts`` publishes alerts, ``dashboard`` reads alerts and status,
  ``healthcheck`` reads ``$SYS``, ``simulator`` (load tests only) publishes any device topic.
  Sensors are covered by two ``pattern`` lines with ``%u``, so the ACL stays small at 200,000
  sensors; gateways get one ``user`` block each;
- ``credentials.csv`` (mode 0600): ``username, role, password`` to provision the devices;
- ``services.env``: ``MQTT_<SERVICE>_PASSWORD=...`` lines for the compose ``.env``;
- ``conf.d/tls.conf`` when TLS files are given (a TLS listener on 8883).

Source accounts (``source:username[=scope]``, see :mod:`ingest.sources`): a LoRaWAN network
server's integration user may publish only its application's uplink/status/join topics
(``chirpstack:cs-ns=<application id>``, ``ttn:tts=<app>@<tenant>``) and, for downlinks, read
only its application's ``command/down`` and publish its ``txack``/``ack`` events; a
ThingsBoard gateway account only the gateway API topics and ``v1/gateway/rpc``
(``thingsboard:gw-north``); ``collector`` reads every source's topics, ``commands`` sends the
downlinks and reads their outcomes, ``simulator`` writes the sources' topics (dialect load tests).

Nobody connects anonymously (``allow_anonymous false`` in ``deploy/mosquitto/mosquitto.conf``).
Running it again keeps the passwords already in ``credentials.csv`` and adds new devices.
Pure functions plus file writes; raises :class:`CredentialsError` on a bad deployment.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import os
import secrets
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from citypulse.wire import topics

SERVICE_USERS = ("collector", "alerts", "dashboard", "simulator", "healthcheck", "commands",
                 "sta", "sta_reader")
PBKDF2_ITERATIONS = 101  # what mosquitto_passwd 2.0 writes; the broker hashes once per CONNECT
_FORBIDDEN = set("+#/\x00:\n\r ")


class CredentialsError(ValueError):
    """The deployment cannot be turned into broker credentials; the message says why."""


@dataclass(frozen=True)
class Device:
    """One MQTT identity: a directly connected sensor or a gateway."""

    username: str
    role: str  # "sensor" | "gateway"


@dataclass(frozen=True)
class SourceAccount:
    """A broker account of a foreign source: who publishes, for which source, what scope."""

    username: str
    source: str
    scope: str | None = None

    @classmethod
    def parse(cls, text: str) -> SourceAccount:
        """``source:username[=scope]``; raises CredentialsError naming the fix."""
        from ingest import sources

        src, _, rest = text.partition(":")
        user, _, scope = rest.partition("=")
        try:
            adapter = sources.get(src)
        except KeyError as exc:
            raise CredentialsError(f"source account {text!r}: {exc.args[0]}") from None
        if adapter.transport != "mqtt":
            raise CredentialsError(f"source account {text!r}: {src} is not an MQTT source")
        if not user or _FORBIDDEN & set(user):
            raise CredentialsError(f"source account {text!r}: need source:username[=scope]")
        if adapter.scope_help and (not scope or set("+#/\x00") & set(scope)):
            raise CredentialsError(f"source account {text!r}: {src} needs =SCOPE, "
                                   f"{adapter.scope_help}")
        return cls(user, src, scope or None)


@dataclass(frozen=True)
class CredentialsSummary:
    """What :func:`write_credentials` wrote."""

    sensors: int
    gateways: int
    services: int
    new_passwords: int
    acl_lines: int
    tls: bool
    out_dir: str


def hash_password(password: str, salt: bytes | None = None,
                  iterations: int = PBKDF2_ITERATIONS) -> str:
    """Mosquitto 2 ``$7$`` hash: PBKDF2-HMAC-SHA512, 12-byte salt, base64 fields."""
    salt = salt if salt is not None else secrets.token_bytes(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations, 64)
    return (f"$7${iterations}${base64.b64encode(salt).decode()}$"
            f"{base64.b64encode(digest).decode()}")


def verify_password(password: str, hashed: str) -> bool:
    """Check ``password`` against a ``$7$`` hash (as the broker does)."""
    try:
        _, seven, iters, salt, digest = hashed.split("$")
        if seven != "7":
            return False
        want = base64.b64decode(digest)
        got = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt),
                                  int(iters), len(want))
    except ValueError:
        return False
    return secrets.compare_digest(got, want)


def read_deployment(path: Path) -> list[Device]:
    """Devices of a deployment file: each gateway once, each sensor without a gateway."""
    import polars as pl

    path = Path(path)
    if not path.exists():
        raise CredentialsError(f"deployment file {path} not found")
    try:
        if path.suffix.lower() in (".parquet", ".pq"):
            df = pl.read_parquet(path, columns=["sensor_id", "gateway_id"])
        else:
            df = pl.read_csv(path, columns=["sensor_id", "gateway_id"],
                             schema_overrides={"sensor_id": pl.Utf8, "gateway_id": pl.Utf8})
    except (pl.exceptions.PolarsError, OSError) as exc:
        raise CredentialsError(f"cannot read {path}: {exc}") from None
    df = df.with_columns(pl.col("gateway_id").cast(pl.Utf8).replace("", None))
    direct = df.filter(pl.col("gateway_id").is_null())["sensor_id"].cast(pl.Utf8).to_list()
    gateways = sorted(set(df["gateway_id"].drop_nulls().to_list()))
    devices = [Device(s, "sensor") for s in direct] + [Device(g, "gateway") for g in gateways]
    seen: set[str] = set()
    for d in devices:
        if not d.username or _FORBIDDEN & set(d.username):
            raise CredentialsError(f"device id {d.username!r} cannot be an MQTT username "
                                   "(empty, or contains + # / : or whitespace)")
        if d.username in seen or d.username in SERVICE_USERS:
            raise CredentialsError(f"device id {d.username!r} is used twice (sensor, gateway "
                                   "or service user): ACL patterns need unique usernames")
        seen.add(d.username)
    return devices


def acl_text(gateways: Iterable[str], prefix: str = "city",
             accounts: Iterable[SourceAccount] = ()) -> str:
    """The Mosquitto ACL: patterns for sensors, one block per gateway, the service users."""
    from ingest import sources

    p = f"{prefix}/{topics.VERSION}"
    accounts = list(accounts)
    src_read = [f"topic read {t}" for s in sources.available() for t in s.subscriptions()]
    src_write = [f"topic write {t}" for s in sources.available() for t in s.subscriptions()]
    lines = [
        "# citypulse broker ACL (written by `citypulse devices credentials`; do not edit)",
        "# Anything not granted here is denied.",
        "",
        "# directly connected sensors: only their own telemetry and status (username = sensor_id)",
        f"pattern write {p}/telemetry/%u",
        f"pattern write {p}/status/%u",
        "# ... and they read only their own commands and desired shadow, answer only for themselves",
        f"pattern read {p}/commands/%u",
        f"pattern write {p}/commands/%u/response",
        f"pattern read {p}/shadow/%u/desired",
        f"pattern write {p}/shadow/%u/reported",
        "",
        "user collector",
        f"topic read {p}/telemetry/+",
        f"topic read {p}/gateway/+/telemetry",
        f"topic read {p}/status/+",
        *src_read,
        "# ... and announces committed batches (CITYPULSE_STA_MQTT) to the SensorThings relay",
        f"topic write {topics.committed(prefix)}",
        "",
        "# the SensorThings MQTT relay (citypulse sta mqtt): committed batches in, STA topics out",
        "user sta",
        f"topic read {topics.committed(prefix)}",
        f"topic write {topics.sta_all()}",
        "",
        "# SensorThings MQTT subscribers (e.g. v1.1/Datastreams(<id>)/Observations): read only",
        "user sta_reader",
        f"topic read {topics.sta_all()}",
        "",
        "user alerts",
        f"topic readwrite {p}/alerts/#",
        "",
        "user dashboard",
        f"topic read {p}/alerts/#",
        f"topic read {p}/status/+",
        f"topic read {p}/commands/events",
        "",
        "# the commands worker: sends commands and desired shadows, reads the answers",
        "user commands",
        f"topic write {p}/commands/+",
        f"topic read {p}/commands/+/response",
        f"topic readwrite {p}/shadow/#",
        "# ... and the source adapters' downlinks (gateway RPC, network server queues)",
        *(f"topic {access} {t}" for s in sources.available() for access, t in s.commands_acl()),
        "",
        "# load tests only: the simulator speaks for every device",
        "user simulator",
        f"topic write {p}/telemetry/+",
        f"topic write {p}/gateway/+/telemetry",
        f"topic write {p}/status/+",
        f"topic read {p}/commands/+",
        f"topic write {p}/commands/+/response",
        f"topic read {p}/shadow/+/desired",
        f"topic write {p}/shadow/+/reported",
        *src_write,
        "",
        "user healthcheck",
        "topic read $SYS/#",
        "",
        "# gateways: only their own gateway topic (username = gateway_id)",
    ]
    for g in gateways:
        lines += [f"user {g}", f"topic write {p}/gateway/{g}/telemetry", ""]
    if accounts:
        lines += ["# foreign sources: each account only its source's topics (its scope's)"]
    for a in accounts:
        lines += [f"user {a.username}",
                  *(f"topic write {t}" for t in sources.get(a.source).acl_topics(a.scope)),
                  *(f"topic read {t}" for t in sources.get(a.source).acl_reads(a.scope)), ""]
    return "\n".join(lines) + "\n"


def tls_conf(ca_file: Path, cert_file: Path, key_file: Path, port: int = 8883,
             bind: str | None = None, require_client_cert: bool = False) -> str:
    """A Mosquitto TLS listener section (password auth and the ACL still apply)."""
    listener = f"listener {port}" + (f" {bind}" if bind else "")
    return "\n".join([
        "# TLS listener (written by `citypulse devices credentials --tls-dir`)",
        listener, "protocol mqtt", f"cafile {ca_file}", f"certfile {cert_file}",
        f"keyfile {key_file}", "tls_version tlsv1.2",
        f"require_certificate {'true' if require_client_cert else 'false'}", ""])


def make_self_signed(out: Path, hosts: Iterable[str] = ("mqtt", "localhost", "127.0.0.1"),
                     days: int = 825) -> dict[str, Path]:
    """Write a private CA and a server certificate for ``hosts`` with the openssl CLI.

    For test and pilot sites; a city IT team would use its own CA.  Returns the paths
    ``ca`` (ca.crt), ``cert`` (server.crt) and ``key`` (server.key).
    """
    openssl = shutil.which("openssl")
    if not openssl:
        raise CredentialsError("openssl not found (apt-get install openssl)")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    ca_key, ca, key, csr, crt = (out / n for n in ("ca.key", "ca.crt", "server.key",
                                                   "server.csr", "server.crt"))
    san = ",".join(("IP:" if h.replace(".", "").isdigit() else "DNS:") + h for h in hosts)
    ext = out / "server.ext"
    ext.write_text(f"subjectAltName={san}\nextendedKeyUsage=serverAuth\n")
    first = next(iter(hosts))
    steps = [
        ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
         "-days", str(days), "-subj", "/CN=citypulse private CA"],
        ["req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
         "-subj", f"/CN={first}"],
        ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
         "-out", crt, "-days", str(days), "-extfile", ext],
    ]
    for args in steps:
        r = subprocess.run([openssl, *map(str, args)], capture_output=True, text=True)
        if r.returncode != 0:
            raise CredentialsError(f"openssl {args[0]} failed: {r.stderr.strip()[-300:]}")
    os.chmod(key, 0o644)  # the broker user must read it; keep the directory private
    os.chmod(ca_key, 0o600)
    return {"ca": ca, "cert": crt, "key": key}


def _read_existing(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        return {row["username"]: row["password"] for row in csv.DictReader(f)}


def _private_write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(path, 0o600)


def write_credentials(deployment: Path, out: Path, prefix: str = "city",
                      tls_dir: Path | None = None, mount_dir: str = "/mosquitto/auth",
                      iterations: int = PBKDF2_ITERATIONS,
                      broker_readable: bool = True,
                      accounts: Iterable[SourceAccount] = ()) -> CredentialsSummary:
    """Write passwd, acl, credentials.csv, services.env (and conf.d/tls.conf) into ``out``.

    ``tls_dir`` holds ``ca.crt``, ``server.crt`` and ``server.key``; they are copied to
    ``out/tls`` and the listener refers to them under ``mount_dir`` (where the broker sees
    ``out``).  ``broker_readable`` leaves ``passwd``/``acl`` readable by the broker's user.
    """
    devices = read_deployment(deployment)
    accounts = list(accounts)
    taken = {d.username for d in devices} | set(SERVICE_USERS)
    for a in accounts:
        if a.username in taken:
            raise CredentialsError(f"source account {a.username!r} is already a device or "
                                   "service user: ACL blocks need unique usernames")
        taken.add(a.username)
    out = Path(out)
    (out / "conf.d").mkdir(parents=True, exist_ok=True)
    old = _read_existing(out / "credentials.csv")
    rows: list[tuple[str, str, str]] = []
    new = 0
    for username, role in [(u, "service") for u in SERVICE_USERS] + [
            (d.username, d.role) for d in devices] + [
            (a.username, f"source:{a.source}") for a in accounts]:
        pw = old.get(username)
        if not pw:
            pw = secrets.token_urlsafe(18)
            new += 1
        rows.append((username, role, pw))

    passwd = "".join(f"{u}:{hash_password(pw, iterations=iterations)}\n" for u, _, pw in rows)
    gateways = [d.username for d in devices if d.role == "gateway"]
    acl = acl_text(gateways, prefix, accounts)
    mode = 0o644 if broker_readable else 0o600
    for name, text in (("passwd", passwd), ("acl", acl)):
        _private_write(out / name, text)
        os.chmod(out / name, mode)

    fd = os.open(out / "credentials.csv", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["username", "role", "password"])
        w.writerows(rows)
    _private_write(out / "services.env", "".join(
        f"MQTT_{u.upper()}_PASSWORD={pw}\n" for u, role, pw in rows if role == "service"))

    tls_path = out / "conf.d" / "tls.conf"
    if tls_dir is not None:
        (out / "tls").mkdir(exist_ok=True)
        for name in ("ca.crt", "server.crt", "server.key"):
            src = Path(tls_dir) / name
            if not src.exists():
                raise CredentialsError(f"{src} missing (need ca.crt, server.crt, server.key)")
            shutil.copyfile(src, out / "tls" / name)
            os.chmod(out / "tls" / name, 0o644)
        base = Path(mount_dir) / "tls"
        tls_path.write_text(tls_conf(base / "ca.crt", base / "server.crt", base / "server.key"))
    elif tls_path.exists():
        tls_path.unlink()
    return CredentialsSummary(
        sensors=sum(d.role == "sensor" for d in devices), gateways=len(gateways),
        services=len(SERVICE_USERS), new_passwords=new, acl_lines=acl.count("\n"),
        tls=tls_dir is not None, out_dir=str(out))
