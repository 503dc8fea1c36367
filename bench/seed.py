"""Simulated data for the dashboards' tests, benchmark and offline demos.

In: a migrated database connection (autocommit), a sensor count and a history length.
Out: sensors registered on the twin's city model (traffic on segments, people in zones,
logistics trackers with origin/destination zones, the rest as points), readings for the
last ``minutes`` minutes, every ``step_min`` minutes (rush-hour-like congestion moving round
the rings), some sensors
offline, dead letters, open alerts (through analytics' lifecycle) and, by default, one
pass of the twin's worker over it (placement and per-minute state).  Returns a summary.
Deterministic for a given ``seed``; vectorised (200,000 sensors register in seconds).
"""

from __future__ import annotations

import io
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import psycopg

from citypulse.catalogue import MAX_SLOTS
from citypulse.schema import Store
from citypulse.settings import Settings
from citypulse.wire import topics
from dashboards import data


def seed(conn: psycopg.Connection, settings: Settings, sensors: int = 2000,
         minutes: int = 30, now: datetime | None = None, seed: int = 7,
         alerts: int = 4, aggregate: bool = True, step_min: int = 1) -> dict:
    """Fill the store with a small living city; returns counts of what was written.

    With ``aggregate`` the twin's worker pass runs once, so the twin's state tables hold
    the seeded history (as they would with ``citypulse twin run`` going).
    """
    rng = np.random.default_rng(seed)
    now = (now or datetime.now(UTC)).replace(microsecond=0)
    model = data.city_model()
    segs = model["segments"]
    zones = [z for z in model["zones"] if z["type"] != "lake"]
    n_trf = max(len(segs), int(sensors * 0.2))
    n_ppl = max(len(zones), int(sensors * 0.1))
    n_lgx = max(20, int(sensors * 0.02))
    n_pt = max(0, sensors - n_trf - n_ppl - n_lgx)
    rows = []
    seg_of = np.arange(n_trf) % len(segs)
    for i in range(n_trf):
        s = segs[seg_of[i]]
        p = s["path"][len(s["path"]) // 2]
        rows.append((f"trf-{i:06d}", "traffic", p[0], p[1], f"gw-t{i // 100:04d}",
                     f'{{"segment_id": "{s["id"]}"}}'))
    cent = data.zone_centroids()
    zone_of = np.arange(n_ppl) % len(zones)
    for i in range(n_ppl):
        z = zones[zone_of[i]]
        c = cent[z["id"]]
        rows.append((f"ppl-{i:06d}", "people", c[0] + rng.normal(0, 0.002),
                     c[1] + rng.normal(0, 0.002), f"gw-p{i // 100:04d}",
                     f'{{"zone_id": "{z["id"]}"}}'))
    hubs = [z for z in zones if any(w in z["type"] for w in ("port", "logistic", "industrial"))]
    hubs = hubs or zones[:4]
    for i in range(n_lgx):
        o, d = hubs[i % len(hubs)], zones[int(rng.integers(len(zones)))]
        c = cent[o["id"]]
        rows.append((f"lgx-{i:06d}", "logistics", c[0], c[1], None,
                     f'{{"origin_zone": "{o["id"]}", "dest_zone": "{d["id"]}"}}'))
    kinds = np.array(["air", "water", "fire", "gas", "noise"])
    r = 5200 * np.sqrt(rng.uniform(0.12, 1, n_pt))
    a = rng.uniform(0, 2 * math.pi, n_pt)
    lon = data.CENTRE[0] + r * np.sin(a) / (111_320 * math.cos(math.radians(data.CENTRE[1])))
    lat = data.CENTRE[1] + r * np.cos(a) / 110_540
    pk = kinds[rng.integers(len(kinds), size=n_pt)]
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join("\\N" if v is None else str(v) for v in row) + "\n")
    for i in range(n_pt):
        buf.write(f"{pk[i][:3]}-{i:06d}\t{pk[i]}\t{lon[i]:.6f}\t{lat[i]:.6f}\t"
                  f"gw-x{i // 100:04d}\t{{}}\n")
    with conn.cursor() as cur, cur.copy(
            "COPY citypulse.sensors (sensor_id, kind, lon, lat, gateway_id, props) "
            "FROM STDIN") as copy:
        copy.write(buf.getvalue())
    ids = dict(conn.execute("SELECT sensor_id, id FROM citypulse.sensors").fetchall())
    store = Store.open(conn, settings, migrate_now=False)
    n_readings = _readings(conn, store, ids, segs, seg_of, n_trf, n_ppl, zones, zone_of,
                           now, minutes, rng, step_min)
    offline = [f"{pk[i][:3]}-{i:06d}" for i in range(0, n_pt, 97)][:500]
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO citypulse.sensor_status VALUES (%s, 'offline', %s) "
                        "ON CONFLICT (sensor_id) DO UPDATE SET status = 'offline'",
                        [(s, now) for s in offline])
        cur.executemany(
            "INSERT INTO citypulse.dead_letters (received_at, topic, reason, payload, detail) "
            "VALUES (%s, %s, %s, %s, %s)",
            [(now - timedelta(seconds=int(k) * 7), topics.telemetry(f"x{k}"), reason,
              b'{"ts": "soon", "values": {"speed_kmh": -5}}', "seeded")
             for k, reason in enumerate(["malformed"] * 3 + ["out_of_range"] * 5
                                        + ["unknown_sensor"] * 2)])
    store.refresh_rollups(conn, settle_s=0)
    twin = None
    if aggregate:
        from twin.incremental import run_pass

        twin = run_pass(conn, store, settings, now=now + timedelta(minutes=1), settle_s=0)
    opened = _alerts(conn, rows, ids, now, alerts)
    return {"sensors": len(ids), "readings": n_readings, "offline": len(offline),
            "alerts": opened, "twin": twin, "first": now - timedelta(minutes=minutes), "last": now}


