"""Colour scales: congestion bands and severity colours, the people-density choropleth.

Band thresholds and severity colours come from analytics' rules.

In: values (congestion index, persons per ha, a severity).  Out: band indexes and RGB(A).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import analytics

SEVERITIES = ("critical", "warning", "info")
# people density colour scale (persons per hectare -> rgba), low to high
_DENSITY_STOPS = ((0.0, (27, 42, 74)), (50.0, (58, 12, 163)), (150.0, (123, 44, 191)),
                  (600.0, (247, 37, 133)))


@dataclass(frozen=True)
class Band:
    """One colour band: values >= ``lo`` (and below the next band) get ``rgb``."""

    lo: float
    label: str
    rgb: tuple[int, int, int]


# display colours of band labels (the thresholds themselves come from analytics)
_BAND_RGB = {"free": (46, 204, 113), "busy": (241, 196, 15), "slow": (243, 156, 18),
             "congested": (231, 76, 60), "jammed": (192, 57, 43)}
_PALETTE = ((46, 204, 113), (241, 196, 15), (243, 156, 18), (231, 76, 60), (142, 68, 173))


@lru_cache(maxsize=1)
def ui_thresholds() -> dict[str, Any]:
    """The colour bands and limits of analytics' rules file, read once."""
    return analytics.ui_thresholds()


def congestion_bands() -> tuple[Band, ...]:
    """Congestion colour bands, lower bounds from analytics' rules."""
    return tuple(Band(float(lo), str(label), _BAND_RGB.get(label, _PALETTE[i % 5]))
                 for i, (lo, _hi, label) in enumerate(ui_thresholds()["congestion_bands"]))


def severity_rgb(severity: str) -> tuple[int, int, int]:
    """Display colour of an alert severity (analytics' severity colours)."""
    return tuple(ui_thresholds()["severity_colours"].get(severity, (200, 200, 200)))


def severity_css() -> str:
    """CSS custom properties ``--sev-<severity>: rgb(...)`` from analytics' severity colours.

    The app puts this in every page's head, so badges, tiles and legends are coloured by
    analytics (``ui_thresholds()["severity_colours"]``), never by colours written in CSS.
    """
    props = "".join(f"--sev-{name}: rgb({', '.join(str(int(c)) for c in rgb)}); "
                    for name, rgb in sorted(ui_thresholds()["severity_colours"].items()))
    return ":root { " + props + "}"


def density_rgba(per_ha: float | None) -> list[int] | None:
    """Choropleth colour of a people density (persons/ha); None for no data."""
    if per_ha is None:
        return None
    stops = _DENSITY_STOPS
    if per_ha <= stops[0][0]:
        return [*stops[0][1], 190]
    for (x0, c0), (x1, c1) in zip(stops, stops[1:], strict=False):
        if per_ha <= x1:
            f = (per_ha - x0) / (x1 - x0)
            return [round(a + (b - a) * f) for a, b in zip(c0, c1, strict=True)] + [190]
    return [*stops[-1][1], 190]


def band_index(value: float | None, bands: tuple[Band, ...]) -> int:
    """Index of the band ``value`` falls in (-1 for no data)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return -1
    idx = 0
    for i, b in enumerate(bands):
        if value >= b.lo:
            idx = i
    return idx
