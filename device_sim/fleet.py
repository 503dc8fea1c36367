"""The deployment as arrays (:class:`Fleet`), plus the trucks' routes on the road graph."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl

from citypulse.catalogue import KINDS
from device_sim.city import M_PER_DEG_LAT, M_PER_DEG_LON
from device_sim.rng import uniform

KIND_NAMES = tuple(KINDS)
KIND_CODE = {k: i for i, k in enumerate(KIND_NAMES)}


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
