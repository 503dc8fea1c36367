"""What each simulated sensor reads, as vectorised pure functions.

In: a :class:`Fleet` (the deployment's sensors as numpy arrays, plus truck routes on the
road graph), the readings due (sensor positions, occurrence numbers ``k``, times), an optional
scenario (anything with ``apply(fleet, idx, t, values) -> silenced mask``) and a
:class:`Faults` configuration.  Out: a frozen :class:`Batch` of readings (sensor positions,
``seq``, ``ts_ms``, metric columns with NaN where a sensor does not report a metric, and a
``bad`` code per reading for deliberately broken messages).

Randomness is counter based (a hash of seed, sensor and occurrence), so a reading is the same
whichever process computes it, in whatever tick: same seed, same readings.  Values stay inside
the catalogue's ranges except readings with a non-zero ``bad`` code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import date
from typing import Any

import numpy as np
import polars as pl

from citypulse.catalogue import KINDS
from device_sim.city import M_PER_DEG_LAT, M_PER_DEG_LON

KIND_NAMES = tuple(KINDS)
KIND_CODE = {k: i for i, k in enumerate(KIND_NAMES)}
TZ_OFFSET_S = 8 * 3600  # Asia/Shanghai, no DST
HEALTH_EVERY = 6  # device health (battery, rssi) rides on every 6th reading
# Alarm states of alarm-capable sensors: crossing into one sends the next reading at once
# (event-driven reporting) instead of at its scheduled time.
FIRE_ALARM_SMOKE_PCT = 3.0  # photoelectric detector alarm level (%/m obscuration)
GAS_ALARM_CH4_LEL_PCT = 20.0  # gas detector level-1 alarm (% LEL) ...
GAS_ALARM_CO_PPM = 100.0  # ... or CO
TRAFFIC_ALARM_SPEED_SHARE = 0.25  # incident-detecting radar: speed below this share of free flow
# People counter inflow alarm: entries in one reporting interval reaching this share of the
# counter's crowd capacity, and at least INFLOW_ALARM_MIN persons.  A normal day's entries
# are about cap * profile * per / 1800 (profile <= ~2: <= 1.7% of cap per 15 s; the busiest
# zone counters reach ~3%; gates, cap 150, ~6% = 9 persons by chance), so it never trips on
# a normal day, while a surge's extra arrivals (cap * profile * (factor - 1) / ramp a
# second) cross it within seconds (lakeside, 8x over 3 min: ~1 s on a holiday evening,
# ~2 s on a working-day evening).  The alarm only makes the counter report at once; the
# alert is analytics' crowd_surge rule.
INFLOW_ALARM_SHARE = 0.05
INFLOW_ALARM_MIN = 20.0
# Water: a rain gauge's heavy-rain alarm (intensity, as event-reporting ALERT-style gauges
# send at once) and a drain monitor's high-level alarm (m above invert).  Background showers
# stay under ~4 mm/h and drains under ~0.3 m, so neither trips without an incident.
RAIN_ALARM_MM_H = 30.0
DRAIN_ALARM_LEVEL_M = 1.0

# bad-message codes (deliberately injected, to exercise dead letters)
BAD_NONE, BAD_RANGE, BAD_METRIC, BAD_VALUE, BAD_JSON = 0, 1, 2, 3, 4

HOLIDAYS = frozenset(date.fromisoformat(d).toordinal() for d in (
    "2026-01-01", "2026-02-16", "2026-02-17", "2026-02-18", "2026-02-19", "2026-02-20",
    "2026-04-05", "2026-05-01", "2026-05-02", "2026-05-03", "2026-06-19", "2026-09-25",
    "2026-10-01", "2026-10-02", "2026-10-03", "2026-10-04", "2026-10-05", "2026-10-06",
    "2026-10-07", "2027-01-01",
))
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()


@dataclass(frozen=True)
class Faults:
    """Device fault rates (shares of sensors or readings); all zero means a perfect fleet."""

    dropout: float = 0.0  # share of readings lost on the radio (a seq gap)
    stuck: float = 0.0  # share of sensors repeating one value
    drift: float = 0.0  # share of sensors whose clock drifts (up to +-drift_ppm)
    drift_ppm: float = 400.0
    battery: float = 0.0  # share of sensors whose battery drains within hours, then silent
    bad: float = 0.0  # share of readings sent malformed or out of range

    @classmethod
    def default(cls) -> Faults:
        """Modest, realistic rates for demos."""
        return cls(dropout=0.002, stuck=0.002, drift=0.005, battery=0.001, bad=0.0005)


# --- counter-based randomness ---------------------------------------------------------------

_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_G = np.uint64(0x9E3779B97F4A7C15)


def _mix(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * _M1
    x = x ^ (x >> np.uint64(27))
    x = x * _M2
    return x ^ (x >> np.uint64(31))


def uniform(seed: int, a: Any, b: Any, stream: int) -> np.ndarray:
    """Uniform [0, 1) numbers, a pure function of (seed, a, b, stream)."""
    with np.errstate(over="ignore"):
        x = (np.asarray(a, np.int64).astype(np.uint64) * _G
             + _mix(np.asarray(b, np.int64).astype(np.uint64) + np.uint64(stream) * _M2)
             + np.uint64(seed & 0xFFFFFFFF) * _M1)
        x = _mix(x)
    return (x >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def normal(seed: int, a: Any, b: Any, stream: int) -> np.ndarray:
    """Standard normal numbers, a pure function of (seed, a, b, stream)."""
    u1 = np.maximum(uniform(seed, a, b, stream), 1e-12)
    u2 = uniform(seed, a, b, stream + 7919)
    return np.sqrt(-2 * np.log(u1)) * np.cos(2 * math.pi * u2)


# --- time of day ------------------------------------------------------------------------------

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


# --- the fleet ----------------------------------------------------------------------------------

@dataclass
class Fleet:
    """The deployment as arrays, plus the truck routes; built once per process."""

    seed: int
    sensor_id: np.ndarray
    kind: np.ndarray  # int codes into KIND_NAMES
    lon: np.ndarray
    lat: np.ndarray
    gateway_id: np.ndarray  # object, None = direct
    zone_id: np.ndarray
    zone_type: np.ndarray
    role: np.ndarray
    segment_id: np.ndarray
    building_id: np.ndarray
    capacity: np.ndarray
    free_flow: np.ndarray
    lanes: np.ndarray
    scale: np.ndarray
    period: np.ndarray  # seconds between readings
    phase: np.ndarray  # seconds, in [0, period)
    route: np.ndarray  # truck route number (-1: none)
    routes_xy: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # all polylines
    routes_d: np.ndarray = field(default_factory=lambda: np.zeros(0))  # offset distances
    routes_len: np.ndarray = field(default_factory=lambda: np.zeros(0))
    route_stride: float = 1e7

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def nominal_rate(self) -> float:
        """Readings per second the fleet sends on its schedule."""
        return float(np.sum(1.0 / self.period))

    @classmethod
    def build(cls, deployment: pl.DataFrame, seed: int = 0, city: Any = None,
              rate_factor: float = 1.0, with_routes: bool = True) -> Fleet:
        """Arrays from a deployment; ``rate_factor`` > 1 makes every sensor report faster."""
        d = deployment
        n = d.height
        kind = np.array([KIND_CODE[k] for k in d["kind"].to_list()], np.int8)
        interval = np.array([KINDS[k].interval_s for k in KIND_NAMES])[kind] / rate_factor
        idx = np.arange(n)
        period = interval * (1.0 + 0.05 * (uniform(seed, idx, 0, 11) - 0.5))
        phase = period * uniform(seed, idx, 0, 12)

        def col(name: str, default: Any = None) -> np.ndarray:
            if name not in d.columns:
                return np.full(n, default, object)
            return np.asarray(d[name].to_list(), object)

        def fcol(name: str, default: float) -> np.ndarray:
            if name not in d.columns:
                return np.full(n, default)
            return d[name].cast(pl.Float64).fill_null(default).to_numpy()

        fleet = cls(
            seed=seed, sensor_id=np.asarray(d["sensor_id"].to_list(), object), kind=kind,
            lon=d["lon"].to_numpy(), lat=d["lat"].to_numpy(), gateway_id=col("gateway_id"),
            zone_id=col("zone_id", ""), zone_type=np.asarray(
                d["zone_type"].fill_null("").to_list() if "zone_type" in d.columns
                else [""] * n, str),
            role=np.asarray(d["role"].fill_null("").to_list() if "role" in d.columns
                            else [""] * n, str),
            segment_id=col("segment_id"), building_id=col("building_id"),
            capacity=fcol("capacity_veh_h", 1800.0), free_flow=fcol("free_flow_kmh", 50.0),
            lanes=fcol("lanes", 2.0), scale=fcol("scale", 1.0), period=period, phase=phase,
            route=np.full(n, -1, np.int64))
        if with_routes and (kind == KIND_CODE["logistics"]).any() and "depot_zone" in d.columns:
            fleet._routes(d, city)
        return fleet

    def _routes(self, d: pl.DataFrame, city: Any) -> None:
        from device_sim.city import city_of

        city = city_of(d) if city is None else city  # the deployment's city
        g = city.graph
        depots = dict(getattr(city, "depots", {}) or {})
        pos = {}
        for node, attrs in g.nodes(data=True):
            pos[node] = (attrs["lon"], attrs["lat"])
        nodes = np.array(list(pos))
        nxy = np.array([pos[x] for x in nodes])
        zones = city.zones.set_index(city.zones["zone_id"].astype(str))

        def node_of(zone: str) -> Any:
            if zone in depots:
                return depots[zone]
            c = zones.loc[zone].geometry.representative_point()
            return nodes[np.argmin((nxy[:, 0] - c.x) ** 2 + (nxy[:, 1] - c.y) ** 2)]

        pairs = d.select("depot_zone", "dest_zone").to_numpy()
        keys: dict[tuple[str, str], int] = {}
        xs, ds, lens = [], [], []
        route = self.route
        for i in np.flatnonzero(self.kind == KIND_CODE["logistics"]):
            a, b = pairs[i]
            if a is None or b is None:
                continue
            key = (str(a), str(b))
            if key not in keys:
                path = city.shortest_path(node_of(key[0]), node_of(key[1]))
                xy = self._path_xy(city, path, pos)
                if len(xy) < 2:
                    xy = np.vstack([xy, xy + 1e-5])
                seg = (np.hypot(np.diff(xy[:, 0]) * M_PER_DEG_LON,
                                np.diff(xy[:, 1]) * M_PER_DEG_LAT))
                cum = np.concatenate([[0.0], np.cumsum(seg)])
                r = len(keys)
                keys[key] = r
                xs.append(xy)
                ds.append(cum + r * self.route_stride)
                lens.append(max(cum[-1], 1.0))
            route[i] = keys[key]
        if xs:
            self.routes_xy = np.vstack(xs)
            self.routes_d = np.concatenate(ds)
            self.routes_len = np.array(lens)

    @staticmethod
    def _path_xy(city: Any, path: list, pos: dict) -> np.ndarray:
        """The path's polyline: its segments' geometries (curved rings), else the nodes."""
        geoms = getattr(city, "_sim_seg_geoms", None)
        if geoms is None:
            geoms = dict(zip(city.segments["segment_id"].astype(str),
                             city.segments.geometry.values, strict=True))
            try:
                city._sim_seg_geoms = geoms
            except AttributeError:  # frozen: rebuild next time
                pass
        pts: list = [pos[path[0]]]
        for u, v in zip(path[:-1], path[1:], strict=True):
            geom = geoms.get(str(city.graph.edges[u, v].get("segment_id")))
            pts.extend(list(geom.coords)[1:] if geom is not None else [pos[v]])
        return np.array(pts, float)

    def subset(self, positions: np.ndarray) -> Fleet:
        """The fleet restricted to ``positions`` (routes kept)."""
        kw = {}
        for name, value in self.__dict__.items():
            if isinstance(value, np.ndarray) and value.shape[:1] == (len(self),) and \
                    not name.startswith("routes"):
                kw[name] = value[positions]
            else:
                kw[name] = value
        return Fleet(**kw)


def _scheduled(fleet: Fleet, pos: np.ndarray, a: np.ndarray | float, b: np.ndarray | float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    phase, period = fleet.phase[pos], fleet.period[pos]
    ka = np.floor((a - phase) / period).astype(np.int64)
    kb = np.floor((b - phase) / period).astype(np.int64)
    count = np.maximum(kb - ka, 0)
    idx = np.repeat(pos, count)
    if len(idx) == 0:
        return idx, np.zeros(0, np.int64), np.zeros(0)
    first = np.repeat(ka + 1, count)
    offs = np.arange(len(idx)) - np.repeat(np.cumsum(count) - count, count)
    k = first + offs
    return idx, k, fleet.phase[idx] + k * fleet.period[idx]


def crowd_capacity(fleet: Fleet, idx: np.ndarray) -> np.ndarray:
    """The crowd a people counter's area holds at profile 1 (persons; NaN for other kinds).

    150 at a gate, 4,000 at the lakeside, 1,500 elsewhere, times the sensor's scale.
    """
    zt = fleet.zone_type[idx]
    cap = np.where(fleet.role[idx] == "gate", 150.0,
                   np.where(np.char.find(zt, "lakeside") >= 0, 4000.0, 1500.0))
    return np.where(fleet.kind[idx] == KIND_CODE["people"], cap * fleet.scale[idx], np.nan)


def inflow_alarm_level(fleet: Fleet, idx: np.ndarray) -> np.ndarray:
    """Entries in one interval at which a people counter's inflow alarm trips (persons)."""
    return np.maximum(INFLOW_ALARM_SHARE * crowd_capacity(fleet, idx), INFLOW_ALARM_MIN)


