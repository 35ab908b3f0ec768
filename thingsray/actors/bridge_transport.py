"""The Ray actor hosting the configured broker bridges, once per cluster."""

from __future__ import annotations

import logging
import os
from typing import Any

from thingsray.actors.env import LogTarget, log_to
from thingsray.actors.transport_service import PlatformTransportService, connect_credentials
from thingsray.runtime import PartitionTable
from thingsray.runtime.cluster import connect_router
from thingsray.storage import Database
from thingsray.storage.credentials import CredentialStore
from thingsray.transports.bridge import BridgeConfig, BridgeConfigError, MqttBridge

log = logging.getLogger(__name__)

BRIDGE_TRANSPORT_NAME = "thingsray-bridge"


async def resolve_tenants(db: Database, bridges: list[BridgeConfig]) -> list[BridgeConfig]:
    """Each bridge with its tenant's id; ``BridgeConfigError`` for a tenant that does not exist."""
    resolved = []
    for bridge in bridges:
        if bridge.tenant_id is not None:
            found = await db.fetchval("SELECT id FROM tenant WHERE id = $1", bridge.tenant_id)
            if found is None:
                raise BridgeConfigError(f"{bridge.where}.tenantId: no tenant has the id {bridge.tenant_id}")
            resolved.append(bridge)
            continue
        rows = await db.fetch("SELECT id FROM tenant WHERE title = $1", bridge.tenant_title)
        if len(rows) != 1:
            problem = "no tenant has" if not rows else f"{len(rows)} tenants have"
            raise BridgeConfigError(f"{bridge.where}.tenant: {problem} the title {bridge.tenant_title!r}"
                                    + ("" if not rows else ": name it by \"tenantId\" instead"))
        resolved.append(bridge.with_tenant(rows[0]["id"]))
    return resolved


class BridgeTransportActor:
    """``start()`` resolves the tenants and connects every bridge (once; later calls answer the
    same); the bridges then reconnect on their own."""

    def __init__(self, name: str, bridges: list[BridgeConfig], database_url: str, shards: int,
                 table: PartitionTable, redis_url: str | None = None, log_target: LogTarget | None = None) -> None:
        log_to(log_target)
        self.name = name
        self.configs = bridges
        self.database_url = database_url
        self.shards = shards
        self.table = table
        self.redis_url = redis_url
        self.bridges: list[MqttBridge] = []
        self.db: Database | None = None
        self.credentials: CredentialStore | None = None

    async def start(self) -> int:
        """The number of bridges running."""
        if self.db is not None:
            return len(self.bridges)
        self.db, self.credentials = await connect_credentials(self.database_url, self.redis_url)
        try:
            configs = await resolve_tenants(self.db, self.configs)
        except BaseException:
            await self.credentials.close()
            await self.db.close()
            self.db = self.credentials = None
            raise
        service = PlatformTransportService(self.name, connect_router(self.shards, self.table), self.credentials,
                                           self.db)
        for config in configs:
            bridge = MqttBridge(config, service)
            await bridge.start()
            self.bridges.append(bridge)
            log.info("bridge %s: subscribing to %s:%s for tenant %s", config.name, config.broker.host,
                     config.broker.port, config.tenant_id)
        return len(self.bridges)

    def pid(self) -> int:
        return os.getpid()

    async def stats(self) -> dict[str, Any]:
        return {"transport": self.name, "bridges": [bridge.stats() for bridge in self.bridges]}

    async def stop(self) -> None:
        for bridge in self.bridges:
            await bridge.stop()
        self.bridges = []
        if self.credentials is not None:
            await self.credentials.close()
            self.credentials = None
        if self.db is not None:
            await self.db.close()
            self.db = None
