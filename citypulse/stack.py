"""Private local services: a Mosquitto and a PostgreSQL started from the system binaries.

In: a data directory (and optional fixed ports).  Out: running servers on free loopback
ports, with ``.url``, ``stop()``, ``kill()`` (SIGKILL) and ``start()`` again on the same
data, so tests can prove that nothing is lost across restarts::

    with PrivatePostgres(tmp / "pg") as pg, PrivateMosquitto(tmp / "mq") as mq:
        settings = load_settings(database_url=pg.url, mqtt_url=mq.url)

``citypulse up`` and the test fixtures use exactly this code.  When the process runs as
root, PostgreSQL runs as the ``postgres`` user (it refuses root) and Mosquitto stays root.
"""

from __future__ import annotations

import contextlib
import glob
import logging
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from citypulse.settings import Settings

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A private service could not be started; the message says what to install or check."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, timeout: float = 20.0, host: str = "127.0.0.1") -> None:
    """Wait until something accepts TCP connections on ``port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise ServiceError(f"nothing listening on {host}:{port} after {timeout:.0f}s")


def _pg_bindir() -> Path:
    configured = Settings().pg_bindir
    if configured is not None:
        if not (Path(configured) / "postgres").exists():
            raise ServiceError(f"CITYPULSE_PG_BINDIR={configured} has no `postgres` binary; "
                               "point it at a PostgreSQL server's bin directory")
        return Path(configured)
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/postgres"),
                   key=lambda p: int(Path(p).parts[-3]))
    if not found:
        raise ServiceError("PostgreSQL server binaries not found; run scripts/system-deps.sh "
                           "(apt-get install postgresql-15)")
    return Path(found[-1]).parent


def timescale_installed(bindir: Path) -> bool:
    """Whether the TimescaleDB extension is installed for the server in ``bindir``."""
    def _dir(flag: str, fallback: Path) -> Path:
        r = subprocess.run([str(bindir / "pg_config"), flag], capture_output=True, text=True,
                           check=False) if (bindir / "pg_config").exists() else None
        return Path(r.stdout.strip()) if r is not None and r.returncode == 0 else fallback

    lib = _dir("--pkglibdir", bindir.parent / "lib")
    share = _dir("--sharedir", Path("/usr/share/postgresql") / bindir.parent.name)
    return (lib / "timescaledb.so").exists() and (share / "extension/timescaledb.control").exists()


def _as_postgres_user() -> list[str]:
    return ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []


class _Service:
    proc: subprocess.Popen | None = None
    port: int

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kill(self) -> None:
        """SIGKILL the server (no clean shutdown)."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None

    @property
    def running(self) -> bool:
        """Whether the server process is alive."""
        return self.proc is not None and self.proc.poll() is None


