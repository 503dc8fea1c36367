"""Runs SensorThings reads against the store: collections, single entities, expansions, counts.

In: a psycopg connection (autocommit) and checked :class:`~standards.sta.query.Options`.
Out: :class:`Reader` returns plain row dicts (``model`` column names) that
:mod:`standards.sta.render` turns into JSON.  Observations are read from ``citypulse.raw``
one branch per metric slot, restricted to the datastreams' sensors, so a datastream's
observations, its latest one (``ORDER BY time DESC LIMIT 1``) and a time window are index
range scans on ``raw (sensor, time)``; ``$count`` of one datastream over a time window
sums ``rollup_1m`` for whole settled minutes (:mod:`standards.sta.counts`).
"""

from __future__ import annotations

from collections import defaultdict

import psycopg
from psycopg.rows import dict_row

from standards.sta import counts, limit, track
from standards.sta.model import ENTITIES, SLOTS, Entity, observations_sql
from standards.sta.odata import Node, QueryError
from standards.sta.query import Options
from standards.sta.sqlgen import Compiler, key_cond, link_cond

OBS = ENTITIES["Observations"]
ALL = None  # an Observations restriction meaning every datastream
TRACKED = track.TRACKED  # SQL variants and default order from .track
__all__ = ["ALL", "OBS", "Reader", "key_cond", "link_cond"]


