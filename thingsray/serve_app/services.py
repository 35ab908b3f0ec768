"""What a Serve replica (or a plain uvicorn worker) holds while it runs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from thingsray.config import Settings
from thingsray.serve_app.audit import AuditLog
from thingsray.serve_app.errors import ServiceUnavailable
from thingsray.serve_app.live import LiveData
from thingsray.serve_app.login_limits import LoginLimiter, MemoryLoginLimiter, RedisLoginLimiter
from thingsray.serve_app.security import (
    PostgresRevocations,
    RedisRevocations,
    RevocationStore,
    TokenService,
    load_signing_key,
)
from thingsray.storage import database as database_module
from thingsray.storage.credentials import CredentialStore, build_cache
from thingsray.storage.database import Database
from thingsray.storage.entities import EntityRepository, EntityTable

log = logging.getLogger(__name__)


@dataclass
class Services:
    settings: Settings
    db: Database
    tokens: TokenService
    revocations: RevocationStore
    login_limiter: LoginLimiter
    audit: AuditLog
    credentials: CredentialStore
    redis: Any = None
    live: LiveData | None = None
    """Writes of live data through the shards; None where no shards run (the app on plain uvicorn)."""

    def repo(self, table: EntityTable) -> EntityRepository:
        return EntityRepository(self.db, table)

    @classmethod
    async def start(cls, settings: Settings, database_url: str) -> Services:
        db = await database_module.connect(database_url, max_size=settings.db_pool_size)
        key = await load_signing_key(db, settings.jwt_secret)
        tokens = TokenService(key, settings.access_token_ttl, settings.refresh_token_ttl)
        redis = None
        revocations: RevocationStore
        limiter: LoginLimiter
        if settings.redis_url:
            import redis.asyncio as aioredis

            redis = aioredis.from_url(settings.redis_url)
            revocations = RedisRevocations(redis, db)
            limiter = RedisLoginLimiter(redis, settings.login_attempts_per_minute)
        else:
            revocations = PostgresRevocations(db)
            limiter = MemoryLoginLimiter(settings.login_attempts_per_minute)
        credentials = CredentialStore(db, await build_cache(redis, database_url))
        return cls(settings=settings, db=db, tokens=tokens, revocations=revocations,
                   login_limiter=limiter, audit=AuditLog(db), credentials=credentials, redis=redis,
                   live=_connect_live(settings))

    def require_live(self) -> LiveData:
        if self.live is None:
            raise ServiceUnavailable("live data needs the platform's shards, which this process cannot reach")
        return self.live

    async def close(self) -> None:
        if self.live is not None:
            await self.live.router.close()
        await self.credentials.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.db.close()


def _connect_live(settings: Settings) -> LiveData | None:
    """A router to the shards, when this process runs inside the platform's Ray."""
    import ray

    if not ray.is_initialized():
        return None
    from thingsray.platform import partition_table
    from thingsray.runtime.cluster import connect_router

    try:
        router = connect_router(settings.shards, partition_table(settings))
    except ValueError:
        log.warning("no shards are running: live data (telemetry writes, RPC) is unavailable here")
        return None
    return LiveData(router)