def alarm_state(fleet: Fleet, idx: np.ndarray, values: dict[str, np.ndarray]) -> np.ndarray:
    """Whether each reading is in an alarm state.

    Fire alarm, gas level, traffic collapse, a people counter's inflow alarm (entries in
    the interval at least ``INFLOW_ALARM_SHARE`` of its crowd capacity and at least
    ``INFLOW_ALARM_MIN``), a rain gauge's heavy-rain alarm or a drain's high-level alarm.
    """
    kind = fleet.kind[idx]
    with np.errstate(invalid="ignore"):
        fire = (kind == KIND_CODE["fire"]) & (values["alarm"] >= 1)
        gas = (kind == KIND_CODE["gas"]) & ((values["ch4_lel_pct"] >= GAS_ALARM_CH4_LEL_PCT)
                                            | (values["co_ppm"] >= GAS_ALARM_CO_PPM))
        traffic = (kind == KIND_CODE["traffic"]) & (
            values["speed_kmh"] < TRAFFIC_ALARM_SPEED_SHARE * fleet.free_flow[idx])
        people = (kind == KIND_CODE["people"]) & (
            values["entries"] >= inflow_alarm_level(fleet, idx))
        water = (kind == KIND_CODE["water"]) & (
            (values["rain_mm_h"] >= RAIN_ALARM_MM_H)
            | ((fleet.role[idx] == "drain") & (values["level_m"] >= DRAIN_ALARM_LEVEL_M)))
    return fire | gas | traffic | people | water