def split_ds(ds_ids) -> dict[int, list[int]]:
    """Datastream ids grouped as ``slot -> [sensor row ids]``."""
    out: dict[int, list[int]] = defaultdict(list)
    for d in ds_ids:
        out[int(d) % 8].append(int(d) // 8)
    return dict(out)


def routed_ds(filt: Node | None) -> int | None:
    """The datastream a top-level ``Datastream/@iot.id eq N`` conjunct pins, if any."""
    for c in counts.conjuncts(filt):
        if c.op != "eq":
            continue
        for p, lit in (c.args, c.args[::-1]):
            if (p.op == "prop" and p.value in (("Datastream", "id"), ("Datastream", "@iot.id"))
                    and lit.op == "lit" and lit.kind == "number" and isinstance(lit.value, int)):
                return lit.value
    return None


class Reader:
    """One request's reads on one connection; ``executed`` keeps the SQL for EXPLAIN tests."""

    def __init__(self, conn: psycopg.Connection, feature_ids=None, access=None) -> None:
        self.conn = conn
        self.feature_ids = feature_ids
        self.access = access  # a sharing recipient's limits (None: everything)
        self.executed: list[tuple[str, list]] = []

    def sql_of(self, ent: Entity) -> str:
        """``ent``'s SQL, cut to the recipient's access if there is one."""
        return ent.sql if self.access is None else limit.entity_sql(ent, self.access)

    def obs_sql(self, branches: list[tuple[int, str]]) -> str:
        """Observations SQL of ``branches``, each also cut to the recipient's access."""
        if self.access is not None:
            branches = [(k, " AND ".join(c for c in (extra, limit.obs_condition(k, self.access))
                                         if c)) for k, extra in branches]
        return observations_sql(branches)

    def q(self, sql: str, params) -> list[dict]:
        """Run ``sql``; rows as dicts."""
        self.executed.append((sql, params))
        with self.conn.cursor(row_factory=dict_row) as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    def compiler(self, ent: Entity, alias: str = "e", params: list | None = None) -> Compiler:
        """A filter compiler for ``ent`` that appends to ``params``."""
        return Compiler(ent, alias, self.feature_ids, params, sql_of=self.sql_of)

    # ---- sources -----------------------------------------------------------------------
    def source(self, ent: Entity, restrict, params: list) -> str:
        """FROM-clause SQL of ``ent``; for Observations ``restrict`` is slot -> sensors."""
        if ent is not OBS:
            return self.sql_of(ent)
        if restrict is ALL:
            return self.obs_sql([(k, "") for k in SLOTS])
        branches = []
        for slot, sensors in sorted(restrict.items()):
            if len(sensors) == 1:
                branches.append((slot, "r.sensor = %s"))
                params.append(sensors[0])
            else:
                branches.append((slot, "r.sensor = ANY(%s::int[])"))
                params.append(sensors)
        return self.obs_sql(branches) if branches else observations_sql([(0, "false")])

    def _tail(self, ent: Entity, opts: Options, restrict, c: Compiler) -> list[str]:
        order = c.order(opts.orderby) if opts.orderby else (
            ['e."phenomenonTime" ASC'] if ent is OBS
            else list(track.DEFAULT_ORDER) if ent.plural in TRACKED else [])
        if ent is OBS:
            single = restrict is not ALL and len(restrict) == 1
            order += ["e.sensor_row"] if single else ["e.sensor_row", "e.ds"]
        elif ent.plural == "Datastreams":
            # the order of id (sensor row * 8 + slot) as the sensors' primary key gives it,
            # so a page is read along that index (id itself is computed: a sort of every
            # datastream, 1 M of them at 200,000 sensors)
            order += ["e.sensor_row", "e.slot"]
        else:
            order.append("e.id")
        return order

    def _from_where(self, ent: Entity, opts: Options, cond, restrict):
        """``(source SQL, WHERE terms, params, compiler)`` for ``ent`` after ``cond``."""
        params: list = []
        src = self.source(ent, restrict, params)
        where = ["true"]
        if cond:
            where.append(cond[0])
            params += cond[1]
        c = self.compiler(ent, params=params)
        if opts.filter is not None:
            where.append(c.where(opts.filter))
        return src, where, params, c

    # ---- reads -------------------------------------------------------------------------
    def collection(self, ent: Entity, opts: Options, cond: tuple[str, list] | None = None,
                   restrict=ALL) -> tuple[list[dict], bool, int | None]:
        """``(rows, more, count)``: one page of ``ent`` after ``cond`` and the options."""
        if ent is OBS and restrict is ALL:
            pinned = routed_ds(opts.filter)
            if pinned is not None:
                restrict = split_ds([pinned])
        src, where, params, c = self._from_where(ent, opts, cond, restrict)
        order = self._tail(ent, opts, restrict, c)
        sql = (f"SELECT e.* FROM ({src}) e WHERE {' AND '.join(where)} "  # noqa: S608 - identifiers from code; values are parameters
               f"ORDER BY {', '.join(order)} LIMIT %s OFFSET %s")
        if ent.plural == "Datastreams" and not opts.orderby:
            # the page's keys first, then its rows: a deep $skip sorts two integers per
            # datastream instead of whole rows (1 M at 200,000 sensors: half the time)
            # (the kind's id ``sensor`` too: a slot alone matches a metric of every kind)
            keys = sql.replace("SELECT e.*", "SELECT e.sensor_row, e.slot, e.sensor", 1)
            sql = (f"SELECT e.* FROM ({src}) e JOIN ({keys}) k ON e.sensor_row = k.sensor_row"  # noqa: S608 - as above
                   f" AND e.slot = k.slot AND e.sensor = k.sensor ORDER BY {', '.join(order)}")
        rows = self.q(sql, params + [opts.limit + 1, opts.skip])
        more = 0 < opts.limit < len(rows)  # $top=0 (a count only) has no next page
        count = self.count(ent, opts, cond, restrict) if opts.count else None
        return rows[:opts.limit], more, count

    def count(self, ent: Entity, opts: Options, cond, restrict) -> int:
        """``$count``: rollups for one datastream's time window, else ``count(*)``."""
        if ent is OBS and restrict is not ALL and not cond and self.access is None:
            pairs = [(k, s) for k, ss in restrict.items() for s in ss]
            if len(pairs) == 1:
                window = counts.time_window(opts.filter, pinned=routed_ds(opts.filter))
                if window is not None:
                    return counts.observations(self, pairs[0][1], pairs[0][0], *window)
        src, where, params, _c = self._from_where(ent, opts, cond, restrict)
        return self.q(f"SELECT count(*) AS n FROM ({src}) e WHERE {' AND '.join(where)}",  # noqa: S608 - identifiers from code; values are parameters
                      params)[0]["n"]

    def one(self, ent: Entity, key, cond: tuple[str, list] | None = None) -> dict | None:
        """The entity with ``key`` (and ``cond``), or None."""
        if ent is OBS:
            if not isinstance(key, int) or key < 0:
                return None
            ds, ms = key >> 42, key & ((1 << 42) - 1)
            params = [ds // 8, ms, ms]
            src = self.obs_sql([(ds % 8, "r.sensor = %s AND r.time >= to_timestamp(%s / "
                                     "1000.0) - interval '1 ms' AND r.time < to_timestamp("
                                     "%s / 1000.0) + interval '1 ms'")])
            where = "e.id = %s" + (f" AND {cond[0]}" if cond else "")
            rows = self.q(f"SELECT e.* FROM ({src}) e WHERE {where}",  # noqa: S608 - identifiers from code; values are parameters
                          params + [key] + (cond[1] if cond else []))
            return rows[0] if rows else None
        if isinstance(key, str) != ent.str_id:
            return None
        where = key_cond(ent, "e", "%s")
        params = [key] * where.count("%s")
        if cond:
            where += f" AND {cond[0]}"
            params += cond[1]
        rows = self.q(f"SELECT e.* FROM ({self.sql_of(ent)}) e WHERE {where}", params)  # noqa: S608 - identifiers from code; values are parameters
        return rows[0] if rows else None

    def restrict_for(self, parent: Entity, row: dict):
        """The Observations restriction for a Datastream or FeatureOfInterest row."""
        if parent.plural == "Datastreams":
            return split_ds([row["id"]])
        if parent.plural == "FeaturesOfInterest":
            kind, _, ident = row["id"].partition(":")
            where = {"segment": "p.segment_id = %s", "zone": "p.segment_id IS NULL AND "
                     "p.zone_id = %s"}.get(kind)
            if where is None:
                rows = self.q(f"SELECT d.id FROM ({self.sql_of(ENTITIES['Datastreams'])}) d "  # noqa: S608 - identifiers from code; values are parameters
                              "WHERE d.sensor_row = %s", [int(ident)])
            else:
                rows = self.q(f"SELECT d.id FROM ({self.sql_of(ENTITIES['Datastreams'])}) d JOIN "  # noqa: S608 - identifiers from code; values are parameters
                              f"citypulse.sensor_placement p ON p.sensor = d.sensor_row "
                              f"WHERE {where}", [ident])
            return split_ds([r["id"] for r in rows])
        raise QueryError(f"{parent.plural} have no Observations")

    def children(self, parent: Entity, nav_name: str, parent_rows: list[dict],
                 opts: Options) -> dict[object, tuple[list[dict], bool, int | None]]:
        """Expanded ``nav_name`` of each parent row: parent key -> ``(rows, more, count)``."""
        nav = parent.nav.get(nav_name)
        if nav is None:
            raise QueryError(f"{parent.singular} has no navigation property {nav_name!r}")
        target = ENTITIES[nav.target]
        keys = [r[nav.parent_col] for r in parent_rows]
        if target is OBS:
            return self._obs_children(parent, parent_rows, opts)
        out: dict = {}
        if not keys:
            return out
        params: list = [list(dict.fromkeys(keys))]
        arr = "text[]" if (target.str_id and nav.child_col == "id") or nav.parent_col == "foi" \
            else "bigint[]"
        link = link_cond(target, nav, "e", "p.k")
        grouped = self._lateral(target, self.sql_of(target), arr, link, ALL, opts, params)
        for k in keys:
            got = grouped.get(k, [])
            n = None
            if opts.count:
                cond = link_cond(target, nav, "e", "%s")
                n = self.count(target, opts, (cond, [k] * cond.count("%s")), ALL)
            out[k] = (got[:opts.limit], 0 < opts.limit < len(got), n)
        return out

    def _lateral(self, ent: Entity, src: str, arr: str, link: str, restrict, opts: Options,
                 params: list) -> dict:
        """One page per parent key (``params[0]``, an array) in one LATERAL statement."""
        c = self.compiler(ent, params=params)
        where = [link] + ([c.where(opts.filter)] if opts.filter is not None else [])
        order = self._tail(ent, opts, restrict, c)
        sql = (f"SELECT p.k AS __parent, c.* FROM unnest(%s::{arr}) p(k) CROSS JOIN LATERAL "  # noqa: S608 - identifiers from code; values are parameters
               f"(SELECT e.* FROM ({src}) e WHERE {' AND '.join(where)} "
               f"ORDER BY {', '.join(order)} LIMIT %s OFFSET %s) c")
        grouped: dict = defaultdict(list)
        for r in self.q(sql, params + [opts.limit + 1, opts.skip]):
            grouped[r.pop("__parent")].append(r)
        return grouped

    def _obs_children(self, parent: Entity, parent_rows: list[dict], opts: Options) -> dict:
        out: dict = {}
        if parent.plural != "Datastreams":
            for r in parent_rows:
                out[r["id"]] = self.collection(OBS, opts, restrict=self.restrict_for(parent, r))
            return out
        for slot, sensors in split_ds([r["id"] for r in parent_rows]).items():
            src = self.obs_sql([(slot, "r.sensor = p.k")])
            grouped = self._lateral(OBS, src, "int[]", "true", {slot: [0]}, opts, [sensors])
            for s in sensors:
                got = grouped.get(s, [])
                n = self.count(OBS, opts, None, {slot: [s]}) if opts.count else None
                out[s * 8 + slot] = (got[:opts.limit], 0 < opts.limit < len(got), n)
        return out

    def phenomenon_times(self, ds_rows: list[dict]) -> dict[int, tuple]:
        """Datastream id -> (first, last) observation time, two index probes each."""
        out: dict[int, tuple] = {}
        for slot, sensors in split_ds([r["id"] for r in ds_rows]).items():
            rows = self.q(
                f"""SELECT p.s, lo.time AS lo, hi.time AS hi FROM unnest(%s::int[]) p(s)
                LEFT JOIN LATERAL (SELECT r.time FROM citypulse.raw r WHERE r.sensor = p.s
                  AND r.v{slot} IS NOT NULL ORDER BY r.time LIMIT 1) lo ON true
                LEFT JOIN LATERAL (SELECT r.time FROM citypulse.raw r WHERE r.sensor = p.s
                  AND r.v{slot} IS NOT NULL ORDER BY r.time DESC LIMIT 1) hi ON true""",  # noqa: S608 - identifiers from code; values are parameters
                [sensors])
            for r in rows:
                out[r["s"] * 8 + slot] = (r["lo"], r["hi"])
        return out
