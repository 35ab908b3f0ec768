"""Rule chains and debug events in PostgreSQL: atomic metadata saves the shards hear about, one
root per tenant, the default root chain for every tenant, and debug events that stay bounded."""

from __future__ import annotations

import asyncio
import json
import uuid

import asyncpg
import pytest

from thingsray.rules.model import OUTPUT_NODE, parse_metadata
from thingsray.storage import connect
from thingsray.storage.entities import now_ms
from thingsray.storage.events import DEBUG_RULE_NODE, DebugEvent, EventQuery, EventStore
from thingsray.storage.rule_chains import (
    CHANNEL,
    RuleChainStore,
    create_chain,
    ensure_root_rule_chain,
    ensure_root_rule_chains,
)


@pytest.fixture
async def db(platform):
    database = await connect(platform.database_url, max_size=4)
    yield database
    await database.close()


async def new_tenant(db) -> uuid.UUID:
    tenant_id = uuid.uuid4()
    await db.execute("INSERT INTO tenant (id, created_time, title) VALUES ($1, $2, $3)", tenant_id, now_ms(),
                     f"store test {tenant_id}")
    return tenant_id


def outputs(*names: str, first: int | None = 0):
    return parse_metadata({"firstNodeIndex": first, "nodes": [{"type": OUTPUT_NODE, "name": n} for n in names]})


async def test_the_default_root_chain_is_made_once_per_tenant(db):
    tenant_id, racing = await new_tenant(db), await new_tenant(db)
    async with db.pool.acquire() as conn:
        assert await ensure_root_rule_chains(conn) >= 2  # these tenants were made without one
        root = await RuleChainStore(db).root_chain_id(tenant_id)
        assert root is not None
        assert await ensure_root_rule_chain(conn, tenant_id) == root
    await db.execute("DELETE FROM rule_chain WHERE tenant_id = $1", racing)

    async def ensure() -> uuid.UUID:
        async with db.pool.acquire() as conn:
            return await ensure_root_rule_chain(conn, racing)

    assert len(set(await asyncio.gather(ensure(), ensure(), ensure()))) == 1  # several processes starting at once
    for tenant in (tenant_id, racing):
        assert await db.fetchval("SELECT count(*) FROM rule_chain WHERE tenant_id = $1", tenant) == 1
    meta = await RuleChainStore(db).load(root)
    assert meta.first_node.name == "Message Type Switch" and len(meta.connections) == 5


async def test_a_save_replaces_the_nodes_at_once_and_tells_the_shards(db, platform):
    tenant_id = await new_tenant(db)
    store = RuleChainStore(db)
    async with db.transaction() as conn:
        chain_id = await create_chain(conn, tenant_id, {"name": "notified"}, outputs("a", "b"))
    heard: asyncio.Queue[str] = asyncio.Queue()
    listener = await asyncpg.connect(platform.database_url)
    try:
        await listener.add_listener(CHANNEL, lambda *args: heard.put_nowait(args[3]))
        before = await store.load(chain_id)
        kept = before.nodes[1]
        meta = parse_metadata({"firstNodeIndex": 1, "nodes": [
            {"type": OUTPUT_NODE, "name": "new"}, {"type": OUTPUT_NODE, "name": "b2", "id": str(kept.id)}]})
        version = await store.save(chain_id, meta.with_ids({kept.id}), expected_version=before.version)
        payload = json.loads(await asyncio.wait_for(heard.get(), 60))
        assert payload == {"tenantId": str(tenant_id), "ruleChainId": str(chain_id), "event": "UPDATED"}
    finally:
        await listener.close()
    after = await store.load(chain_id)
    assert after.version == version == before.version + 1
    assert [n.name for n in after.nodes] == ["new", "b2"] and after.nodes[1].id == kept.id
    assert after.first_node.id == kept.id
    assert await db.fetchval("SELECT count(*) FROM rule_node WHERE id = $1", before.nodes[0].id) == 0


async def test_one_root_per_tenant(db):
    tenant_id = await new_tenant(db)
    store = RuleChainStore(db)
    async with db.pool.acquire() as conn:
        first = await ensure_root_rule_chain(conn, tenant_id)
        async with conn.transaction():
            chains = [await create_chain(conn, tenant_id, {"name": f"c{i}"}, outputs("x")) for i in range(4)]
    await asyncio.gather(*(store.set_root(tenant_id, c) for c in chains))
    roots = await db.fetch("SELECT id FROM rule_chain WHERE tenant_id = $1 AND root", tenant_id)
    assert len(roots) == 1 and roots[0]["id"] in chains
    assert await store.set_root(tenant_id, first) == roots[0]["id"]
    with pytest.raises(asyncpg.UniqueViolationError):
        await db.execute("UPDATE rule_chain SET root = true WHERE id = $1", chains[0])


async def test_debug_events_are_bounded_by_age_and_count(db):
    tenant_id = await new_tenant(db)
    events = EventStore(db)
    old, busy, quiet = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = now_ms()
    await events.record([DebugEvent(tenant_id, old, DEBUG_RULE_NODE, {"type": "IN"}, ts=now - 3_600_000)])
    await events.record([DebugEvent(tenant_id, busy, DEBUG_RULE_NODE, {"type": "IN", "n": i}, ts=now - i)
                         for i in range(30)])
    await events.record([DebugEvent(tenant_id, quiet, DEBUG_RULE_NODE, {"type": "OUT"}, ts=now)])
    deleted = await events.prune(ttl_s=60, max_per_entity=10, now=now)
    assert deleted >= 21
    counts = {e: (await events.query(tenant_id, e, DEBUG_RULE_NODE, EventQuery(0, 100)))[1] for e in (old, busy, quiet)}
    assert counts == {old: 0, busy: 10, quiet: 1}
    rows, _ = await events.query(tenant_id, busy, DEBUG_RULE_NODE, EventQuery(0, 100))
    assert [r["body"]["n"] for r in rows] == list(range(10))  # the newest ten


async def test_deleting_a_chain_takes_its_nodes_and_events(db):
    tenant_id = await new_tenant(db)
    store, events = RuleChainStore(db), EventStore(db)
    async with db.transaction() as conn:
        chain_id = await create_chain(conn, tenant_id, {"name": "doomed"}, outputs("a"))
    node_id = (await store.load(chain_id)).nodes[0].id
    await events.record([DebugEvent(tenant_id, node_id, DEBUG_RULE_NODE, {"type": "IN"})])
    assert await store.delete(tenant_id, chain_id) is True
    assert await store.load(chain_id) is None
    assert await db.fetchval("SELECT count(*) FROM rule_node WHERE rule_chain_id = $1", chain_id) == 0
    assert await db.fetchval("SELECT count(*) FROM event WHERE entity_id = $1", node_id) == 0
    assert await store.delete(tenant_id, chain_id) is False
