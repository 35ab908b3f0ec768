"""Migrations and time-series partitions on a fresh database of the session's PostgreSQL server
(the service in THINGSRAY_TEST_DATABASE_URL, else the embedded one): each test gets its own
throwaway database, created and dropped here."""

from __future__ import annotations

import asyncio
import calendar
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from thingsray.storage.migrations import available, ensure_ts_partitions, migrate


def _with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


@pytest.fixture
async def fresh_database(database_url: str) -> AsyncIterator[str]:
    name = f"thingsray_migrations_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(_with_database(database_url, "postgres"))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
        try:
            yield _with_database(database_url, name)
        finally:
            await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


@pytest.fixture
async def conn(fresh_database: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(fresh_database)
    try:
        yield connection
    finally:
        await connection.close()


def month_ms(year: int, month: int) -> int:
    return calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0)) * 1000


async def partitions(conn: asyncpg.Connection) -> dict[str, str]:
    """Partition name -> its bounds, as PostgreSQL reports them."""
    rows = await conn.fetch(
        "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) AS bound FROM pg_inherits i"
        " JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'ts_kv'::regclass")
    return {r["relname"]: r["bound"] for r in rows}


async def test_migrate_applies_every_migration_once_then_nothing(conn):
    first = await migrate(conn)
    assert [m.version for m in first] == [m.version for m in available()]
    assert await migrate(conn) == []
    rows = await conn.fetch("SELECT version, name FROM schema_version ORDER BY version")
    assert [(r["version"], r["name"]) for r in rows] == [(m.version, m.name) for m in available()]
    assert await conn.fetchval("SELECT to_regclass('device') IS NOT NULL AND to_regclass('ts_kv') IS NOT NULL")


async def test_four_concurrent_migrations_apply_each_file_exactly_once(fresh_database):
    connections = [await asyncpg.connect(fresh_database) for _ in range(4)]
    try:
        results = await asyncio.gather(*(migrate(c) for c in connections))
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    applied = sorted(m.version for result in results for m in result)
    assert applied == [m.version for m in available()]
    check = await asyncpg.connect(fresh_database)
    try:
        versions = [r["version"] for r in await check.fetch("SELECT version FROM schema_version ORDER BY version")]
        assert versions == [m.version for m in available()]
        assert await check.fetchval("SELECT count(*) FROM tenant") == 0  # the schema is usable
    finally:
        await check.close()


async def test_ts_partitions_are_monthly_from_now_and_creating_them_again_changes_nothing(conn):
    await migrate(conn)
    now = month_ms(2031, 11) + 12 * 86_400_000  # mid-November: the run crosses a year
    await ensure_ts_partitions(conn, now, months_ahead=2)
    created = await partitions(conn)
    assert created == {
        "ts_kv_default": "DEFAULT",
        "ts_kv_2031_11": f"FOR VALUES FROM ('{month_ms(2031, 11)}') TO ('{month_ms(2031, 12)}')",
        "ts_kv_2031_12": f"FOR VALUES FROM ('{month_ms(2031, 12)}') TO ('{month_ms(2032, 1)}')",
        "ts_kv_2032_01": f"FOR VALUES FROM ('{month_ms(2032, 1)}') TO ('{month_ms(2032, 2)}')",
    }
    await ensure_ts_partitions(conn, now, months_ahead=2)
    assert await partitions(conn) == created


async def test_rows_in_the_default_partition_move_into_a_new_partition_of_their_month(conn):
    await migrate(conn)
    entity = uuid.uuid4()
    inside, outside = month_ms(2033, 5) + 1_000, month_ms(2033, 7) + 1_000
    await conn.executemany("INSERT INTO ts_kv (entity_id, key, ts, long_v) VALUES ($1, 1, $2, $3)",
                           [(entity, inside, 1), (entity, inside + 1, 2), (entity, outside, 3)])
    assert await conn.fetchval("SELECT count(*) FROM ts_kv_default") == 3

    await ensure_ts_partitions(conn, month_ms(2033, 5), months_ahead=0)

    assert "ts_kv_2033_05" in await partitions(conn)
    moved = await conn.fetch("SELECT ts, long_v FROM ts_kv_2033_05 ORDER BY ts")
    assert [(r["ts"], r["long_v"]) for r in moved] == [(inside, 1), (inside + 1, 2)]
    assert [r["ts"] for r in await conn.fetch("SELECT ts FROM ts_kv_default")] == [outside]
    assert await conn.fetchval("SELECT count(*) FROM ts_kv WHERE entity_id = $1", entity) == 3
    # the moved partition keeps the table's primary key: a duplicate is refused, an upsert works
    with pytest.raises(asyncpg.UniqueViolationError):
        await conn.execute("INSERT INTO ts_kv (entity_id, key, ts, long_v) VALUES ($1, 1, $2, 9)", entity, inside)
    await conn.execute("INSERT INTO ts_kv (entity_id, key, ts, long_v) VALUES ($1, 1, $2, 9)"
                       " ON CONFLICT (entity_id, key, ts) DO UPDATE SET long_v = excluded.long_v", entity, inside)
    assert await conn.fetchval("SELECT long_v FROM ts_kv_2033_05 WHERE ts = $1", inside) == 9


async def test_concurrent_partition_creation_agrees(fresh_database):
    setup = await asyncpg.connect(fresh_database)
    try:
        await migrate(setup)
        await setup.execute("INSERT INTO ts_kv (entity_id, key, ts, long_v) VALUES ($1, 1, $2, 1)",
                            uuid.uuid4(), month_ms(2034, 3) + 5)
    finally:
        await setup.close()
    connections = [await asyncpg.connect(fresh_database) for _ in range(4)]
    try:
        await asyncio.gather(*(ensure_ts_partitions(c, month_ms(2034, 3), months_ahead=1) for c in connections))
        assert set(await partitions(connections[0])) == {"ts_kv_default", "ts_kv_2034_03", "ts_kv_2034_04"}
        assert await connections[0].fetchval("SELECT count(*) FROM ts_kv_2034_03") == 1
    finally:
        await asyncio.gather(*(c.close() for c in connections))
