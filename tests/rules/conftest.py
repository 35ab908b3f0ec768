"""A rule engine of a tenant of its own, on the test database, for testing nodes one at a time
with the engine's real services (storage, writer, scripts, alarms)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from thingsray.platform import Platform, partition_table
from thingsray.rules.engine import TenantRules
from thingsray.rules.msg import EntityId, TbMsg
from thingsray.rules.node import NODE_TYPES, NodeInit, Outputs, RuleNode
from thingsray.rules.runtime_context import EngineServices, RunContext
from thingsray.runtime.cluster import connect_router
from thingsray.storage import Database, connect
from thingsray.storage.writer import TelemetryWriter


@dataclass
class EngineHarness:
    tenant_id: uuid.UUID
    client: httpx.Client
    """The tenant's administrator over REST (create devices, assets, relations...)."""
    db: Database
    services: EngineServices
    rules: TenantRules

    def build(self, node_type: str, configuration: dict[str, Any] | None = None) -> RuleNode:
        """A node as the engine builds it; its constructor checks the configuration."""
        cls = NODE_TYPES[node_type]
        config = dict(cls.default_config if configuration is None else configuration)
        init = NodeInit(self.tenant_id, uuid.uuid4(), uuid.uuid4(), self.services.scripts.for_tenant(self.tenant_id))
        return cls(config, init)

    def context(self, msg: TbMsg) -> RunContext:
        return self.services.run_context(self.rules, msg, None)

    async def run(self, node: RuleNode, msg: TbMsg) -> Outputs:
        """Process one message; returns once what the node wrote is committed."""
        ctx = self.context(msg)
        outputs = await node.process(ctx, msg)
        await ctx.finish()
        return outputs

    def device(self, name: str | None = None, **body: Any) -> EntityId:
        created = self.client.post("/api/device", json={"name": name or f"node-test-{uuid.uuid4().hex[:8]}", **body})
        assert created.status_code == 200, created.text
        return EntityId("DEVICE", uuid.UUID(created.json()["id"]["id"]))

    def msg(self, originator: EntityId, data: Any, msg_type: str = "POST_TELEMETRY_REQUEST",
            **metadata: str) -> TbMsg:
        return TbMsg(msg_type, originator, data, dict(metadata))


@pytest.fixture
def other_tenant_id(other_tenant: httpx.Client) -> uuid.UUID:
    me = other_tenant.get("/api/auth/user")
    assert me.status_code == 200, me.text
    return uuid.UUID(me.json()["tenantId"]["id"])


@pytest.fixture
async def engine(platform: Platform, other_tenant: httpx.Client,
                 other_tenant_id: uuid.UUID) -> AsyncIterator[EngineHarness]:
    tenant_id = other_tenant_id
    assert platform.database_url is not None
    db = await connect(platform.database_url, min_size=1, max_size=4)
    # device actors live in the platform's shards: reach them as a shard reaches another
    router = connect_router(platform.settings.shards, partition_table(platform.settings))

    def send(address: Any, message: Any) -> asyncio.Future[Any]:
        return asyncio.ensure_future(router.ask(address, message))

    services = EngineServices(db, TelemetryWriter(db), shard=0, send=send)
    rules = TenantRules(tenant_id, services)
    try:
        yield EngineHarness(tenant_id, other_tenant, db, services, rules)
    finally:
        await rules.close()
        await services.close()
        await router.close()
        await db.close()
