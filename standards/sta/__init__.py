"""OGC SensorThings API 1.1, sensing part, read only, over citypulse's store.

Public entry: :func:`create_blueprint` -> a Flask blueprint serving ``/sta/v1.1/...``
(mounted by the dashboards app, behind its login guard).  Modules: :mod:`.odata` (the
``$filter``/``$orderby`` parser), :mod:`.query` (all query options), :mod:`.model` (entity
sets as SQL over the store, ids, units), :mod:`.sqlgen` (filter -> SQL), :mod:`.engine`
(reads, expansions), :mod:`.counts` (``$count`` from the rollups), :mod:`.render` (JSON),
:mod:`.routes` (paths, paging, errors).  See docs/standard-apis.md.
"""

from __future__ import annotations

from collections.abc import Callable

from citypulse.wire.topics import STA_VERSION

PREFIX = "/sta/" + STA_VERSION
STATEMENT_TIMEOUT_MS = 30_000


def create_blueprint(pool, require_read: Callable[[], str],
                     access: Callable[[], object] | None = None):
    """The SensorThings blueprint; ``require_read()`` is the host app's access check.

    ``access()`` (called after it) gives a sharing recipient's
    :class:`sharing.access.Access`, or None for a reader who sees everything.
    """
    import flask
    import psycopg
    import shapely.wkt

    from standards.sta.engine import Reader
    from standards.sta.odata import QueryError
    from standards.sta.routes import NotFound, resolve

    bp = flask.Blueprint("sta", __name__)

    def error(status: int, message: str) -> flask.Response:
        resp = flask.jsonify({"code": status, "type": "error", "message": message})
        resp.status_code = status
        return resp

    def feature_ids(conn):
        def ids(fn: str, geom) -> list[str]:
            rows = conn.execute(
                "SELECT 'segment:' || segment_id, geom_wkt FROM citypulse.twin_segments "
                "UNION ALL SELECT 'zone:' || zone_id, geom_wkt FROM citypulse.twin_zones"
            ).fetchall()
            test = {"st_within": lambda g: g.within(geom),
                    "st_contains": lambda g: g.contains(geom),
                    "st_equals": lambda g: g.equals(geom),
                    "st_disjoint": lambda g: g.disjoint(geom)}.get(fn, lambda g: g.intersects(geom))
            return [i for i, wkt in rows if test(shapely.wkt.loads(wkt))]
        return ids

    @bp.route(PREFIX, strict_slashes=False)
    def service_root():
        return sta("")

    @bp.route(PREFIX + "/<path:path>")
    def sta(path: str):
        require_read()
        base = flask.request.host_url.rstrip("/") + PREFIX
        url = base + ("/" + path if path else "")
        args = list(flask.request.args.items(multi=True))
        try:
            with pool.connection() as conn, conn.transaction():
                conn.execute(f"SET LOCAL statement_timeout = {STATEMENT_TIMEOUT_MS}")
                # the UNION over slots and partitions looks expensive to the planner, and
                # JIT-compiling it costs seconds where the index scans take milliseconds
                conn.execute("SET LOCAL jit = off")
                reader = Reader(conn, feature_ids(conn), access() if access else None)
                answer = resolve(reader, path, args, base, url)
        except QueryError as exc:
            return error(400, str(exc))
        except NotFound as exc:
            return error(404, str(exc))
        except psycopg.errors.QueryCanceled:
            return error(400, f"the query ran longer than {STATEMENT_TIMEOUT_MS // 1000} s; "
                              "narrow $filter or lower $top")
        except psycopg.Error as exc:
            # data exceptions (22: bad cast, division by zero) and type errors (42: no
            # operator text = bigint) come from the request's options; anything else is ours
            state = exc.sqlstate or ""
            if state[:2] not in ("22", "42") or state == "42501":
                raise
            return error(400, "the query options cannot be evaluated: "
                              + (exc.diag.message_primary or "type mismatch"))
        if answer.text is not None:
            return flask.Response(answer.text, mimetype="text/plain")
        return flask.jsonify(answer.body)

    return bp
