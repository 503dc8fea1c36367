"""The collectors' Prometheus metrics for the ingest page: scrape, sum, rates.

In: the collectors' /metrics URLs (settings).  Out: totals of the ingest counters and the
mean sampled lag, and per-second rates between two scrapes.  Metric names and the parser
come from :mod:`ingest.metrics`.
"""

from __future__ import annotations

import logging
from typing import Any

from ingest import metrics as im

log = logging.getLogger(__name__)

_COUNTERS = (im.MESSAGES, im.STORED, im.DEAD_LETTERS, im.SEQ_GAPS)


def metrics_urls(settings: Any) -> list[str]:
    """The collectors' /metrics URLs the ingest page reads (settings)."""
    if settings.ingest_metrics_urls:
        return list(settings.ingest_metrics_urls)
    if settings.metrics_port:
        return [f"http://127.0.0.1:{settings.metrics_port}/metrics"]
    return []


def parse_metrics(text: str) -> dict[str, float]:
    """Totals of the collector counters and the mean sampled lag from Prometheus text."""
    out = dict.fromkeys(_COUNTERS, 0.0)
    lag_sum = lag_n = arr_sum = arr_n = 0.0
    for s in im.samples(text):
        if s.name.endswith("_total") and s.name[:-6] in out:
            out[s.name[:-6]] += s.value
        elif s.name == im.LAG_SECONDS + "_sum":
            lag_sum += s.value
        elif s.name == im.LAG_SECONDS + "_count":
            lag_n += s.value
        elif s.name == im.ARRIVAL_SECONDS + "_sum":
            arr_sum += s.value
        elif s.name == im.ARRIVAL_SECONDS + "_count":
            arr_n += s.value
    out["lag_mean_s"] = lag_sum / lag_n if lag_n else float("nan")
    out["arrival_mean_s"] = arr_sum / arr_n if arr_n else float("nan")
    return out


def scrape(urls: list[str], timeout: float = 1.0) -> dict[str, float] | None:
    """Sum of the collectors' metrics, or None when none answered."""
    import requests

    total: dict[str, float] | None = None
    for url in urls:
        try:
            resp = requests.get(url, timeout=timeout)
            resp.raise_for_status()
        except requests.RequestException as exc:
            log.debug("metrics %s: %s", url, exc)
            continue
        got = parse_metrics(resp.text)
        total = got if total is None else {k: total[k] + got[k] for k in got}
    return total


def rates(prev: tuple[float, dict] | None, cur: tuple[float, dict]) -> dict[str, float]:
    """Per-second rates of the counters between two scrapes ``(monotonic time, totals)``."""
    if prev is None or cur[0] <= prev[0]:
        return {}
    dt = cur[0] - prev[0]
    return {k: max(0.0, (cur[1][k] - prev[1][k]) / dt) for k in _COUNTERS}
