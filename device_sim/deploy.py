"""Sensor deployment: where each simulated sensor sits on the city model.

In: a sensor count, a seed and (optionally) a city model (default: the twin's canonical
city, via :func:`device_sim.city.load_city`).  Out: a polars DataFrame, one row per sensor, with
``sensor_id, kind, lon, lat, gateway_id`` (null = directly connected) plus placement columns
(``zone_id, zone_type, role, segment_id, direction, lanes, free_flow_kmh, capacity_veh_h,
building_id, depot_zone, dest_zone, scale``).  Same seed, same frame, byte for byte.  The
Parquet file written by :func:`write` loads with ``citypulse registry load`` (extra columns
go to the registry's ``props``).  Everything is vectorised: 200,000 sensors take seconds.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import shapely

from citypulse.catalogue import KINDS
from device_sim.city import M_PER_DEG_LAT, M_PER_DEG_LON, lake_geometry, load_city, meters

# share of the deployment per kind (sums to 1)
SHARES = {"traffic": 0.28, "people": 0.14, "logistics": 0.08, "air": 0.05, "water": 0.07,
          "fire": 0.24, "gas": 0.08, "noise": 0.06}
PREFIX = {"traffic": "trf", "people": "ppl", "logistics": "lgx", "air": "air", "water": "wtr",
          "fire": "fir", "gas": "gas", "noise": "noi"}
GATEWAY_SIZE = 100
DIRECT_SHARE = 0.05  # share of fixed sensors connected directly (all logistics trackers are)

CROWD_TYPES = ("lakeside", "plaza", "metro", "station", "park", "commercial")
HUB_TYPES = ("port", "logistic", "industrial")
BUILDING_EXCLUDE = ("lake", "water", "park", "green")
COMPASS = np.array(["E", "NE", "N", "NW", "W", "SW", "S", "SE"])

COLUMNS = ("sensor_id", "kind", "lon", "lat", "gateway_id", "zone_id", "zone_type", "role",
           "segment_id", "direction", "lanes", "free_flow_kmh", "capacity_veh_h",
           "building_id", "depot_zone", "dest_zone", "scale")


def _type_mask(types: np.ndarray, words: tuple[str, ...]) -> np.ndarray:
    low = np.char.lower(types.astype(str))
    m = np.zeros(len(types), bool)
    for w in words:
        m |= np.char.find(low, w) >= 0
    return m


def _pick(rng: np.random.Generator, n: int, weights: np.ndarray) -> np.ndarray:
    w = np.asarray(weights, float)
    return rng.choice(len(w), size=n, p=w / w.sum())


def sample_in_polygons(rng: np.random.Generator, polys: np.ndarray,
                       which: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Uniform random points inside ``polys[which[i]]`` for each i (rejection sampling)."""
    lon = np.empty(len(which))
    lat = np.empty(len(which))
    for z in np.unique(which):
        idx = np.flatnonzero(which == z)
        poly = polys[z]
        x0, y0, x1, y1 = poly.bounds
        got = 0
        while got < len(idx):
            need = len(idx) - got
            m = max(16, int(need * 2.5))
            xs = rng.uniform(x0, x1, m)
            ys = rng.uniform(y0, y1, m)
            ok = shapely.contains_xy(poly, xs, ys)
            xs, ys = xs[ok][:need], ys[ok][:need]
            lon[idx[got:got + len(xs)]] = xs
            lat[idx[got:got + len(xs)]] = ys
            got += len(xs)
    return lon, lat


def _on_lines(lines: np.ndarray, which: np.ndarray, frac: np.ndarray) -> np.ndarray:
    pts = shapely.line_interpolate_point(lines[which], frac, normalized=True)
    return shapely.get_coordinates(pts)


