"""HTTP JSON/GeoJSON endpoints of the twin, as a Flask blueprint the dashboards app mounts.

In: the settings (database URL) or a ready ``psycopg_pool.ConnectionPool``.  Out: a
``flask.Blueprint`` with, all GET::

    /api/twin/segments?at=T&window=5&format=json|geojson   state per directed segment
    /api/twin/zones?at=T&window=5&format=json|geojson      state per zone (+ "flows")
    /api/twin/od?hour=T                                    trips per origin/destination
    /api/twin/lag                                          aggregation lag (s)
    /api/twin/placement                                    sensors per placement, unplaceable
    /api/twin/city.geojson                                 the city model, every layer

``T`` is ISO-8601 (``Z`` or an offset; a naive time means UTC) or epoch milliseconds;
omitted means now.  A bad parameter answers 400 with ``{"error": ..., "parameter": name}``.  Mount with
``server.register_blueprint(twin.api.create_blueprint(settings))``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from functools import cache

import orjson
import shapely
from flask import Blueprint, Response, request

from citypulse.city import active as active_city
from citypulse.city.store import model_key
from citypulse.settings import Settings
from twin import state


def parse_time(text: str | None) -> datetime | None:
    """ISO-8601 or epoch milliseconds to an aware datetime (None for empty); ValueError if bad."""
    if not text:
        return None
    text = text.strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text) / 1000.0, UTC)
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


class BadParameter(ValueError):
    """A query parameter is wrong; ``name`` says which."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"parameter {name!r}: {problem}")
        self.name = name


def time_param(name: str) -> datetime | None:
    """The request's ``name`` parameter as a time (see :func:`parse_time`); BadParameter."""
    text = request.args.get(name)
    try:
        return parse_time(text)
    except (ValueError, OverflowError, OSError):
        raise BadParameter(name, f"{text!r} is not an ISO-8601 time or epoch "
                                 "milliseconds") from None


def _bad(exc: BadParameter) -> Response:
    return _json({"error": str(exc), "parameter": exc.name}, 400)


def _json(obj: object, status: int = 200) -> Response:
    return Response(orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS), status=status,
                    mimetype="application/json")


_GEOMS: dict[tuple[str, str], dict] = {}


def _geometries(city, layer: str) -> dict[str, dict]:
    key = (model_key(city), layer)
    if key in _GEOMS:
        return _GEOMS[key]
    frame, fid = (city.segments, "segment_id") if layer == "segments" else (city.zones, "zone_id")
    if len(_GEOMS) > 8:
        _GEOMS.clear()
    _GEOMS[key] = {k: shapely.geometry.mapping(g) for k, g in zip(frame[fid], frame.geometry,
                                                                 strict=True)}
    return _GEOMS[key]


@cache
def _city_geojson(key: str, city) -> bytes:
    import tempfile
    from pathlib import Path

    from citypulse.city import export

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "city.geojson"
        export(city, str(path), "geojson")
        return path.read_bytes()


def _feature_collection(city, st: state.State, layer: str, key: str) -> dict:
    geoms = _geometries(city, layer)
    body = st.as_dict()
    rows = body.pop("rows")
    return {"type": "FeatureCollection", **body,
            "features": [{"type": "Feature", "id": r[key], "properties": r,
                          "geometry": geoms.get(r[key])} for r in rows]}


def create_blueprint(settings: Settings | None = None, pool: object | None = None) -> Blueprint:
    """The twin's blueprint; connections come from ``pool`` or a small pool on the settings' DB."""
    bp = Blueprint("twin_api", __name__, url_prefix="/api/twin")
    holder: dict = {"pool": pool}

    def get_pool():
        if holder["pool"] is None:
            from psycopg_pool import ConnectionPool

            from citypulse.settings import load_settings

            s = settings or load_settings()
            holder["pool"] = ConnectionPool(s.database_url, min_size=1, max_size=4,
                                            kwargs={"autocommit": True}, open=True)
        return holder["pool"]

    def window() -> int:
        text = request.args.get("window", str(state.DEFAULT_WINDOW_MIN))
        if not text.isdigit() or not 1 <= int(text) <= 60:
            raise BadParameter("window", f"{text!r}: use 1..60 minutes")
        return int(text)

    def layer_state(fn, layer: str, key: str) -> Response:
        try:
            at = time_param("at")
            w = window()
            fmt = request.args.get("format", "json")
            if fmt not in ("json", "geojson"):
                raise BadParameter("format", f"{fmt!r}: use json or geojson")
        except BadParameter as exc:
            return _bad(exc)
        with get_pool().connection() as conn:
            st = fn(conn, at, w)
            city = active_city(conn) if fmt == "geojson" else None
        return _json(_feature_collection(city, st, layer, key) if fmt == "geojson"
                     else st.as_dict())

    @bp.get("/segments")
    def segments() -> Response:
        return layer_state(state.segments_at, "segments", "segment_id")

    @bp.get("/zones")
    def zones() -> Response:
        return layer_state(state.zones_at, "zones", "zone_id")

    @bp.get("/od")
    def od() -> Response:
        try:
            hour = time_param("hour")
        except BadParameter as exc:
            return _bad(exc)
        with get_pool().connection() as conn:
            return _json(state.od(conn, hour).as_dict())

    @bp.get("/lag")
    def lag() -> Response:
        with get_pool().connection() as conn:
            return _json({"lag_s": state.aggregation_lag_s(conn)})

    @bp.get("/placement")
    def placement() -> Response:
        with get_pool().connection() as conn:
            counts = conn.execute(
                "SELECT placement, status, count(*) FROM citypulse.sensor_placement "
                "GROUP BY 1, 2 ORDER BY 1, 2").fetchall()
            bad = conn.execute(
                """SELECT s.sensor_id, s.kind, s.lon, s.lat, p.reason
                   FROM citypulse.sensor_placement p JOIN citypulse.sensors s ON s.id = p.sensor
                   WHERE p.status = 'unplaceable' ORDER BY s.sensor_id LIMIT 200""").fetchall()
        return _json({"counts": [{"placement": a, "status": b, "sensors": n}
                                 for a, b, n in counts],
                      "unplaceable": [{"sensor_id": i, "kind": k, "lon": x, "lat": y,
                                       "reason": r} for i, k, x, y, r in bad]})

    @bp.get("/city.geojson")
    def city_geojson() -> Response:
        with get_pool().connection() as conn:
            city = active_city(conn)
        return Response(_city_geojson(model_key(city), city), mimetype="application/geo+json")

    return bp
