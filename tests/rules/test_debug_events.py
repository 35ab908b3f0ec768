"""Debug mode: a node's messages in and out become events, readable over REST, kept for a
bounded time."""

from __future__ import annotations

import asyncio
import time
import uuid

from tests.rules.conftest import EngineHarness
from thingsray.storage.events import DEBUG_RULE_NODE, DebugEvent, EventQuery

WAIT = 20.0


async def settle(check, what: str) -> None:
    """Wait (bounded) until ``await check()`` holds; never a speed assertion."""
    deadline = time.monotonic() + WAIT
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not within {WAIT} s")
        await asyncio.sleep(0.05)


async def _events(engine: EngineHarness, node_id: uuid.UUID) -> list[dict]:
    rows, _ = await engine.services.events.query(engine.tenant_id, node_id, DEBUG_RULE_NODE,
                                                 EventQuery(page=0, page_size=100))
    return rows


async def test_a_debug_node_records_in_and_out_and_rest_reads_them(engine: EngineHarness) -> None:
    chain = engine.client.post("/api/ruleChain", json={"name": f"debug-{uuid.uuid4().hex[:6]}"}).json()
    chain_id = chain["id"]["id"]
    saved = engine.client.post("/api/ruleChain/metadata", json={
        "ruleChainId": {"entityType": "RULE_CHAIN", "id": chain_id}, "firstNodeIndex": 0,
        "nodes": [{"type": "org.thingsboard.rule.engine.filter.TbMsgTypeSwitchNode", "name": "switch",
                   "debugMode": True, "configuration": {"version": 0}}], "connections": []})
    assert saved.status_code == 200, saved.text
    node_id = uuid.UUID(saved.json()["nodes"][0]["id"]["id"])
    device = engine.device()
    await (await engine.rules.process(engine.msg(device, {"t": 1}), uuid.UUID(chain_id)))
    async def both_recorded() -> bool:  # events are written in batches, about every second
        return len(await _events(engine, node_id)) >= 2

    await settle(both_recorded, "the debug events")
    bodies = sorted((e["body"]["type"], e["body"].get("relationType")) for e in await _events(engine, node_id))
    assert bodies == [("IN", None), ("OUT", "Post telemetry")]
    answer = await asyncio.to_thread(engine.client.get, f"/api/events/RULE_NODE/{node_id}/DEBUG_RULE_NODE",
                                     params={"tenantId": str(engine.tenant_id), "pageSize": 10, "page": 0})
    assert answer.status_code == 200, answer.text
    assert answer.json()["totalElements"] == 2


async def test_old_debug_events_are_pruned_by_the_engine(engine: EngineHarness) -> None:
    node_id = uuid.uuid4()
    old = int(time.time() * 1000) - 3_600_000
    await engine.services.events.record([DebugEvent(engine.tenant_id, node_id, DEBUG_RULE_NODE, {"type": "IN"}, ts=old),
                                         DebugEvent(engine.tenant_id, node_id, DEBUG_RULE_NODE, {"type": "IN"})])
    engine.services.debug_event_ttl_s = 600
    engine.services.start_pruning(every_s=0.05)
    async def pruned() -> bool:
        return len(await _events(engine, node_id)) == 1

    await settle(pruned, "the old event's pruning")
    assert [e["ts"] > old for e in await _events(engine, node_id)] == [True]