def _alarm_at(fleet: Fleet, idx: np.ndarray, k: np.ndarray, t: np.ndarray,
              scenario: Any) -> np.ndarray:
    v = base_values(fleet, idx, k, t)
    silent = scenario.apply(fleet, idx, t, v)
    return alarm_state(fleet, idx, v) & ~silent


def event_times(fleet: Fleet, idx: np.ndarray, k: np.ndarray, t: np.ndarray,
                scenario: Any) -> np.ndarray:
    """Send times of readings (idx, k, scheduled t).

    A reading whose sensor entered an alarm state since its previous reading is sent at the
    crossing (to ~0.1 s), else on schedule.
    """
    if len(idx) == 0:
        return t
    prev = t - fleet.period[idx]
    ev = _alarm_at(fleet, idx, k, t, scenario) & ~_alarm_at(fleet, idx, k - 1, prev, scenario)
    out = t.copy()
    e = np.flatnonzero(ev)
    if len(e):
        ei, ek = idx[e], k[e]
        lo, hi = prev[e], t[e].copy()
        while (hi - lo).max() > 0.1:
            mid = (lo + hi) / 2
            on = _alarm_at(fleet, ei, ek, mid, scenario)
            hi = np.where(on, mid, hi)
            lo = np.where(on, lo, mid)
        out[e] = hi
    return out


