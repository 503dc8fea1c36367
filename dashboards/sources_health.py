"""Per-source ingest health for /ingest: messages, readings, dead letters and loss per source.

In: the collectors' Prometheus text (``citypulse_ingest_messages_total{kind,source}``,
``citypulse_ingest_source_*_total{source}``), plus the HTTP push counters of this process
(its :class:`~ingest.sources.hub.SourceHub` registry).  Out: one row per source
(``native`` = the wire contract's own topics) and an HTML table.  Never raises on a
collector that does not answer (it is left out).
"""

from __future__ import annotations

import logging

from dash import html
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

log = logging.getLogger(__name__)
_FIELDS = ("messages", "readings", "dead_letters", "seq_gaps", "seq_late")


def parse(texts: list[str]) -> dict[str, dict[str, float]]:
    """Source -> totals of messages, readings, dead letters, seq gaps/late."""
    out: dict[str, dict[str, float]] = {}
    stored = 0.0

    def row(src: str) -> dict[str, float]:
        return out.setdefault(src, dict.fromkeys(_FIELDS, 0.0))

    for text in texts:
        for fam in text_string_to_metric_families(text):
            for s in fam.samples:
                src = s.labels.get("source")
                if s.name == "citypulse_ingest_messages_total" and src:
                    row(src)["messages"] += s.value
                elif s.name == "citypulse_ingest_readings_stored_total":
                    stored += s.value
                elif s.name.startswith("citypulse_ingest_source_") and src:
                    key = s.name.removeprefix("citypulse_ingest_source_").removesuffix("_total")
                    if key in _FIELDS:
                        row(src)[key] += s.value
    if "native" in out:  # what the collectors stored that no adapter accounted for
        foreign = sum(v["readings"] for k, v in out.items() if k not in ("native", "http"))
        out["native"]["readings"] = max(0.0, stored - foreign)
    return out


def scrape(urls: list[str], local: CollectorRegistry | None = None,
           timeout: float = 1.0) -> dict[str, dict[str, float]]:
    """Per-source totals of the collectors at ``urls`` plus this process's ``local`` registry."""
    import requests

    texts = []
    for url in urls:
        try:
            resp = requests.get(url, timeout=timeout)
            resp.raise_for_status()
            texts.append(resp.text)
        except requests.RequestException as exc:
            log.debug("metrics %s: %s", url, exc)
    if local is not None:
        texts.append(generate_latest(local).decode())
    return parse(texts)


def table(rows: dict[str, dict[str, float]]) -> html.Table | html.P:
    """The per-source table (loss = seq gaps - late fills)."""
    if not rows:
        return html.P("No source metrics (collectors not reachable).")
    head = html.Tr([html.Th(h) for h in ("source", "messages", "readings", "dead letters",
                                         "lost (seq)")])
    body = [html.Tr([html.Td(src), *(html.Td(f"{v:,.0f}") for v in (
        r["messages"], r["readings"], r["dead_letters"], max(0.0, r["seq_gaps"] - r["seq_late"])))],
        id=f"src-{src}") for src, r in sorted(rows.items())]
    return html.Table([html.Thead(head), html.Tbody(body)], className="sources")
