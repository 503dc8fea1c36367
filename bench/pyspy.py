"""py-spy for ``citypulse bench ingest --profile``: sample a collector, summarise the stacks.

In: a process id and an output path (:func:`profiler`), then the collapsed-stack file py-spy
wrote (:func:`summarise`).  Out: a running ``py-spy record`` (stop it with SIGINT: it then
writes the file) and ``{"samples", "self": [[pct, frame]...], "inclusive": [...]}`` with
line numbers dropped, so the hot functions of the hot path read at a glance.
"""

from __future__ import annotations

import collections
import re
import subprocess
import sys
from pathlib import Path

_LINE = re.compile(r":\d+\)")


def profiler(pid: int, out: str) -> subprocess.Popen:
    """py-spy sampling ``pid`` (all threads, idle excluded) into ``out`` as collapsed stacks."""
    exe = Path(sys.executable).with_name("py-spy")
    return subprocess.Popen([str(exe) if exe.exists() else "py-spy", "record", "-p", str(pid),
                             "-f", "raw", "-o", out, "-r", "200", "--nonblocking"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def summarise(path: str, top: int = 20) -> dict:
    """The ``top`` functions by own samples and by samples beneath them (percent of all)."""
    own: collections.Counter = collections.Counter()
    incl: collections.Counter = collections.Counter()
    total = 0
    with open(path) as f:
        for line in f:
            stack, _, n = line.rstrip().rpartition(" ")
            if not n.isdigit():
                continue
            frames = [_LINE.sub(")", fr) for fr in stack.split(";")]
            total += int(n)
            own[frames[-1]] += int(n)
            for fr in set(frames):
                incl[fr] += int(n)

    def pct(c: collections.Counter) -> list:
        return [[round(100 * v / max(1, total), 1), k] for k, v in c.most_common(top)]

    return {"samples": total, "self": pct(own), "inclusive": pct(incl)}