def _readings(conn, store, ids, segs, seg_of, n_trf, n_ppl, zones, zone_of, now, minutes,
              rng, step_min) -> int:
    """Traffic and people readings every ``step_min``; a jam moves round the rings over time."""
    total = 0
    pad = (None,) * (MAX_SLOTS - 5)
    for m in range(minutes, -1, -step_min):
        t = now - timedelta(minutes=m)
        phase = (minutes - m) / max(1, minutes) * 2 * math.pi
        batch = []
        for i in range(n_trf):
            s = segs[seg_of[i]]
            ang = (seg_of[i] / len(segs)) * 2 * math.pi
            jam = max(0.0, math.cos(ang - phase)) ** 3
            speed = s["free_flow_kmh"] * (1 - 0.85 * jam) * rng.uniform(0.92, 1.05)
            count = 5 + 30 * jam + rng.uniform(0, 5)
            batch.append((t, ids[f"trf-{i:06d}"], m, count, speed, 100 * jam, 90.0, -70.0)
                         + pad)
        for i in range(n_ppl):
            z = zones[zone_of[i]]
            people = z["area_m2"] / 1e4 * 60 * (1 + math.sin(phase + zone_of[i]))
            batch.append((t, ids[f"ppl-{i:06d}"], m, people, 3.0, 2.0, 90.0, -70.0) + pad)
        store.write_rows(conn, batch)
        total += len(batch)
    return total


def _alerts(conn, rows, ids, now, n) -> int:
    from analytics.lifecycle import NewAlert, open_alert

    specs = [("fire_smoke", "critical", "Smoke and heat in building"),
             ("traffic_jam", "warning", "Heavy congestion on ring road"),
             ("crowd_density", "critical", "Crowd crush risk at plaza"),
             ("sensor_down", "info", "Gateway silent"),
             ("gas_leak", "warning", "Methane above 20% LEL")]
    opened = 0
    for k in range(n):
        rule, sev, title = specs[k % len(specs)]
        sid, _kind, lon, lat = rows[(k * 37) % len(rows)][:4]
        got = open_alert(conn, NewAlert(
            rule=rule, entity_kind="sensor", entity_id=sid, severity=sev,
            title=f"{title} #{k + 1}", started_at=now - timedelta(minutes=5 + 3 * k),
            zone_id=f"zone-{k}", lon=float(lon), lat=float(lat),
            evidence={"value": 42.0 + k}), now=now)
        opened += got is not None
    return opened
