"""Numbered SQL migrations, applied in order at start-up and recorded in ``schema_version``.

Safe to run twice and from several processes at once: the whole run holds a PostgreSQL
advisory lock, and each file is applied in its own transaction with its version row.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from importlib import resources

import asyncpg

log = logging.getLogger(__name__)

MIGRATION_LOCK_ID = 0x7468_696E_6773  # "things": any constant shared by every thingsray process
_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def available() -> list[Migration]:
    found = []
    for entry in resources.files("thingsray.storage").joinpath("migrations").iterdir():
        match = _NAME.match(entry.name)
        if match:
            found.append(Migration(int(match[1]), match[2], entry.read_text(encoding="utf-8")))
    found.sort(key=lambda m: m.version)
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise RuntimeError(f"two migrations share a number: {versions}")
    return found


async def migrate(conn: asyncpg.Connection) -> list[Migration]:
    """Apply what is missing; return what was applied now."""
    applied_now: list[Migration] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
    try:
        await conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version integer PRIMARY KEY, name varchar(255) NOT NULL, applied_at bigint NOT NULL)")
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_version")}
        for migration in available():
            if migration.version in done:
                continue
            log.info("applying migration %04d_%s", migration.version, migration.name)
            async with conn.transaction():
                await conn.execute(migration.sql)
                await conn.execute(
                    "INSERT INTO schema_version (version, name, applied_at) VALUES ($1, $2, $3)",
                    migration.version, migration.name, int(time.time() * 1000))
            applied_now.append(migration)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
    return applied_now


async def ensure_ts_partitions(conn: asyncpg.Connection, now_ms: int, months_ahead: int = 2) -> None:
    """Create the monthly ts_kv partitions from this month to ``months_ahead`` ahead."""
    year, month = time.gmtime(now_ms / 1000)[:2]
    for _ in range(months_ahead + 1):
        next_year, next_month = (year + 1, 1) if month == 12 else (year, month + 1)
        start = _epoch_ms(year, month)
        end = _epoch_ms(next_year, next_month)
        name = f"ts_kv_{year:04d}_{month:02d}"
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_ID)
        try:
            exists = await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", name)
            if not exists:
                moved = await conn.fetchval(
                    "SELECT count(*) FROM ts_kv_default WHERE ts >= $1 AND ts < $2", start, end)
                if moved:
                    # rows in the default partition for this range would block the new partition
                    async with conn.transaction():
                        await conn.execute(
                            f"CREATE TABLE {name} (LIKE ts_kv INCLUDING DEFAULTS INCLUDING CONSTRAINTS)")
                        await conn.execute(
                            f"INSERT INTO {name} SELECT * FROM ts_kv_default WHERE ts >= $1 AND ts < $2",
                            start, end)
                        await conn.execute("DELETE FROM ts_kv_default WHERE ts >= $1 AND ts < $2", start, end)
                        await conn.execute(
                            f"ALTER TABLE ts_kv ATTACH PARTITION {name} FOR VALUES FROM ({start}) TO ({end})")
                else:
                    await conn.execute(
                        f"CREATE TABLE {name} PARTITION OF ts_kv FOR VALUES FROM ({start}) TO ({end})")
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_ID)
        year, month = next_year, next_month


def _epoch_ms(year: int, month: int) -> int:
    import calendar
    return calendar.timegm((year, month, 1, 0, 0, 0, 0, 0, 0)) * 1000
