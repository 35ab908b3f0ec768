"""Connection pools and the helpers every repository uses. asyncpg, no ORM."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg


async def _init_connection(conn: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await conn.set_type_codec(type_name, encoder=json.dumps, decoder=json.loads,
                                  schema="pg_catalog")


async def _reset(conn: asyncpg.Connection) -> None:
    """What a connection needs before it goes back to the pool. asyncpg's default also runs
    ``pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL``, one more round trip after every
    query (10 % of a REST request's CPU in the profile); pooled connections here never hold
    session state (listeners and advisory locks use connections of their own), so only an open
    transaction is ended."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def connect(url: str, *, min_size: int = 1, max_size: int = 10) -> Database:
    pool = await asyncpg.create_pool(url, min_size=min_size, max_size=max_size, init=_init_connection,
                                     reset=_reset, command_timeout=60)
    return Database(pool)


class Database:
    """A pool with the few calls repositories need; ``transaction()`` yields a connection
    whose statements commit together."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        return await self.pool.fetch(sql, *args)

    async def fetchrow(self, sql: str, *args: Any) -> asyncpg.Record | None:
        return await self.pool.fetchrow(sql, *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.pool.fetchval(sql, *args)

    async def execute(self, sql: str, *args: Any) -> str:
        return await self.pool.execute(sql, *args)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[asyncpg.Connection]:
        async with self.pool.acquire() as conn, conn.transaction():
            yield conn

    async def close(self) -> None:
        await self.pool.close()
