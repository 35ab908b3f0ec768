"""Group commit of telemetry and attributes.

Callers hand rows to ``TelemetryWriter.write`` and wait; the writer gathers what arrives within
a few milliseconds (or up to ``max_rows``) into one transaction: time series rows, latest values
and attributes together, then answers every caller at once. A caller's return means its rows
are committed: that is what an acknowledgement waits for (DESIGN.md section 4).

Writes are idempotent, so a retried message stores nothing twice: ts_kv rows are keyed by
(entity, key, ts); latest values never move back in time; attributes keep the newest update.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from thingsray.storage.attributes import typed_columns
from thingsray.storage.database import Database

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TsRow:
    entity_id: uuid.UUID
    key: str
    ts: int
    value: Any
    """bool, int, float, str, or a JSON text wrapped by the caller (see ``storage.attributes.typed_columns``)."""


@dataclass(frozen=True, slots=True)
class AttributeRow:
    entity_id: uuid.UUID
    scope: int
    key: str
    value: Any
    ts: int


@dataclass(slots=True)
class WriteRequest:
    timeseries: list[TsRow] = field(default_factory=list)
    latest: bool = True
    """Also update ts_kv_latest (ThingsBoard's "save latest" is on by default)."""
    attributes: list[AttributeRow] = field(default_factory=list)


class TelemetryWriter:
    def __init__(self, db: Database, *, max_rows: int = 10_000, linger_s: float = 0.002) -> None:
        self.db = db
        self.max_rows = max_rows
        self.linger_s = linger_s
        self._pending: list[tuple[WriteRequest, asyncio.Future[None]]] = []
        self._pending_rows = 0
        self._task: asyncio.Task[None] | None = None
        self._keys: dict[str, int] = {}
        self.commits = 0
        self.rows_written = 0
        self.on_commit: Callable[[list[WriteRequest]], None] | None = None
        """Told every group of requests once it is committed (live updates to subscribers)."""

    async def write(self, request: WriteRequest) -> None:
        """Returns once the request's rows are committed (or raises what the commit raised)."""
        await self.submit(request)

    def submit(self, request: WriteRequest) -> asyncio.Future[None]:
        """Queue the rows; the future resolves once they are committed. Requests are committed
        in the order they were submitted."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not request.timeseries and not request.attributes:
            future.set_result(None)
            return future
        self._pending.append((request, future))
        self._pending_rows += len(request.timeseries) + len(request.attributes)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())
        return future

    async def _run(self) -> None:
        while self._pending:
            if self._pending_rows < self.max_rows and self.linger_s > 0:
                await asyncio.sleep(self.linger_s)
            batch, self._pending, self._pending_rows = self._pending, [], 0
            try:
                await self._commit([request for request, _ in batch])
            except Exception as exc:
                log.exception("committing %d write requests failed", len(batch))
                for _, future in batch:
                    if not future.done():
                        future.set_exception(exc)
                continue
            self.commits += 1
            for _, future in batch:
                if not future.done():
                    future.set_result(None)
            if self.on_commit is not None:
                try:
                    self.on_commit([request for request, _ in batch])
                except Exception:
                    log.exception("a commit listener failed; the commit itself stands")

    async def key_ids(self, conn: asyncpg.Connection, keys: Iterable[str]) -> dict[str, int]:
        missing = sorted({k for k in keys if k not in self._keys})
        if missing:
            await conn.execute(
                "INSERT INTO key_dictionary (key) SELECT unnest($1::varchar[]) ON CONFLICT DO NOTHING", missing)
            rows = await conn.fetch("SELECT key, key_id FROM key_dictionary WHERE key = ANY($1::varchar[])", missing)
            self._keys.update((r["key"], r["key_id"]) for r in rows)
        return self._keys

    async def _commit(self, requests: list[WriteRequest]) -> None:
        ts_rows = [row for r in requests for row in r.timeseries]
        latest_rows = [row for r in requests if r.latest for row in r.timeseries]
        attr_rows = [row for r in requests for row in r.attributes]
        async with self.db.pool.acquire() as conn:
            ids = await self.key_ids(conn, [r.key for r in ts_rows] + [r.key for r in attr_rows])
            async with conn.transaction():
                if ts_rows:
                    await _insert_ts(conn, ts_rows, ids)
                if latest_rows:
                    await _upsert_latest(conn, latest_rows, ids)
                if attr_rows:
                    await _upsert_attributes(conn, attr_rows, ids)
        self.rows_written += len(ts_rows) + len(attr_rows)


def _columns(rows: list[Any], ids: dict[str, int], *extra: str) -> list[list[Any]]:
    """Column arrays for ``unnest``: entity ids, key ids, the extras, then the five typed values."""
    cols: list[list[Any]] = [[r.entity_id for r in rows], [ids[r.key] for r in rows]]
    cols += [[getattr(r, name) for r in rows] for name in extra]
    typed = [typed_columns(r.value) for r in rows]
    cols += [list(c) for c in zip(*typed, strict=True)] if typed else [[], [], [], [], []]
    return cols


# JSON values travel as text and are cast in SQL: the pool's json codec would encode them a second time
_TYPED = "$4::boolean[], $5::varchar[], $6::bigint[], $7::double precision[], $8::text[]"
_SELECT_TS = "SELECT e, k, t, b, s, l, d, j::json FROM unnest($1::uuid[], $2::int[], $3::bigint[], " + _TYPED + \
    ") AS u(e, k, t, b, s, l, d, j)"


async def _insert_ts(conn: asyncpg.Connection, rows: list[TsRow], ids: dict[str, int]) -> None:
    # one row per (entity, key, ts): the last of duplicates in a batch wins, as a repeat would
    unique = list({(r.entity_id, r.key, r.ts): r for r in rows}.values())
    await conn.execute(
        f"INSERT INTO ts_kv (entity_id, key, ts, bool_v, str_v, long_v, dbl_v, json_v) {_SELECT_TS} "
        "ON CONFLICT (entity_id, key, ts) DO UPDATE SET bool_v = EXCLUDED.bool_v, str_v = EXCLUDED.str_v, "
        "long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v, json_v = EXCLUDED.json_v",
        *_columns(unique, ids, "ts"))


async def _upsert_latest(conn: asyncpg.Connection, rows: list[TsRow], ids: dict[str, int]) -> None:
    newest: dict[tuple[uuid.UUID, str], TsRow] = {}
    for row in rows:
        current = newest.get((row.entity_id, row.key))
        if current is None or row.ts >= current.ts:
            newest[(row.entity_id, row.key)] = row
    await conn.execute(
        f"INSERT INTO ts_kv_latest (entity_id, key, ts, bool_v, str_v, long_v, dbl_v, json_v) {_SELECT_TS} "
        "ON CONFLICT (entity_id, key) DO UPDATE SET ts = EXCLUDED.ts, bool_v = EXCLUDED.bool_v, "
        "str_v = EXCLUDED.str_v, long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v, json_v = EXCLUDED.json_v, "
        "version = ts_kv_latest.version + 1 WHERE ts_kv_latest.ts <= EXCLUDED.ts",
        *_columns(list(newest.values()), ids, "ts"))


async def _upsert_attributes(conn: asyncpg.Connection, rows: list[AttributeRow], ids: dict[str, int]) -> None:
    newest: dict[tuple[uuid.UUID, int, str], AttributeRow] = {}
    for row in rows:
        current = newest.get((row.entity_id, row.scope, row.key))
        if current is None or row.ts >= current.ts:
            newest[(row.entity_id, row.scope, row.key)] = row
    unique = list(newest.values())
    cols = _columns(unique, ids, "scope", "ts")
    # unnest order: entity, key, scope, ts, typed...
    await conn.execute(
        "INSERT INTO attribute_kv (entity_id, attribute_key, attribute_type, last_update_ts, bool_v, str_v, long_v,"
        " dbl_v, json_v) SELECT e, k, sc, t, b, s, l, d, j::json FROM unnest($1::uuid[], $2::int[], $3::int[],"
        " $4::bigint[], $5::boolean[], $6::varchar[], $7::bigint[], $8::double precision[], $9::text[])"
        " AS u(e, k, sc, t, b, s, l, d, j) "
        "ON CONFLICT (entity_id, attribute_type, attribute_key) DO UPDATE SET bool_v = EXCLUDED.bool_v,"
        " str_v = EXCLUDED.str_v, long_v = EXCLUDED.long_v, dbl_v = EXCLUDED.dbl_v, json_v = EXCLUDED.json_v,"
        " last_update_ts = EXCLUDED.last_update_ts, version = attribute_kv.version + 1"
        " WHERE attribute_kv.last_update_ts <= EXCLUDED.last_update_ts",
        *cols)
