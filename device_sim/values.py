"""What each sensor reads: fault-free, incident-free values, by kind (vectorised)."""

from __future__ import annotations

import numpy as np

from citypulse.catalogue import KINDS
from device_sim.calendar import (
    crowd_profile,
    day_kind,
    local_hour,
    rain_background,
    traffic_profile,
)
from device_sim.city import M_PER_DEG_LAT, M_PER_DEG_LON
from device_sim.fleet import KIND_CODE, Fleet
from device_sim.rng import normal, uniform

HEALTH_EVERY = 6  # device health (battery, rssi) rides on every 6th reading
METRICS = tuple(dict.fromkeys(m.name for k in KINDS.values() for m in k.metrics))


def crowd_capacity(fleet: Fleet, idx: np.ndarray) -> np.ndarray:
    """The crowd a people counter's area holds at profile 1 (persons; NaN for other kinds).

    150 at a gate, 4,000 at the lakeside, 1,500 elsewhere, times the sensor's scale.
    """
    zt = fleet.zone_type[idx]
    cap = np.where(fleet.role[idx] == "gate", 150.0,
                   np.where(np.char.find(zt, "lakeside") >= 0, 4000.0, 1500.0))
    return np.where(fleet.kind[idx] == KIND_CODE["people"], cap * fleet.scale[idx], np.nan)



def _poisson_like(mu: np.ndarray, z: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, np.round(mu + np.sqrt(np.maximum(mu, 0)) * z))


