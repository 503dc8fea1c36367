"""``citypulse bench soak``: a long steady load, to see whether the collector's memory stays flat.

In: a duration (``30m``, ``90s``, ``2h``), an offered rate and the load shape.  Out: JSON
with the collector's RSS at start and end, its least-squares slope (MB per hour, the first
10 % of the run left out as warm-up), readings sent, stored and lost (must be 0).  The run
itself is :func:`bench.ingest.run_bench` (private broker and database, ``citypulse ingest``
as a subprocess, :mod:`device_sim.loadgen` as the load); this module only samples the
collector's RSS while it runs.  Exit status 1 when anything was lost.
"""

from __future__ import annotations

import json
import os
import re
import threading
import time
from pathlib import Path

import typer

_UNITS = {"s": 1, "m": 60, "h": 3600}


def parse_duration(text: str) -> float:
    """``30m`` -> 1800.0; ``90s``, ``2h`` and a bare number of seconds are accepted."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smh]?)\s*", text)
    if not m:
        raise typer.BadParameter(f"{text!r}: use a number with s, m or h, e.g. 30m")
    return float(m.group(1)) * _UNITS[m.group(2) or "s"]


def _children_ingest_pid(parent: int) -> int | None:
    """Pid of a ``citypulse ingest`` child process of ``parent`` (the bench's collector)."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            ppid = int(stat.rsplit(")", 1)[1].split()[1])
            if ppid != parent:
                continue
            argv = (d / "cmdline").read_bytes().split(b"\0")
        except (OSError, ValueError, IndexError):
            continue
        if b"ingest" in argv and b"citypulse" in argv:
            return int(d.name)
    return None


def _rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def slope_per_hour(samples: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of ``(seconds, MB)`` samples, in MB per hour."""
    if len(samples) < 3:
        return None
    n = len(samples)
    mt = sum(t for t, _ in samples) / n
    mv = sum(v for _, v in samples) / n
    den = sum((t - mt) ** 2 for t, _ in samples)
    if den == 0:
        return None
    return sum((t - mt) * (v - mv) for t, v in samples) / den * 3600


class RssSampler(threading.Thread):
    """Samples the RSS of this process's ``citypulse ingest`` child every ``every`` seconds."""

    def __init__(self, every: float, on_sample=None) -> None:
        super().__init__(daemon=True, name="rss-sampler")
        self.every = every
        self.samples: list[tuple[float, float]] = []
        self.on_sample = on_sample or (lambda _t, _mb: None)
        self._halt = threading.Event()
        self.armed = threading.Event()  # set once the collector is up and the load starts
        self._t0 = time.monotonic()

    def run(self) -> None:
        """Sample until stopped."""
        pid = None
        while not self._halt.wait(self.every):
            if not self.armed.is_set():  # a collector still starting is not its steady size
                continue
            pid = pid or _children_ingest_pid(os.getpid())
            mb = _rss_mb(pid) if pid else None
            if mb is None:
                pid = None
                continue
            t = time.monotonic() - self._t0
            self.samples.append((t, mb))
            self.on_sample(t, mb)

    def stop(self) -> None:
        """Stop sampling."""
        self._halt.set()
        self.join(5)


def run_soak(duration_s: float, rate: float, sensors: int, per_message: int,
             sample_s: float, progress=None) -> dict:
    """Run the soak and return the figures (see module docstring)."""
    from bench.ingest import BenchSpec, run_bench

    say = progress or (lambda _m: None)
    sampler = RssSampler(sample_s, lambda t, mb: say(f"{t:,.0f}s of {duration_s:,.0f}s, "
                                                     f"collector RSS {mb:.1f} MB"))
    sampler.start()

    def on_progress(msg: str) -> None:
        if msg.startswith("sending"):  # run_bench: the collector is connected, load begins
            sampler.armed.set()
        say(msg)

    try:
        res = run_bench(BenchSpec(sensors=sensors, rate=rate, duration=duration_s,
                                  per_message=per_message, qos=1), progress=on_progress)
    finally:
        sampler.stop()
    samples = sampler.samples
    steady = [s for s in samples if s[0] >= samples[0][0] + 0.1 * duration_s] if samples else []
    slope = slope_per_hour(steady)
    return {
        "duration_s": res["duration_s"], "offered_per_s": res["offered_per_s"],
        "sent": res["sent"], "stored": res["stored"], "lost": res["lost"],
        "duplicates": res["duplicates"], "dead_letters": res["dead_letters"],
        "internal_errors": res["internal_errors"],
        "rss_start_mb": round(samples[0][1], 1) if samples else res["collector_rss_start_mb"],
        "rss_end_mb": round(samples[-1][1], 1) if samples else res["collector_rss_mb"],
        "rss_max_mb": round(max(v for _, v in samples), 1) if samples else None,
        "rss_slope_mb_per_h": None if slope is None else round(slope, 2),
        "rss_samples": len(samples),
        "p99_latency_ms": res["p99_latency_ms"],
    }


def soak(
    duration: str = typer.Option("30m", help="How long to load: 30m, 90s, 2h."),
    rate: float = typer.Option(5000.0, help="Offered readings per second."),
    sensors: int = typer.Option(2000, help="Sensors registered and publishing."),
    per_message: int = typer.Option(10, help="Readings per MQTT message (gateway payloads)."),
    sample_s: float = typer.Option(5.0, help="Seconds between RSS samples."),
    as_json: bool = typer.Option(True, "--json/--no-json", help="Print JSON only."),
) -> None:
    """Soak the collector: steady load for DURATION; RSS start/end/slope, stored, lost (0)."""
    from rich.console import Console

    seconds = parse_duration(duration)
    console = Console(stderr=True)
    with console.status("bench soak") as status:
        result = run_soak(seconds, rate, sensors, per_message, sample_s,
                          progress=lambda m: status.update(f"bench soak: {m}"))
    print(json.dumps(result) if as_json else json.dumps(result, indent=2))
    if result["lost"]:
        raise typer.Exit(1)
