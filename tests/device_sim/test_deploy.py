from __future__ import annotations

import numpy as np
import polars as pl
import shapely

from citypulse.catalogue import KINDS
from device_sim.city import lake_geometry
from device_sim.deploy import deploy, read, write

from .conftest import SEED, N


def test_same_seed_same_deployment_file(tmp_path, city):
    a = write(deploy(N, SEED, city), tmp_path / "a.parquet")
    b = write(deploy(N, SEED, city), tmp_path / "b.parquet")
    assert a.read_bytes() == b.read_bytes()
    c = deploy(N, SEED + 1, city)
    assert not read(a).equals(c)


def test_every_kind_and_zone_populated(deployment, city):
    assert deployment.height == N
    assert set(deployment["kind"].unique()) == set(KINDS)
    assert set(deployment["zone_id"].unique()) == set(city.zones["zone_id"].astype(str))
    assert deployment["sensor_id"].is_unique().all()
    for col in ("sensor_id", "kind", "lon", "lat"):
        assert deployment[col].null_count() == 0


def test_sensors_inside_the_city_and_traffic_on_roads(deployment, city):
    area = shapely.union_all([*city.zones.geometry.values, lake_geometry(city)]).buffer(1e-4)
    pts = shapely.points(deployment["lon"].to_numpy(), deployment["lat"].to_numpy())
    assert shapely.contains(area, pts).all()
    # every sensor's zone contains it (or touches it: gates, lake gauges, roadside)
    zones = dict(zip(city.zones["zone_id"].astype(str), city.zones.geometry.values, strict=True))
    zg = np.array([zones[z] for z in deployment["zone_id"].to_list()])
    assert (shapely.distance(zg, pts) < 2e-4).all()
    tr = deployment.filter(pl.col("kind") == "traffic")
    segs = dict(zip(city.segments["segment_id"].astype(str), city.segments.geometry.values,
                    strict=True))
    lines = np.array([segs[s] for s in tr["segment_id"].to_list()])
    d = shapely.distance(lines, shapely.points(tr["lon"].to_numpy(), tr["lat"].to_numpy()))
    assert d.max() < 1e-6  # on its own segment (degrees; ~0.1 m)
    assert tr["direction"].null_count() == 0 and tr["capacity_veh_h"].min() > 0


def test_placements_by_kind(deployment, city):
    assert {"lake_level", "drain", "rain"} <= set(
        deployment.filter(pl.col("kind") == "water")["role"].unique())
    assert {"gate", "zone"} <= set(deployment.filter(pl.col("kind") == "people")["role"])
    gates = deployment.filter(pl.col("role") == "gate")
    assert {"metro_station", "plaza", "lakeside"} <= set(gates["zone_type"])
    lake = lake_geometry(city)
    gauges = deployment.filter(pl.col("role") == "lake_level")
    d = shapely.distance(shapely.boundary(lake), shapely.points(gauges["lon"].to_numpy(),
                                                                gauges["lat"].to_numpy()))
    assert d.max() < 2e-4  # on the lake edge
    lg = deployment.filter(pl.col("kind") == "logistics")
    hubs = set(getattr(city, "depots", {}) or {})
    assert set(lg["depot_zone"]) <= hubs and (lg["depot_zone"] != lg["dest_zone"]).all()
    fire = deployment.filter(pl.col("kind") == "fire")
    assert fire["building_id"].null_count() == 0
    assert not fire["zone_type"].is_in(["lake", "green"]).any()


def test_gateways_and_direct_sensors(deployment):
    gw = deployment.filter(pl.col("gateway_id").is_not_null())
    sizes = gw.group_by("gateway_id").len()["len"]
    assert sizes.max() <= 101 and sizes.min() >= 50
    direct = deployment.filter(pl.col("gateway_id").is_null())
    assert (direct["kind"] == "logistics").sum() == (deployment["kind"] == "logistics").sum()
    assert (direct["kind"] != "logistics").sum() > 0