def _bearing(lines: np.ndarray) -> np.ndarray:
    start = shapely.get_coordinates(shapely.get_point(lines, 0))
    end = shapely.get_coordinates(shapely.get_point(lines, -1))
    ang = np.degrees(np.arctan2((end[:, 1] - start[:, 1]) * M_PER_DEG_LAT,
                                (end[:, 0] - start[:, 0]) * M_PER_DEG_LON)) % 360
    return COMPASS[((ang + 22.5) // 45).astype(int) % 8]


def _counts(n: int, n_zones: int) -> dict[str, int]:
    counts = {k: int(n * s) for k, s in SHARES.items()}
    counts["people"] = max(counts["people"], min(n_zones + 1, n // 4))
    rest = n - sum(counts.values())
    counts["traffic"] += rest
    for k in counts:  # every kind present (n >= 8)
        if counts[k] < 1:
            counts[k] = 1
            counts["traffic"] -= 1
    return counts


def deploy(n: int, seed: int = 0, city: Any = None, *, direct_share: float = DIRECT_SHARE,
           gateway_size: int = GATEWAY_SIZE, city_seed: int = 0) -> pl.DataFrame:
    """Place ``n`` sensors (n >= 8) of every catalogue kind on the city; see module docs.

    ``seed`` drives the placement; the city is the twin's canonical one (``city_seed`` 0)
    unless ``city`` or another ``city_seed`` is given.
    """
    if n < len(KINDS):
        raise ValueError(f"need at least {len(KINDS)} sensors (one per kind), got {n}")
    city = load_city(city_seed) if city is None else city
    rng = np.random.default_rng(seed)
    zones = city.zones
    zpoly = np.asarray(zones.geometry.values)
    ztype = zones["zone_type"].to_numpy().astype(str)
    zarea = zones["area_m2"].to_numpy(float)
    segs = city.segments
    slines = np.asarray(segs.geometry.values)
    counts = _counts(n, len(zones))
    parts: list[dict[str, Any]] = []

    def part(kind: str, lon, lat, **cols) -> None:
        parts.append({"kind": np.full(len(lon), kind), "lon": lon, "lat": lat, **cols})

    # traffic: on directed segments, weighted by length
    c = counts["traffic"]
    s = _pick(rng, c, segs["length_m"].to_numpy(float) + 50)
    xy = _on_lines(slines, s, rng.uniform(0.15, 0.85, c))
    part("traffic", xy[:, 0], xy[:, 1], role=np.full(c, "loop"),
         segment_id=segs["segment_id"].to_numpy().astype(str)[s],
         direction=(segs["direction"].to_numpy().astype(str) if "direction" in segs
                    else _bearing(slines))[s], lanes=segs["lanes"].to_numpy(float)[s],
         free_flow_kmh=segs["free_flow_kmh"].to_numpy(float)[s],
         capacity_veh_h=segs["capacity_veh_h"].to_numpy(float)[s])

    # people: one counter in every zone, the rest in crowd zones and at their gates
    c = counts["people"]
    crowd = _type_mask(ztype, CROWD_TYPES)
    if not crowd.any():
        crowd[:] = True
    base = np.flatnonzero(ztype != "lake")[:c]  # one counter per zone (not on the water)
    rest = c - len(base)
    n_gate = rest * 2 // 5
    inzone = np.concatenate([base, _pick(rng, rest - n_gate, np.where(crowd, zarea, 0))])
    lon, lat = sample_in_polygons(rng, zpoly, inzone)
    part("people", lon, lat, role=np.full(len(inzone), "zone"))
    # gate counters: at the twin's gates (metro entrances, a few per gate) and at entry points
    # on the edges of plazas and lakeside zones, a few metres inside their zone
    gates = getattr(city, "gates", None)
    n_named = min(n_gate // 3, 4 * len(gates)) if gates is not None and len(gates) else 0
    zpos = {z: i for i, z in enumerate(zones["zone_id"].astype(str))}
    gx = np.empty(0)
    gy = np.empty(0)
    gz = np.empty(0, int)
    if n_named:
        g = np.arange(n_named) % len(gates)
        gz = np.array([zpos[z] for z in gates["zone_id"].astype(str)])[g]
        gx, gy = gates["lon"].to_numpy(float)[g], gates["lat"].to_numpy(float)[g]
    n_edge = n_gate - n_named
    if n_edge:
        open_zone = _type_mask(ztype, ("plaza", "lakeside", "park")) & crowd
        w = np.sqrt(zarea) * np.where(open_zone if open_zone.any() else crowd, 1, 0)
        ez = _pick(rng, n_edge, w)
        xy = _on_lines(shapely.boundary(zpoly), ez, rng.uniform(0, 1, n_edge))
        gx, gy = np.concatenate([gx, xy[:, 0]]), np.concatenate([gy, xy[:, 1]])
        gz = np.concatenate([gz, ez])
    if n_gate:
        cx, cy = shapely.get_coordinates(shapely.point_on_surface(zpoly[gz])).T
        d = np.maximum(meters(cx - gx, cy - gy), 1.0)
        step = np.minimum(6.0 / d, 0.5)
        part("people", gx + (cx - gx) * step, gy + (cy - gy) * step,
             role=np.full(n_gate, "gate"))

    # logistics: trackers on trucks and containers, home depot in a hub zone
    c = counts["logistics"]
    depots = getattr(city, "depots", None)
    hub = (np.isin(zones["zone_id"].astype(str).to_numpy(), list(depots)) if depots
           else _type_mask(ztype, HUB_TYPES))
    if hub.sum() < 2:
        hub[:] = True
    hub_idx = np.flatnonzero(hub)
    hpos = rng.integers(0, len(hub_idx), c)
    home = hub_idx[hpos]
    dest = hub_idx[(hpos + 1 + rng.integers(0, len(hub_idx) - 1, c)) % len(hub_idx)]
    lon, lat = sample_in_polygons(rng, zpoly, home)
    zid = zones["zone_id"].to_numpy().astype(str)
    part("logistics", lon, lat,
         role=np.where(rng.uniform(size=c) < 0.7, "truck", "container"),
         depot_zone=zid[home], dest_zone=zid[dest])

    # air, gas, noise: in zones (air and noise favour busy ones)
    for k, words in (("air", None), ("gas", ("industrial", "residential", "commercial")),
                     ("noise", None)):
        c = counts[k]
        w = zarea if words is None else np.where(_type_mask(ztype, words), zarea, zarea * 0.2)
        z = _pick(rng, c, w)
        lon, lat = sample_in_polygons(rng, zpoly, z)
        part(k, lon, lat, role=np.full(c, "station"))

    # water: lake level gauges on the lake edge, drains along roads, rain gauges in zones
    c = counts["water"]
    n_lake = max(1, min(c // 3, max(4, c // 25)))
    n_rain = max(0, min(c - n_lake, max(1, c // 10)))
    n_drain = c - n_lake - n_rain
    edge = shapely.boundary(shapely.buffer(lake_geometry(city), -8 / M_PER_DEG_LAT))
    frac = (np.arange(n_lake) + rng.uniform(0, 1)) / n_lake
    xy = shapely.get_coordinates(shapely.line_interpolate_point(edge, frac, normalized=True))
    part("water", xy[:, 0], xy[:, 1], role=np.full(n_lake, "lake_level"))
    if n_rain:
        lon, lat = sample_in_polygons(rng, zpoly, _pick(rng, n_rain, zarea))
        part("water", lon, lat, role=np.full(n_rain, "rain"))
    if n_drain:
        s = _pick(rng, n_drain, segs["length_m"].to_numpy(float) + 50)
        xy = _on_lines(slines, s, rng.uniform(0.05, 0.95, n_drain))
        part("water", xy[:, 0], xy[:, 1], role=np.full(n_drain, "drain"),
             segment_id=segs["segment_id"].to_numpy().astype(str)[s])

    # fire: detectors in buildings of built-up zones (5-20 per building, same point)
    c = counts["fire"]
    built = ~_type_mask(ztype, BUILDING_EXCLUDE)
    if not built.any():
        built[:] = True
    n_bld = max(1, c // 12)
    bz = _pick(rng, n_bld, np.where(built, zarea, 0))
    blon, blat = sample_in_polygons(rng, zpoly, bz)
    b = np.sort(rng.integers(0, n_bld, c))
    b[: min(c, n_bld)] = np.arange(min(c, n_bld))
    b = np.sort(b)
    bid = np.char.add(np.char.add(zid[bz][b], "-b"), np.char.zfill(b.astype(str), 5))
    part("fire", blon[b], blat[b], role=np.full(c, "detector"), building_id=bid)

    return _assemble(parts, city, zid, ztype, rng, direct_share, gateway_size)


def _assemble(parts, city, zid, ztype, rng, direct_share, gateway_size) -> pl.DataFrame:
    n = sum(len(p["lon"]) for p in parts)
    cols: dict[str, np.ndarray] = {}
    str_cols = {"kind", "role", "segment_id", "direction", "building_id", "depot_zone",
                "dest_zone"}
    for name in ("kind", "lon", "lat", "role", "segment_id", "direction", "lanes",
                 "free_flow_kmh", "capacity_veh_h", "building_id", "depot_zone", "dest_zone"):
        arrs = []
        for p in parts:
            m = len(p["lon"])
            if name in p:
                arrs.append(np.asarray(p[name], object if name in str_cols else float))
            else:
                arrs.append(np.full(m, None if name in str_cols else np.nan,
                                    object if name in str_cols else float))
        cols[name] = np.concatenate(arrs)
    kind = cols["kind"].astype(str)
    # zone of every sensor: the zone containing it, else the nearest one
    tree = shapely.STRtree(np.asarray(city.zones.geometry.values))
    pts = shapely.points(cols["lon"], cols["lat"])
    src, hit = tree.query_nearest(pts, all_matches=False)
    zone_i = np.empty(n, int)
    zone_i[src] = hit
    # ids: per-kind prefix and running number
    sid = np.empty(n, object)
    for k in KINDS:
        m = np.flatnonzero(kind == k)
        sid[m] = np.char.add(PREFIX[k] + "-", np.char.zfill(np.arange(len(m)).astype(str), 6))
    # gateways: fixed sensors in spatial strips of ~gateway_size; logistics and a share direct
    direct = (kind == "logistics") | (rng.uniform(size=n) < direct_share)
    fixed = np.flatnonzero(~direct)
    gw = np.full(n, None, object)
    if len(fixed):
        n_gw = max(1, math.ceil(len(fixed) / gateway_size))
        n_strips = max(1, int(round(math.sqrt(n_gw))))
        by_lat = fixed[np.argsort(cols["lat"][fixed], kind="stable")]
        strip = np.arange(len(by_lat)) * n_strips // len(by_lat)
        order = np.lexsort((cols["lon"][by_lat], strip))
        ordered = by_lat[order]
        gno = np.arange(len(ordered)) * n_gw // len(ordered)
        gw[ordered] = np.char.add("gw-", np.char.zfill(gno.astype(str), 4))
    df = pl.DataFrame({
        "sensor_id": pl.Series(sid.astype(str)),
        "kind": pl.Series(kind),
        "lon": np.round(cols["lon"], 7), "lat": np.round(cols["lat"], 7),
        "gateway_id": pl.Series(gw.tolist(), dtype=pl.String),
        "zone_id": pl.Series(zid[zone_i]), "zone_type": pl.Series(ztype[zone_i]),
        **{c: pl.Series(cols[c].tolist(), dtype=pl.String) for c in
           ("role", "segment_id", "direction", "building_id", "depot_zone", "dest_zone")},
        "lanes": pl.Series(cols["lanes"]).fill_nan(None).cast(pl.Int32),
        "free_flow_kmh": pl.Series(cols["free_flow_kmh"]).fill_nan(None),
        "capacity_veh_h": pl.Series(cols["capacity_veh_h"]).fill_nan(None),
        "scale": np.round(rng.uniform(0.6, 1.4, n), 4),
    })
    return df.select(COLUMNS)


def write(df: pl.DataFrame, path: str | Path) -> Path:
    """Write a deployment as Parquet (or CSV by suffix); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".csv":
        df.write_csv(path)
    else:
        df.write_parquet(path, statistics=False)
    return path


def read(path: str | Path) -> pl.DataFrame:
    """Read a deployment written by :func:`write`."""
    path = Path(path)
    return pl.read_csv(path) if path.suffix == ".csv" else pl.read_parquet(path)
