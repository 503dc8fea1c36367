"""Wall KPIs, traffic statistics and ingest health from the store.

In: a psycopg connection and a time range.  Out: plain dicts and lists for the pages.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg

from citypulse.catalogue import columns
from citypulse.formulas import congestion_index
from dashboards.sources.alerts import list_alerts
from dashboards.sources.citymap import city_model
from dashboards.sources.colours import SEVERITIES
from dashboards.sources.state import segment_state

_S, _C = columns("traffic", "s"), columns("traffic", "c")  # rollup sums and counts


def kpis(conn: psycopg.Connection, at: datetime | None = None,
         alerts: list[dict] | None = None) -> dict[str, Any]:
    """Wall KPIs: readings/s (last 10 s), sensors online/total, open alerts by severity."""
    at = at or datetime.now(UTC)
    (n,) = conn.execute("SELECT count(*) FROM citypulse.raw WHERE time > %s AND time <= %s",
                        (at - timedelta(seconds=10), at)).fetchone()
    (total,) = conn.execute("SELECT count(*) FROM citypulse.sensors").fetchone()
    from analytics import maintenance

    incidents, upkeep = maintenance.split(list_alerts(conn, open_only=True)
                                          if alerts is None else alerts)
    # one count of silent sensors: their last will said offline, or an open upkeep alert
    # names them (a sensor with an open offline alert is not "online")
    silent = maintenance.silent_sensors(upkeep)
    # ... or an open maintenance ticket says it (or its gateway) is silent
    (offline,) = conn.execute(
        """SELECT count(*) FROM (
               SELECT sensor_id FROM citypulse.sensor_status WHERE status = 'offline'
               UNION SELECT unnest(%s::text[])
               UNION SELECT entity_id FROM citypulse.maintenance_tickets
                     WHERE status = 'open' AND entity_kind = 'sensor' AND 'silent' = ANY(problems)
               UNION SELECT s.sensor_id FROM citypulse.maintenance_tickets t
                     JOIN citypulse.sensors s ON s.gateway_id = t.entity_id
                     WHERE t.status = 'open' AND t.entity_kind = 'gateway'
                       AND 'silent' = ANY(t.problems)) s""",
        (sorted(silent),)).fetchone()
    by_sev = dict.fromkeys(SEVERITIES, 0)
    for a in incidents:
        by_sev[a["severity"]] = by_sev.get(a["severity"], 0) + 1
    return {"readings_per_s": n / 10.0, "sensors_total": total,
            "sensors_online": max(0, total - offline), "alerts": by_sev,
            "upkeep_open": len(upkeep), "tickets_open": _tickets_open(conn)}


def _tickets_open(conn: psycopg.Connection) -> int:
    (n,) = conn.execute("SELECT count(*) FROM citypulse.maintenance_tickets "
                        "WHERE status = 'open'").fetchone()
    return n


def worst_segments(conn: psycopg.Connection, at: datetime | None = None,
                   n: int = 5, state: dict[str, dict] | None = None) -> list[dict]:
    """The ``n`` most congested segments: [{id, name, congestion, speed_kmh}]."""
    at = at or datetime.now(UTC)
    state = segment_state(conn, at) if state is None else state
    names = {s["id"]: s["name"] for s in city_model()["segments"]}
    rows = [{"id": k, "name": names.get(k, k), **v} for k, v in state.items()
            if v.get("congestion") is not None]
    return sorted(rows, key=lambda r: -r["congestion"])[:n]


def segment_series(conn: psycopg.Connection, segment_id: str, since: datetime,
                   until: datetime) -> list[dict]:
    """Per-minute flow (vehicles) and mean speed of one segment: [{t, vehicles, speed}]."""
    rows = conn.execute(
        f"""SELECT r.bucket, sum(r.{_S["vehicle_count"]}),
                  sum(r.{_S["speed_kmh"]}) / nullif(sum(r.{_C["speed_kmh"]}), 0)
           FROM citypulse.rollup_1m r JOIN citypulse.sensors s ON s.id = r.sensor
           WHERE s.kind = 'traffic' AND s.props->>'segment_id' = %s
             AND r.bucket >= %s AND r.bucket < %s
           GROUP BY 1 ORDER BY 1""", (segment_id, since, until)).fetchall()  # noqa: S608 - columns and formulas from code, no input
    return [{"t": t, "vehicles": v, "speed": s} for t, v, s in rows]


def congestion_by_hour_ring(conn: psycopg.Connection, since: datetime) -> list[dict]:
    """Mean congestion per (hour of day, ring): [{hour, ring, congestion}]."""
    segs = {s["id"]: s for s in city_model()["segments"]}
    rows = conn.execute(
        f"""SELECT extract(hour FROM r.bucket AT TIME ZONE 'Asia/Shanghai')::int,
                  s.props->>'segment_id',
                  sum(r.{_S["speed_kmh"]}) / nullif(sum(r.{_C["speed_kmh"]}), 0)
           FROM citypulse.rollup_1m r JOIN citypulse.sensors s ON s.id = r.sensor
           WHERE s.kind = 'traffic' AND r.bucket >= %s GROUP BY 1, 2""", (since,)).fetchall()  # noqa: S608 - columns and formulas from code, no input
    acc: dict[tuple[int, str], list[float]] = {}
    for hour, seg, speed in rows:
        if seg not in segs or speed is None:
            continue
        s = segs[seg]
        cong = congestion_index(speed, s["free_flow_kmh"])
        acc.setdefault((hour, s["ring"]), []).append(cong)
    return [{"hour": h, "ring": r, "congestion": sum(v) / len(v)}
            for (h, r), v in sorted(acc.items())]


def ingest_health(conn: psycopg.Connection, since: datetime) -> dict[str, Any]:
    """Ingest health since ``since``: per-second readings, lag, dead letters, seq-gap loss."""
    # device time never stands for "now": readings stamped ahead of the server's clock (a
    # device clock running fast) are counted apart, not drawn minutes into the future
    rate = conn.execute(
        """SELECT date_trunc('second', time) t, count(*) FROM citypulse.raw
           WHERE time >= %s AND time <= now() GROUP BY 1 ORDER BY 1""", (since,)).fetchall()
    dead = conn.execute(
        """SELECT reason, count(*), (array_agg(left(encode(payload, 'escape'), 160)
                                      ORDER BY received_at DESC))[1:3]
           FROM citypulse.dead_letters WHERE received_at >= %s GROUP BY 1 ORDER BY 2 DESC""",
        (since,)).fetchall()
    (loss,) = conn.execute(
        """SELECT coalesce(sum(gap), 0) FROM (
               SELECT seq - lag(seq) OVER (PARTITION BY sensor ORDER BY time) - 1 AS gap
               FROM citypulse.raw WHERE time >= %s AND seq IS NOT NULL) g
           WHERE gap > 0""", (since,)).fetchone()
    (offline,) = conn.execute(
        "SELECT count(*) FROM citypulse.sensor_status WHERE status = 'offline'").fetchone()
    # gateways offline: analytics decides (heartbeats, silent sensors) and opens an alert
    (gw_off,) = conn.execute(
        """SELECT count(*) FROM citypulse.alerts
           WHERE entity_kind = 'gateway' AND status <> 'resolved'""").fetchone()
    latest, ahead, ahead_sensors = conn.execute(
        """SELECT max(time) FILTER (WHERE time <= now()), count(*) FILTER (WHERE time > now()),
                  count(DISTINCT sensor) FILTER (WHERE time > now())
           FROM citypulse.raw WHERE time >= %s""", (since,)).fetchone()
    lag = max(0.0, (datetime.now(UTC) - latest).total_seconds()) if latest else None
    return {"rate": [{"t": t, "n": n} for t, n in rate],
            "dead_letters": [{"reason": r, "count": n, "samples": s or []} for r, n, s in dead],
            "lost": int(loss), "sensors_offline": offline, "gateways_offline": gw_off,
            "lag_s": lag, "ahead_readings": ahead, "ahead_sensors": ahead_sensors}


def history_range(conn: psycopg.Connection) -> tuple[datetime, datetime] | None:
    """(first, last) time of stored readings, or None when the store is empty."""
    # capped at the server's now: a device clock running fast cannot stretch the range
    row = conn.execute("SELECT min(time), least(max(time), now()) FROM citypulse.raw").fetchone()
    return None if row[0] is None else (row[0], row[1])