def due(fleet: Fleet, a: float, b: float, scenario: Any = None
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Readings sent in the time window (a, b]: sensor positions, k, times.

    Without a scenario these are the scheduled ones.  With a scenario (anything with
    ``alarm_candidates(fleet)`` and ``apply``), a candidate sensor entering an alarm state
    sends its next reading (same ``k``) at once, not at its scheduled time (event-driven
    reporting, as real fire and gas detectors do); the schedule resumes after it.
    """
    cand = getattr(scenario, "alarm_candidates", None)
    cand = cand(fleet) if cand is not None else np.zeros(0, np.int64)
    pos = np.arange(len(fleet))
    if len(cand):
        pos = pos[~np.isin(pos, cand)]
    idx, k, t = _scheduled(fleet, pos, a, b)
    if len(cand):
        # candidates: occurrences scheduled in (a, b + period] whose send time is in (a, b]
        ci, ck, ct = _scheduled(fleet, cand, a, b + fleet.period[cand])
        te = event_times(fleet, ci, ck, ct, scenario)
        keep = (te > a) & (te <= b)
        idx = np.concatenate([idx, ci[keep]])
        k = np.concatenate([k, ck[keep]])
        t = np.concatenate([t, te[keep]])
    order = np.argsort(t, kind="stable")
    return idx[order], k[order], t[order]


# --- readings -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Batch:
    """Readings: sensor positions in the fleet, seq, ts (ms), metric columns, bad codes."""

    idx: np.ndarray
    seq: np.ndarray
    ts_ms: np.ndarray
    values: dict[str, np.ndarray]
    bad: np.ndarray

    def __len__(self) -> int:
        return len(self.idx)


METRICS = tuple(dict.fromkeys(m.name for k in KINDS.values() for m in k.metrics))


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


def readings(fleet: Fleet, idx: np.ndarray, k: np.ndarray, t: np.ndarray,
             scenario: Any = None, faults: Faults | None = None) -> Batch:
    """The readings due at (idx, k, t) with the scenario's incidents and device faults."""
    faults = faults or Faults()
    s = fleet.seed
    t_eval, k_eval = t, k
    if faults.stuck:
        stuck = uniform(s, idx, 0, 41) < faults.stuck
        t_eval = np.where(stuck, np.floor(t / 86400) * 86400 + 3600 * 3, t)
        k_eval = np.where(stuck, 0, k)
    values = base_values(fleet, idx, k_eval, t_eval)
    keep = np.ones(len(idx), bool)
    if scenario is not None:
        keep &= ~scenario.apply(fleet, idx, t, values)
    if faults.dropout:
        keep &= uniform(s, idx, k, 42) >= faults.dropout
    if faults.battery:
        weak = uniform(s, idx, 0, 43) < faults.battery
        # a weak battery lasts 2-8 hours from the start of its (city) day, then the sensor dies
        life = 3600 * (2 + 6 * uniform(s, idx, 0, 44))
        since = (t + TZ_OFFSET_S) % 86400
        left = np.clip(100 * (1 - since / life), 0, 100)
        keep &= ~(weak & (left <= 0))
        b = values["battery_pct"]
        values["battery_pct"] = np.where(weak & ~np.isnan(b), np.round(left, 1), b)
    ts = t.copy()
    if faults.drift:
        drifting = uniform(s, idx, 0, 45) < faults.drift
        ppm = faults.drift_ppm * (2 * uniform(s, idx, 0, 46) - 1)
        ts = ts + np.where(drifting, ppm * 1e-6 * (t % (30 * 86400)), 0.0)
    bad = np.zeros(len(idx), np.int8)
    if faults.bad:
        u = uniform(s, idx, k, 47)
        hit = u < faults.bad
        bad = np.where(hit, 1 + (uniform(s, idx, k, 48) * 4).astype(np.int8), 0).astype(np.int8)
    sel = np.flatnonzero(keep)
    return Batch(idx[sel], k[sel], np.round(ts[sel] * 1000).astype(np.int64),
                 {m: v[sel] for m, v in values.items()}, bad[sel])


def check_ranges(fleet: Fleet, batch: Batch) -> list[str]:
    """Metric values outside the catalogue's ranges, ignoring deliberately bad readings."""
    problems = []
    good = batch.bad == 0
    kinds = fleet.kind[batch.idx]
    for code, name in enumerate(KIND_NAMES):
        rows = good & (kinds == code)
        for m in KINDS[name].metrics:
            v = batch.values[m.name][rows]
            v = v[~np.isnan(v)]
            if len(v) and (v.min() < m.min or v.max() > m.max):
                problems.append(f"{name}.{m.name}: {v.min()}..{v.max()} not in {m.min}..{m.max}")
    # metrics reported by a kind that does not have them
    for code, name in enumerate(KIND_NAMES):
        rows = kinds == code
        for m in METRICS:
            if KINDS[name].metric(m) is None and (~np.isnan(batch.values[m][rows])).any():
                problems.append(f"{name} reports foreign metric {m}")
    return problems
