"""The city's clock: local time, working days and holidays, and the demand profiles by hour.

Traffic demand, crowd presence by zone type and the background rain, as pure functions of
epoch seconds (city time is Asia/Shanghai, no DST).
"""

from __future__ import annotations

from datetime import date

import numpy as np

from device_sim.rng import uniform

TZ_OFFSET_S = 8 * 3600  # Asia/Shanghai, no DST

HOLIDAYS = frozenset(date.fromisoformat(d).toordinal() for d in (
    "2026-01-01", "2026-02-16", "2026-02-17", "2026-02-18", "2026-02-19", "2026-02-20",
    "2026-04-05", "2026-05-01", "2026-05-02", "2026-05-03", "2026-06-19", "2026-09-25",
    "2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04", "2026-10-05", "2026-10-06",
    "2026-10-07", "2027-01-01",
))
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


def local_hour(t: np.ndarray) -> np.ndarray:
    """Hour of day (float) in city time."""
    return ((t + TZ_OFFSET_S) % 86400) / 3600.0


def day_kind(t: np.ndarray) -> np.ndarray:
    """0 = working day, 1 = weekend, 2 = public holiday (city time)."""
    day = ((t + TZ_OFFSET_S) // 86400).astype(np.int64)
    weekday = (day + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    hol = np.isin(day + _EPOCH_ORDINAL, np.fromiter(HOLIDAYS, np.int64))
    return np.where(hol, 2, np.where(weekday >= 5, 1, 0))


def _bump(h: np.ndarray, centre: float, width: float) -> np.ndarray:
    d = (h - centre + 12) % 24 - 12
    return np.exp(-0.5 * (d / width) ** 2)


def _rise(h: np.ndarray | float, at: np.ndarray | float, width_h: float = 0.25) -> np.ndarray:
    """A smooth step from 0 to 1 as ``h`` passes ``at`` (logistic, ``width_h`` hours)."""
    return 1.0 / (1.0 + np.exp(-(np.asarray(h) - at) / width_h))


def traffic_profile(t: np.ndarray) -> np.ndarray:
    """Demand as a share of capacity: weekday AM/PM peaks, a broad weekend afternoon."""
    h, dk = local_hour(t), day_kind(t)
    weekday = 0.12 + 0.78 * _bump(h, 8.0, 1.1) + 0.82 * _bump(h, 18.0, 1.3) \
        + 0.35 * _bump(h, 13.0, 3.0)
    weekend = 0.10 + 0.55 * _bump(h, 14.5, 3.5) + 0.15 * _bump(h, 20.0, 1.5)
    night = 0.85 + 0.15 * np.clip((h - 5.0) / 1.5, 0, 1)  # deep night dip 0-5h
    return np.where(dk == 0, weekday, weekend) * np.where((h < 5) | (h > 23), 0.5, night)


def crowd_profile(t: np.ndarray, zone_type: np.ndarray, dk: np.ndarray | None = None
                  ) -> np.ndarray:
    """Share of a zone's crowd capacity present, by zone type and time.

    ``dk`` overrides the day kind (0 working day, 1 weekend, 2 holiday) of ``t``.
    """
    h = local_hour(t)
    dk = day_kind(t) if dk is None else dk
    free = dk > 0
    lakeside = 0.04 + 0.55 * _bump(h, 19.5, 1.8) + np.where(free, 0.35 * _bump(h, 15, 3), 0)
    lakeside = lakeside * np.where(dk == 2, 1.6, np.where(free, 1.25, 1.0))
    metro = 0.03 + 0.8 * _bump(h, 8.0, 0.9) * (dk == 0) + 0.75 * _bump(h, 18.0, 1.0) * (dk == 0) \
        + 0.25 * _bump(h, 14, 4) * free
    plaza = 0.05 + 0.4 * _bump(h, 12.5, 2) + 0.6 * _bump(h, 19.5, 1.8) * np.where(free, 1.4, 1)
    # people arrive and leave over half an hour or so, not all in the same minute
    work = 0.05 + 0.7 * _rise(h, 8.5) * _rise(17.5, h) * (dk == 0)
    home = 0.35 + 0.45 * (1 - _rise(h, 7.5) * _rise(19.0, h))
    out = np.full(len(t), 0.2)
    for words, prof in ((("lakeside",), lakeside), (("metro", "station"), metro),
                        (("plaza", "park", "green"), plaza),
                        (("commercial", "education", "industrial", "logistic", "port"), work),
                        (("residential",), home)):
        m = np.zeros(len(t), bool)
        for w in words:
            m |= np.char.find(zone_type, w) >= 0
        out = np.where(m, prof, out)
    return np.clip(out, 0, 2.5)


def rain_background(seed: int, t: np.ndarray) -> np.ndarray:
    """City-wide background rain (mm/h): occasional light showers, one hour at a time."""
    hour = (t // 3600).astype(np.int64)
    u = uniform(seed, hour, 0, 501)
    level = np.where(u < 0.06, 1.0 + 40.0 * u, 0.0)
    frac = (t % 3600) / 3600.0
    return level * np.sin(np.pi * frac)
