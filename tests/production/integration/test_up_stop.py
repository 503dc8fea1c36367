"""`citypulse up` stops every service it started, whichever process of its group is signalled.

The private PostgreSQL and Mosquitto run in their own sessions (a Ctrl-C to the terminal
must not kill the broker before the collector has flushed), so only `up` can stop them: these
tests signal the group (as `make demo` receives Ctrl-C or SIGTERM) or one stage process
alone, then look for anything left running from that data directory.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import wait_until

ROOT = Path(__file__).resolve().parents[3]


def _procs() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every process now."""
    out = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        if fields[0] == "Z":  # a zombie is gone already, its parent just has not reaped it
            continue
        out[int(d.name)] = (int(fields[1]), cmd)
    return out


def _descendants(root: int) -> set[int]:
    procs, found, todo = _procs(), set(), [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, _cmd) in procs.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


def _wait(cond, timeout: float, what: str) -> None:
    wait_until(cond, timeout, what, every=0.2)


@pytest.mark.parametrize("how", ["group-sigterm", "child-sigint", "group-sigint-while-starting"])
def test_up_stops_everything_it_started(tmp_path, how):
    data = tmp_path / "up"
    env = {k: v for k, v in os.environ.items()
           if k not in ("CITYPULSE_DATABASE_URL", "CITYPULSE_MQTT_URL")}
    from citypulse.stack import free_port
    env["CITYPULSE_DASHBOARD_PORT"] = str(free_port())
    log = open(tmp_path / "up.log", "w+")
    up = subprocess.Popen([sys.executable, "-m", "citypulse", "up", "--no-demo",
                           "--data-dir", str(data)], cwd=ROOT, env=env, stdout=log,
                          stderr=subprocess.STDOUT, start_new_session=True)
    try:
        if how.endswith("while-starting"):  # broker and database up, schema migrating
            _wait(lambda: "migrating" in (tmp_path / "up.log").read_text()
                  or up.poll() is not None, 120, "the migration to begin")
            ours = {pid for pid, (_p, cmd) in _procs().items() if str(data) in cmd}
            tree = _descendants(up.pid)
            os.killpg(up.pid, signal.SIGINT)
            up.wait(120)
            _wait(lambda: not (tree | ours) & set(_procs()), 30, "every process to end")
            left = {pid: cmd for pid, (_p, cmd) in _procs().items() if str(data) in cmd}
            assert ours and not left, f"left running: {left}"
            return
        _wait(lambda: "started dashboard" in (tmp_path / "up.log").read_text()
              or up.poll() is not None, 120, "`citypulse up` to start its services")
        assert up.poll() is None, (tmp_path / "up.log").read_text()[-2000:]
        tree = _descendants(up.pid)
        ours = {pid for pid, (_p, cmd) in _procs().items() if str(data) in cmd}
        assert any("mosquitto" in _procs()[p][1] for p in ours), "no private broker found"
        assert any("postgres" in _procs()[p][1] for p in ours), "no private PostgreSQL found"
        if how == "group-sigterm":
            os.killpg(up.pid, signal.SIGTERM)
        else:  # one stage process alone (the collector): up must notice and stop the rest
            stage = next(p for p in tree if "citypulse ingest" in _procs().get(p, (0, ""))[1])
            os.kill(stage, signal.SIGINT)
        up.wait(120)
        _wait(lambda: not (tree | ours) & set(_procs()), 30, "every process to end")
        left = {pid: cmd for pid, (_p, cmd) in _procs().items() if str(data) in cmd}
        assert not left, f"left running: {left}"
        assert "citypulse stopped" in (tmp_path / "up.log").read_text()
    finally:
        kill_leftovers(up, data)


def kill_leftovers(up: subprocess.Popen, data: Path) -> None:
    """Kill `up`'s group and anything still running from ``data`` (after a failed test)."""
    if up.poll() is None:
        os.killpg(up.pid, signal.SIGKILL)
    for pid, (_p, cmd) in _procs().items():  # never leave a server behind a failed test
        if str(data) in cmd:
            os.kill(pid, signal.SIGKILL)
