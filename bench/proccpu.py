"""CPU time of the processes a benchmark drives, from ``/proc`` (Linux).

In: process ids, or a TCP port a local server listens on.  Out: CPU seconds (user +
system) consumed so far::

    pid = listener_pid(5432)           # the postmaster (or Mosquitto) owning the port
    t0 = tree_cpu(pid)                 # postmaster + its live backends + reaped ones
    ...; used = tree_cpu(pid) - t0

A server whose children come and go (PostgreSQL backends) is measured as the process's
own time, its reaped children's (``cutime``/``cstime``) and its live children's.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2:].split()  # fields from #3 (state) on


def cpu(pid: int | None) -> float:
    """User + system CPU seconds of one process (threads included); 0 when it is gone."""
    f = _stat(pid) if pid else None
    return 0.0 if f is None else (int(f[11]) + int(f[12])) / TICK


def children(pid: int) -> list[int]:
    """Live child processes of ``pid``."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            f = _stat(int(d.name))
            if f is not None and int(f[1]) == pid:
                out.append(int(d.name))
    return out


def tree_cpu(pid: int | None) -> float:
    """CPU seconds of ``pid``, its reaped children and its live children (one level)."""
    f = _stat(pid) if pid else None
    if f is None:
        return 0.0
    own = sum(int(x) for x in f[11:15]) / TICK  # utime, stime, cutime, cstime
    return own + sum(cpu(c) for c in children(pid))


def listener_pid(port: int) -> int | None:
    """The process listening on local TCP ``port`` (needs to see its /proc/<pid>/fd)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            p = line.split()
            if p[3] == "0A" and int(p[1].rsplit(":", 1)[1], 16) == port:  # LISTEN
                inodes.add(f"socket:[{p[9]}]")
    if not inodes:
        return None
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            for fd in (d / "fd").iterdir():
                if os.readlink(fd) in inodes:
                    return int(d.name)
        except OSError:
            continue
    return None


def stop(procs, timeout: float = 30.0) -> None:
    """SIGTERM every process (None skipped), wait up to ``timeout`` s each, kill what is left."""
    procs = [p for p in procs if p is not None]
    for p in procs:
        p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
