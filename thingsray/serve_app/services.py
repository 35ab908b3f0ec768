"""What a Serve replica (or a plain uvicorn worker) holds while it runs."""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from thingsray.config import Settings
from thingsray.live.replica import LiveSubscriptions
from thingsray.rules.msg import EntityId, MsgType, TbMsg
from thingsray.runtime import ActorError
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
from thingsray.storage.alarms import AlarmChange
from thingsray.storage.credentials import CredentialStore, build_cache
from thingsray.storage.database import Database
from thingsray.storage.entities import NULL_UUID, EntityRepository, EntityTable

log = logging.getLogger(__name__)

ALARM_ACTIONS = {MsgType.ALARM_CREATED: MsgType.ENTITY_CREATED, MsgType.ALARM_UPDATED: MsgType.ENTITY_UPDATED,
                 MsgType.ALARM_SEVERITY_UPDATED: MsgType.ENTITY_UPDATED}
"""The message ThingsBoard sends for an alarm saved over REST (its ADDED / UPDATED entity action)."""


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
    subscriptions: LiveSubscriptions | None = None
    """Live updates of entities for this replica's WebSockets; None where no shards run."""

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
                   **_connect_live(settings))

    async def alarm_changed(self, change: AlarmChange) -> None:
        """Hand an alarm's change over REST to the rule engine, as ThingsBoard's entity action
        service does: a message about the alarm's originator with the alarm as its body, of the
        change's type (ALARM_ACK, ALARM_CLEAR, ALARM_DELETE, ALARM_ASSIGNED, ALARM_UNASSIGNED; a
        created or updated alarm is ENTITY_CREATED / ENTITY_UPDATED), started where the
        originator's messages start, on the shard that owns it. Returns once that shard has it."""
        if change.msg_type is None:
            return
        alarm = change.alarm
        if self.live is None:
            log.debug("alarm %s %s: no shards here to run the rule engine", alarm["id"]["id"], change.msg_type)
            return
        msg_type = ALARM_ACTIONS.get(change.msg_type, change.msg_type)
        customer = (alarm.get("customerId") or {}).get("id")
        metadata = {"customerId": customer} if customer and customer != str(NULL_UUID) else {}
        msg = TbMsg(msg_type, EntityId.parse(alarm["originator"]), alarm, metadata,
                    customer_id=uuid.UUID(customer) if metadata else None)
        try:
            await self.live.rule_engine(uuid.UUID(alarm["tenantId"]["id"]), msg)
        except ActorError as exc:  # the change itself is done; only its rule engine message is lost
            log.warning("alarm %s %s did not reach the rule engine: %s", alarm["id"]["id"], msg_type, exc)

    def require_live(self) -> LiveData:
        if self.live is None:
            raise ServiceUnavailable("live data needs the platform's shards, which this process cannot reach")
        return self.live

    def require_subscriptions(self) -> LiveSubscriptions:
        if self.subscriptions is None:
            raise ServiceUnavailable("live updates need the platform's shards, which this process cannot reach")
        return self.subscriptions

    async def close(self) -> None:
        if self.subscriptions is not None:
            await self.subscriptions.close()
        if self.live is not None:
            await self.live.router.close()
        await self.credentials.close()
        if self.redis is not None:
            await self.redis.aclose()
        await self.db.close()


def _connect_live(settings: Settings) -> dict[str, Any]:
    """A router to the shards and live subscriptions, when this process runs inside the platform's Ray."""
    import ray

    if not ray.is_initialized():
        return {}
    from thingsray.platform import partition_table
    from thingsray.runtime.cluster import SHARD_PREFIX, connect_router, shard_name

    try:
        router = connect_router(settings.shards, partition_table(settings))
        shards = [ray.get_actor(shard_name(SHARD_PREFIX, i)) for i in range(settings.shards)]
    except ValueError:
        log.warning("no shards are running: live data (telemetry writes, RPC, live updates) is unavailable here")
        return {}
    return {"live": LiveData(router), "subscriptions": LiveSubscriptions(router, shards)}