class PrivatePostgres(_Service):
    """A PostgreSQL cluster in ``data_dir`` on a free port (trust auth, loopback only).

    TimescaleDB is preloaded when it is installed for the server (``preload_timescale``
    None), so a machine with the extension runs the production store path by default.
    """

    def __init__(self, data_dir: Path, port: int | None = None, dbname: str = "citypulse",
                 durable: bool = False, preload_timescale: bool | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self._pick_port = port is None  # until first started: another free port if taken
        self.dbname = dbname
        self.durable = durable
        self.bindir = _pg_bindir()
        # TimescaleDB is preloaded whenever it is installed, so that a machine with the
        # extension runs the production store path by default
        installed = timescale_installed(self.bindir)
        self.timescale = installed if preload_timescale is None else preload_timescale and installed
        if Settings().store_backend == "timescale" and not installed:
            raise ServiceError(
                f"CITYPULSE_STORE_BACKEND=timescale but TimescaleDB is not installed for "
                f"{self.bindir}; install it there, point CITYPULSE_PG_BINDIR at a server "
                "that has it, or set CITYPULSE_STORE_BACKEND=auto")

    @property
    def url(self) -> str:
        """Connection URL of the citypulse database."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            for p in [path, *path.rglob("*")]:
                os.chown(p, pw.pw_uid, pw.pw_gid)
            self._let_postgres_reach(path)

    @staticmethod
    def _let_postgres_reach(path: Path) -> None:
        """As root: the postgres user must be able to traverse every parent of its data dir.

        Repeated at each start: tools such as pytest reset their temp roots to 0700.
        """
        if os.geteuid() != 0:
            return
        for parent in path.parents:
            mode = parent.stat().st_mode
            if not mode & 0o001:
                os.chmod(parent, mode | 0o011)

    def init(self) -> None:
        """Initdb into ``data_dir`` unless a cluster is there already."""
        if (self.data_dir / "PG_VERSION").exists():
            return
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.data_dir)
        r = subprocess.run([*_as_postgres_user(), str(self.bindir / "initdb"), "-D",
                        str(self.data_dir), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                        "--locale=C.UTF-8", "--no-instructions"],
                       check=False, capture_output=True, text=True)
        if not (self.data_dir / "PG_VERSION").exists():
            raise ServiceError(f"initdb failed in {self.data_dir}: {r.stderr.strip()[-500:]}")
        conf = [
            "listen_addresses = '127.0.0.1'",
            f"unix_socket_directories = '{self.data_dir}'",
            "max_connections = 200",
            "shared_buffers = 512MB",
            "max_wal_size = 4GB",
            "checkpoint_timeout = 15min",
            "wal_compression = on",
            "timezone = 'UTC'",
        ]
        if not self.durable:  # tests: still crash-safe for process kills, not for OS crashes
            conf += ["fsync = off", "full_page_writes = off"]
        with open(self.data_dir / "postgresql.conf", "a") as f:
            f.write("\n# citypulse private instance\n" + "\n".join(conf) + "\n")

    def start(self, timeout: float = 60.0) -> None:
        """Start (initialising first if needed) and wait until it accepts queries."""
        if self.running:
            return
        self.init()
        stale = self.data_dir / "postmaster.pid"
        if stale.exists():  # left by a kill; postgres checks the pid itself, but be explicit
            with contextlib.suppress(ValueError, ProcessLookupError, PermissionError):
                pid = int(stale.read_text().split()[0])
                os.kill(pid, 0)
                raise ServiceError(f"PostgreSQL already running in {self.data_dir} (pid {pid})")
        self._let_postgres_reach(self.data_dir)
        log_path = self.data_dir.parent / f"{self.data_dir.name}.log"
        for _ in range(3):
            with open(log_path, "ab") as logf:
                logf.seek(0, os.SEEK_END)
                mark = logf.tell()
                self.proc = subprocess.Popen(
                    [*_as_postgres_user(), str(self.bindir / "postgres"), "-D",
                     str(self.data_dir), "-p", str(self.port), *self._preload_args()],
                    stdout=logf, stderr=subprocess.STDOUT, start_new_session=True)
            try:
                self._wait_ready(timeout)
                break
            except ServiceError:
                # a free port from free_port() can be taken by any client before we bind it
                taken = b"Address already in use" in log_path.read_bytes()[mark:]
                if not (taken and self._pick_port):
                    raise
                log.warning("port %d was taken before PostgreSQL bound it; trying another",
                            self.port)
                self.port = free_port()
        self._pick_port = False
        self._create_db()

    def _preload_args(self) -> list[str]:
        if not self.timescale:
            return []
        return ["-c", "shared_preload_libraries=timescaledb",
                "-c", "timescaledb.telemetry_level=off"]

    def _psql(self, *args: str, db: str = "postgres") -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(self.bindir / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U",
             "postgres", "-d", db, "-XAtq", *args], capture_output=True, text=True)

    def _wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise ServiceError(f"PostgreSQL exited with {self.proc.returncode}; see "
                                   f"{self.data_dir.parent / (self.data_dir.name + '.log')}")
            if self._psql("-c", "SELECT 1").returncode == 0:
                return
            time.sleep(0.1)
        raise ServiceError(f"PostgreSQL not ready after {timeout:.0f}s")

    def _create_db(self) -> None:
        r = subprocess.run([str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p",
                            str(self.port), "-U", "postgres", self.dbname],
                           capture_output=True, text=True)
        if r.returncode != 0 and "already exists" not in r.stderr:
            raise ServiceError(f"createdb {self.dbname} failed: {r.stderr.strip()}")

    def _postmaster_pid(self) -> int | None:
        try:
            return int((self.data_dir / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def stop(self, mode: str = "fast") -> None:
        """Stop cleanly (``fast``: roll back open transactions, checkpoint)."""
        if not self.running:
            self.proc = None
            return
        sig = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}[mode]
        pid = self._postmaster_pid()  # runuser does not forward signals: address postgres
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig) if pid else self.proc.send_signal(sig)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None

    def kill(self) -> None:
        """SIGKILL the postmaster and its children (a crash; recovery replays the WAL)."""
        if self.proc and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.proc = None


MOSQUITTO_CONF = """\
# citypulse private broker
listener {port} 127.0.0.1
allow_anonymous {anonymous}
{auth}
persistence true
persistence_location {data}/
autosave_interval 5
max_queued_messages {max_queued}
max_queued_bytes 0
max_inflight_messages 0
max_packet_size {max_packet}
log_dest file {data}/mosquitto.log
log_type error
log_type warning
log_type notice
"""


class PrivateMosquitto(_Service):
    """A Mosquitto broker on a free loopback port, persisting to ``data_dir``."""

    def __init__(self, data_dir: Path, port: int | None = None, *, password_file: Path | None = None,
                 acl_file: Path | None = None, max_queued: int = 10_000_000,
                 max_packet: int = 16 * 1024 * 1024, extra: str = "") -> None:
        self.data_dir = Path(data_dir).resolve()
        self.port = port or free_port()
        self.password_file = password_file
        self.acl_file = acl_file
        self.max_queued = max_queued
        self.max_packet = max_packet
        self.extra = extra
        self.binary = shutil.which("mosquitto") or "/usr/sbin/mosquitto"

    @property
    def url(self) -> str:
        """Broker URL (anonymous)."""
        return f"mqtt://127.0.0.1:{self.port}"

    def write_config(self) -> Path:
        """Write mosquitto.conf into the data dir and return its path."""
        self.data_dir.mkdir(parents=True, exist_ok=True)
        auth = []
        if self.password_file:
            auth.append(f"password_file {Path(self.password_file).resolve()}")
        if self.acl_file:
            auth.append(f"acl_file {Path(self.acl_file).resolve()}")
        conf = MOSQUITTO_CONF.format(
            port=self.port, data=self.data_dir,
            anonymous="false" if self.password_file else "true", auth="\n".join(auth),
            max_queued=self.max_queued, max_packet=self.max_packet)
        if os.geteuid() == 0:
            conf += "user root\n"
        path = self.data_dir / "mosquitto.conf"
        path.write_text(conf + self.extra)
        return path

    def start(self, timeout: float = 20.0) -> None:
        """Start the broker and wait until it accepts connections."""
        if self.running:
            return
        if not os.path.exists(self.binary):
            raise ServiceError("mosquitto not found; run scripts/system-deps.sh "
                               "(apt-get install mosquitto)")
        conf = self.write_config()
        self.proc = subprocess.Popen([self.binary, "-c", str(conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_port(self.port, timeout)
        except ServiceError:
            self.kill()
            raise ServiceError(f"mosquitto did not start; see {self.data_dir}/mosquitto.log") from None

    def stop(self) -> None:
        """Stop cleanly (SIGTERM: the broker saves its persistence file)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.proc = None
