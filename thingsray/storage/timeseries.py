"""Reads of time series and attributes, and time series deletes, straight from PostgreSQL.

Writes go through the entity's actor (``serve_app.live``); reads do not need to. Queries walk the
primary keys: ts_kv (entity_id, key, ts), ts_kv_latest (entity_id, key) and attribute_kv
(entity_id, attribute_type, attribute_key). Values come back typed (``kv.Value``), exactly one of
the five columns being set per row.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from thingsray.kv import JsonValue, Value
from thingsray.storage.attributes import AttributeScope
from thingsray.storage.database import Database
from thingsray.storage.entities import now_ms

_VALUE_COLUMNS = "{t}.bool_v, {t}.str_v, {t}.long_v, {t}.dbl_v, {t}.json_v::text AS json_v"


class Aggregation(enum.StrEnum):
    NONE = "NONE"
    MIN = "MIN"
    MAX = "MAX"
    AVG = "AVG"
    SUM = "SUM"
    COUNT = "COUNT"


@dataclass(frozen=True, slots=True)
class TsPoint:
    key: str
    ts: int
    value: Value | None
    """None only for a requested latest key that has no value (ThingsBoard answers it so)."""


@dataclass(frozen=True, slots=True)
class AttributeEntry:
    key: str
    scope: AttributeScope
    value: Value
    last_update_ts: int


@dataclass(frozen=True, slots=True)
class HistoryQuery:
    """Points of ``keys`` with ``start_ts <= ts < end_ts``. ``Aggregation.NONE``: at most ``limit``
    raw points per key, ordered by ts; otherwise one value per non-empty bucket of ``interval`` ms
    (the last one cut at ``end_ts``), stamped with the bucket's middle, in ascending order
    whatever ``descending`` says, as ThingsBoard's SQL DAO computes them."""

    keys: tuple[str, ...]
    start_ts: int
    end_ts: int
    interval: int = 0
    limit: int = 100
    agg: Aggregation = Aggregation.NONE
    descending: bool = True


def value_of(row: asyncpg.Record) -> Value | None:
    """The one set value column of a row (``json_v`` selected as text)."""
    if row["bool_v"] is not None:
        return bool(row["bool_v"])
    if row["long_v"] is not None:
        return int(row["long_v"])
    if row["dbl_v"] is not None:
        return float(row["dbl_v"])
    if row["str_v"] is not None:
        return str(row["str_v"])
    if row["json_v"] is not None:
        return JsonValue(row["json_v"])
    return None


class TimeseriesRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def keys(self, entity_id: uuid.UUID) -> list[str]:
        """Keys with a latest value, sorted."""
        rows = await self.db.fetch(
            "SELECT d.key FROM ts_kv_latest l JOIN key_dictionary d ON d.key_id = l.key "
            "WHERE l.entity_id = $1 ORDER BY d.key", entity_id)
        return [r["key"] for r in rows]

    async def latest(self, entity_id: uuid.UUID, keys: Sequence[str] | None = None) -> list[TsPoint]:
        """Latest values: all keys (sorted) when ``keys`` is None, else the keys in the order asked,
        a key without a value answered as (now, None) as ThingsBoard does."""
        sql = (f"SELECT d.key, l.ts, {_VALUE_COLUMNS.format(t='l')} FROM ts_kv_latest l "
               "JOIN key_dictionary d ON d.key_id = l.key WHERE l.entity_id = $1")
        if keys is None:
            rows = await self.db.fetch(sql + " ORDER BY d.key", entity_id)
            return [TsPoint(r["key"], r["ts"], value_of(r)) for r in rows]
        rows = await self.db.fetch(sql + " AND d.key = ANY($2::varchar[])", entity_id, list(keys))
        found = {r["key"]: TsPoint(r["key"], r["ts"], value_of(r)) for r in rows}
        now = now_ms()
        return [found.get(key) or TsPoint(key, now, None) for key in dict.fromkeys(keys)]

    async def history(self, entity_id: uuid.UUID, query: HistoryQuery) -> list[TsPoint]:
        """Points grouped by key in the order of ``query.keys``; keys without data are absent."""
        if query.agg is Aggregation.NONE:
            return await self._raw(entity_id, query)
        return await self._aggregated(entity_id, query)

    async def _raw(self, entity_id: uuid.UUID, query: HistoryQuery) -> list[TsPoint]:
        order = "DESC" if query.descending else "ASC"
        rows = await self.db.fetch(
            f"SELECT k.key, t.ts, {_VALUE_COLUMNS.format(t='t')} "
            "FROM unnest($2::varchar[]) WITH ORDINALITY AS k(key, ord) "
            "JOIN key_dictionary d ON d.key = k.key "
            "CROSS JOIN LATERAL (SELECT ts, bool_v, str_v, long_v, dbl_v, json_v FROM ts_kv "
            "  WHERE entity_id = $1 AND key = d.key_id AND ts >= $3 AND ts < $4 "
            f"  ORDER BY ts {order} LIMIT $5) t "
            f"ORDER BY k.ord, t.ts {order}",
            entity_id, list(dict.fromkeys(query.keys)), query.start_ts, query.end_ts, query.limit)
        return [TsPoint(r["key"], r["ts"], value_of(r)) for r in rows]

    async def _aggregated(self, entity_id: uuid.UUID, query: HistoryQuery) -> list[TsPoint]:
        end = max(query.start_ts + 1, query.end_ts)
        rows = await self.db.fetch(
            "SELECT k.key, (t.ts - $3) / $5 AS bucket, count(*) AS n, count(t.long_v) AS nl, "
            "count(t.dbl_v) AS nd, min(t.long_v) AS minl, max(t.long_v) AS maxl, sum(t.long_v) AS suml, "
            "min(t.dbl_v) AS mind, max(t.dbl_v) AS maxd, sum(t.dbl_v) AS sumd, "
            "min(t.str_v) AS mins, max(t.str_v) AS maxs "
            "FROM unnest($2::varchar[]) WITH ORDINALITY AS k(key, ord) "
            "JOIN key_dictionary d ON d.key = k.key "
            "JOIN ts_kv t ON t.entity_id = $1 AND t.key = d.key_id AND t.ts >= $3 AND t.ts < $4 "
            "GROUP BY k.ord, k.key, bucket ORDER BY k.ord, bucket",
            entity_id, list(dict.fromkeys(query.keys)), query.start_ts, end, query.interval)
        points: list[TsPoint] = []
        for row in rows:
            value = _aggregate(query.agg, row)
            if value is None:
                continue
            bucket_start = query.start_ts + row["bucket"] * query.interval
            bucket_end = min(bucket_start + query.interval, end)
            points.append(TsPoint(row["key"], bucket_start + (bucket_end - bucket_start) // 2, value))
        return points

    async def delete(self, entity_id: uuid.UUID, keys: Sequence[str], start_ts: int, end_ts: int, *,
                     delete_latest: bool = True, rewrite_latest: bool = False) -> None:
        """Delete points with ``start_ts <= ts < end_ts``. With ``delete_latest`` a latest value in
        that range goes too; with ``rewrite_latest`` it is replaced by the newest point before
        ``start_ts``, if any (ThingsBoard's deleteLatest / rewriteLatestIfDeleted)."""
        async with self.db.transaction() as conn:
            ids = [r["key_id"] for r in await conn.fetch(
                "SELECT key_id FROM key_dictionary WHERE key = ANY($1::varchar[])", list(keys))]
            if not ids:
                return
            await conn.execute("DELETE FROM ts_kv WHERE entity_id = $1 AND key = ANY($2::int[]) "
                               "AND ts >= $3 AND ts < $4", entity_id, ids, start_ts, end_ts)
            if not delete_latest:
                return
            removed = [r["key"] for r in await conn.fetch(
                "DELETE FROM ts_kv_latest WHERE entity_id = $1 AND key = ANY($2::int[]) AND ts >= $3 "
                "AND ts < $4 RETURNING key", entity_id, ids, start_ts, end_ts)]
            if rewrite_latest and removed:
                await conn.execute(
                    "INSERT INTO ts_kv_latest (entity_id, key, ts, bool_v, str_v, long_v, dbl_v, json_v) "
                    "SELECT DISTINCT ON (key) entity_id, key, ts, bool_v, str_v, long_v, dbl_v, json_v FROM ts_kv "
                    "WHERE entity_id = $1 AND key = ANY($2::int[]) AND ts < $3 ORDER BY key, ts DESC "
                    "ON CONFLICT (entity_id, key) DO NOTHING", entity_id, removed, start_ts)


class AttributeRepository:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def find(self, entity_id: uuid.UUID, scope: AttributeScope | None = None,
                   keys: Sequence[str] | None = None) -> list[AttributeEntry]:
        """Attributes of one scope (or of all, CLIENT, SERVER, SHARED in that order), sorted by key;
        ``keys`` None means all of them."""
        sql = (f"SELECT d.key, a.attribute_type, a.last_update_ts, {_VALUE_COLUMNS.format(t='a')} "
               "FROM attribute_kv a JOIN key_dictionary d ON d.key_id = a.attribute_key WHERE a.entity_id = $1")
        args: list[object] = [entity_id]
        if scope is not None:
            args.append(int(scope))
            sql += f" AND a.attribute_type = ${len(args)}"
        if keys is not None:
            args.append(list(keys))
            sql += f" AND d.key = ANY(${len(args)}::varchar[])"
        rows = await self.db.fetch(sql + " ORDER BY a.attribute_type, d.key", *args)
        entries = []
        for row in rows:
            value = value_of(row)
            if value is not None:
                entries.append(AttributeEntry(row["key"], AttributeScope(row["attribute_type"]), value,
                                              row["last_update_ts"]))
        return entries

    async def keys(self, entity_id: uuid.UUID, scope: AttributeScope | None = None) -> list[str]:
        """Attribute keys of one scope or of all scopes (each key once, in scope order)."""
        entries = await self.find(entity_id, scope)
        return list(dict.fromkeys(entry.key for entry in entries))


def _aggregate(agg: Aggregation, row: asyncpg.Record) -> Value | None:
    """ThingsBoard's SQL aggregation of one bucket: over numbers (MIN/MAX fall back to strings when
    there are none; COUNT counts every value); a double among the values makes the result a
    double; AVG is always a double."""
    longs, doubles = row["nl"], row["nd"]
    match agg:
        case Aggregation.COUNT:
            return int(row["n"])
        case Aggregation.MIN | Aggregation.MAX:
            pick = min if agg is Aggregation.MIN else max
            suffix = "min" if agg is Aggregation.MIN else "max"
            if longs and doubles:
                return float(pick(row[suffix + "l"], row[suffix + "d"]))
            if doubles:
                return float(row[suffix + "d"])
            if longs:
                return int(row[suffix + "l"])
            return row[suffix + "s"]  # no numbers: ThingsBoard falls back to the strings' min/max
        case Aggregation.SUM:
            if doubles:
                return float(row["sumd"]) + float(row["suml"] or 0)
            if longs:
                return int(row["suml"])
            return None
        case Aggregation.AVG:
            if longs + doubles == 0:
                return None
            return (float(row["suml"] or 0) + float(row["sumd"] or 0)) / (longs + doubles)
    return None