def _truck(fleet: Fleet, idx: np.ndarray, t: np.ndarray, s: int, k: np.ndarray,
           out: dict[str, np.ndarray], rows: np.ndarray) -> None:
    r = fleet.route[idx]
    ok = r >= 0
    length = np.where(ok, fleet.routes_len[np.maximum(r, 0)] if len(fleet.routes_len) else 1.0,
                      1.0)
    container = fleet.role[idx] == "container"
    v = (30.0 + 20.0 * uniform(s, idx, 0, 21)) / 3.6  # m/s cruising
    drive = length / v
    dwell_b = np.where(container, 4 * 3600, 1200) * (1 + uniform(s, idx, 0, 22))
    dwell_a = np.where(container, 8 * 3600, 1800) * (1 + uniform(s, idx, 0, 23))
    cycle = 2 * drive + dwell_b + dwell_a
    c = (t + cycle * uniform(s, idx, 0, 24)) % cycle
    out_leg = c < drive
    at_b = (c >= drive) & (c < drive + dwell_b)
    back = (c >= drive + dwell_b) & (c < 2 * drive + dwell_b)
    dist = np.where(out_leg, c * v, np.where(at_b, length, np.where(
        back, length - (c - drive - dwell_b) * v, 0.0)))
    moving = out_leg | back
    if len(fleet.routes_d):
        q = np.minimum(dist, length - 1e-6) + np.maximum(r, 0) * fleet.route_stride
        j = np.clip(np.searchsorted(fleet.routes_d, q, side="right") - 1, 0,
                    len(fleet.routes_d) - 2)
        d0, d1 = fleet.routes_d[j], fleet.routes_d[j + 1]
        w = np.clip((q - d0) / np.maximum(d1 - d0, 1e-9), 0, 1)[:, None]
        p0, p1 = fleet.routes_xy[j], fleet.routes_xy[j + 1]
        xy = p0 + (p1 - p0) * w
        head = (90 - np.degrees(np.arctan2((p1[:, 1] - p0[:, 1]) * M_PER_DEG_LAT,
                                           (p1[:, 0] - p0[:, 0]) * M_PER_DEG_LON))) % 360
        head = np.where(back, (head + 180) % 360, head)
        xy = np.where(ok[:, None], xy, np.c_[fleet.lon[idx], fleet.lat[idx]])
    else:
        xy = np.c_[fleet.lon[idx], fleet.lat[idx]]
        head = np.zeros(len(idx))
    out["lon"][rows] = np.round(xy[:, 0], 6)
    out["lat"][rows] = np.round(xy[:, 1], 6)
    spd = np.clip(v * 3.6 * (1 + 0.08 * normal(s, idx, k, 25)), 0, 120)
    out["speed_kmh"][rows] = np.round(np.where(moving, spd, 0.0), 1)
    out["heading_deg"][rows] = np.round(head, 1)
    cargo = 8000 + 22000 * uniform(s, idx, t // 86400, 26)
    out["load_kg"][rows] = np.round(np.where(out_leg | (c >= 2 * drive + dwell_b), cargo,
                                             300 * uniform(s, idx, 0, 27)), 0)


def base_values(fleet: Fleet, idx: np.ndarray, k: np.ndarray, t: np.ndarray
                ) -> dict[str, np.ndarray]:
    """Fault-free, incident-free values of the readings (idx, k, t)."""
    s = fleet.seed
    n = len(idx)
    out = {m: np.full(n, np.nan) for m in METRICS}
    kind = fleet.kind[idx]
    z1 = normal(s, idx, k, 1)
    z2 = normal(s, idx, k, 2)
    per = fleet.period[idx]
    tp = traffic_profile(t)

    rows = np.flatnonzero(kind == KIND_CODE["traffic"])
    if len(rows):
        i = idx[rows]
        x = tp[rows] * fleet.scale[i] * (0.75 + 0.3 * uniform(s, i, 0, 3))  # demand/capacity
        cap = fleet.capacity[i]
        flow = cap * np.minimum(x, 1.0) * np.where(x > 1.0, 1.0 - 0.5 * (x - 1.0), 1.0)
        vf = fleet.free_flow[i]
        speed = vf / (1.0 + 0.15 * x ** 4) * (1 + 0.05 * z2[rows])
        speed = np.clip(speed, 2.0, 140.0)
        out["vehicle_count"][rows] = np.minimum(_poisson_like(flow * per[rows] / 3600, z1[rows]),
                                                1000)
        out["speed_kmh"][rows] = np.round(speed, 1)
        dens = flow / np.maximum(fleet.lanes[i], 1) / speed
        out["occupancy_pct"][rows] = np.round(np.clip(dens * 0.65, 0, 100), 1)

    rows = np.flatnonzero(kind == KIND_CODE["people"])
    if len(rows):
        i = idx[rows]
        zt = fleet.zone_type[i]
        cap = crowd_capacity(fleet, i)
        now = crowd_profile(t[rows], zt)
        # the change within the day: the day kind's step at midnight is no crowd walking in
        before = crowd_profile(t[rows] - per[rows], zt, day_kind(t[rows]))
        count = _poisson_like(cap * now, z1[rows])
        turnover = cap * now * per[rows] / 1800.0
        d = cap * (now - before)
        out["people_count"][rows] = np.minimum(count, 200_000)
        out["entries"][rows] = np.minimum(_poisson_like(turnover + np.maximum(d, 0), z2[rows]),
                                          20_000)
        out["exits"][rows] = np.minimum(_poisson_like(turnover + np.maximum(-d, 0),
                                                      normal(s, i, k[rows], 3)), 20_000)

    rows = np.flatnonzero(kind == KIND_CODE["logistics"])
    if len(rows):
        _truck(fleet, idx[rows], t[rows], s, k[rows], out, rows)

    rows = np.flatnonzero(kind == KIND_CODE["air"])
    if len(rows):
        i = idx[rows]
        zt = fleet.zone_type[i]
        ind = np.where((np.char.find(zt, "industrial") >= 0) | (np.char.find(zt, "port") >= 0),
                       1.4, 1.0)
        rain = rain_background(s, t[rows])
        wash = 1.0 / (1.0 + 0.1 * rain)
        pm25 = (10 + 30 * tp[rows] * fleet.scale[i] * ind) * wash * (1 + 0.08 * z1[rows])
        out["pm25_ugm3"][rows] = np.round(np.clip(pm25, 1, 900), 1)
        out["pm10_ugm3"][rows] = np.round(np.clip(pm25 * 1.7 + 4, 1, 1900), 1)
        out["no2_ugm3"][rows] = np.round(np.clip((12 + 50 * tp[rows] * ind)
                                                 * (1 + 0.08 * z2[rows]), 1, 1900), 1)

    rows = np.flatnonzero(kind == KIND_CODE["water"])
    if len(rows):
        i = idx[rows]
        role = fleet.role[i]
        rain = rain_background(s, t[rows])
        lake = role == "lake_level"
        drain = role == "drain"
        level = np.where(lake, 2.0 + 0.03 * np.sin(2 * np.pi * t[rows] / 86400) + 0.004 * rain,
                         0.15 * fleet.scale[i] + 0.02 * rain) + 0.003 * z1[rows]
        out["level_m"][rows] = np.where(lake | drain, np.round(np.clip(level, 0, 49), 3), np.nan)
        out["rain_mm_h"][rows] = np.where(role == "rain", np.round(
            np.clip(rain * (1 + 0.1 * z2[rows]), 0, 499), 2), np.nan)

    rows = np.flatnonzero(kind == KIND_CODE["fire"])
    if len(rows):
        h = local_hour(t[rows])
        out["smoke_pct"][rows] = np.round(np.clip(0.05 + 0.02 * z1[rows], 0, 0.5), 3)
        out["temperature_c"][rows] = np.round(
            21 + 2.5 * np.sin((h - 9) / 24 * 2 * np.pi) + 0.3 * z2[rows], 2)
        out["alarm"][rows] = 0.0

    rows = np.flatnonzero(kind == KIND_CODE["gas"])
    if len(rows):
        out["ch4_lel_pct"][rows] = np.round(np.clip(0.3 + 0.15 * z1[rows], 0, 3), 2)
        out["co_ppm"][rows] = np.round(np.clip(1.5 + 4 * tp[rows] + 0.5 * z2[rows], 0, 30), 2)

    rows = np.flatnonzero(kind == KIND_CODE["noise"])
    if len(rows):
        i = idx[rows]
        zt = fleet.zone_type[i]
        base = np.where(np.char.find(zt, "industrial") >= 0, 58.0,
                        np.where(np.char.find(zt, "residential") >= 0, 42.0, 48.0))
        out["laeq_db"][rows] = np.round(np.clip(base + 22 * tp[rows] + 2 * z1[rows], 20, 130), 1)

    health = (k % HEALTH_EVERY) == 0
    if health.any():
        rows = np.flatnonzero(health)
        i = idx[rows]
        days = t[rows] / 86400.0
        drain = 0.2 + 0.6 * uniform(s, i, 0, 31)  # % per day; replaced at 5%
        batt = 100 - (days * drain + 100 * uniform(s, i, 0, 32)) % 95
        out["battery_pct"][rows] = np.round(batt, 1)
        rssi = -65 - 40 * uniform(s, i, 0, 33) + 2.5 * normal(s, i, k[rows], 34)
        out["rssi_dbm"][rows] = np.round(np.clip(rssi, -139, -1), 1)
    return out
