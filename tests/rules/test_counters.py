"""Message count and generator: nodes that keep time with messages they schedule for themselves."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import unique
from tests.rules.conftest import EngineHarness
from thingsray.rules.node import NodeConfigError

P = "org.thingsboard.rule.engine."
WAIT = 20.0  # a bound on waiting for what should happen within a few ticks; never a speed assertion


def save_chain(client: httpx.Client, nodes: list[dict[str, Any]], connections: list[dict[str, Any]]) -> uuid.UUID:
    """A chain that is not root: only what names it runs it."""
    chain = client.post("/api/ruleChain", json={"name": unique("timed chain"), "type": "CORE"})
    assert chain.status_code == 200, chain.text
    chain_id = chain.json()["id"]["id"]
    saved = client.post("/api/ruleChain/metadata", json={
        "ruleChainId": {"entityType": "RULE_CHAIN", "id": chain_id}, "firstNodeIndex": 0,
        "nodes": nodes, "connections": connections})
    assert saved.status_code == 200, saved.text
    return uuid.UUID(chain_id)


async def test_message_count_reports_what_it_counted(engine: EngineHarness) -> None:
    chain_id = save_chain(engine.client, [
        {"type": P + "action.TbMsgCountNode", "name": "count", "configuration": {"interval": 1,
                                                                               "telemetryPrefix": "seen"}},
        {"type": P + "telemetry.TbMsgTimeseriesNode", "name": "save", "configuration": {}}],
        [{"fromIndex": 0, "toIndex": 1, "type": "Success"}])
    await engine.rules.chain(chain_id)  # building the chain starts the node's ticks
    device = engine.device()
    for n in range(3):
        await (await engine.rules.process(engine.msg(device, {"n": n}), chain_id))

    async def counted() -> list[int]:
        rows = await engine.db.fetch(
            "SELECT t.long_v FROM ts_kv t JOIN key_dictionary d ON d.key_id = t.key"
            " WHERE t.entity_id = $1 AND d.key = 'seen_shard-0' ORDER BY t.ts", engine.tenant_id)
        return [r["long_v"] for r in rows]

    deadline = time.monotonic() + WAIT
    while sum(await counted()) < 3:  # reported on the tenant, by tick
        assert time.monotonic() < deadline, f"the count was not reported within {WAIT} s: {await counted()}"
        await asyncio.sleep(0.1)
    assert sum(await counted()) == 3  # every message counted once


def test_the_generator_runs_on_the_shard_owning_its_originator(other_tenant: httpx.Client) -> None:
    device = other_tenant.post("/api/device", json={"name": unique("generated")})
    assert device.status_code == 200, device.text
    device_id = device.json()["id"]["id"]
    script = ("var n = 1; if (prevMsg.n != null) { n = prevMsg.n + 1; }\n"
              "return {msg: {n: n}, metadata: {source: 'generator'}, msgType: 'POST_TELEMETRY_REQUEST'};")
    save_chain(other_tenant, [
        {"type": P + "debug.TbMsgGeneratorNode", "name": "generate", "configuration": {
            "msgCount": 3, "periodInSeconds": 1, "originatorType": "DEVICE", "originatorId": device_id,
            "scriptLang": "TBEL", "tbelScript": script}},
        {"type": P + "telemetry.TbMsgTimeseriesNode", "name": "save", "configuration": {}}],
        [{"fromIndex": 0, "toIndex": 1, "type": "Success"}])  # not root: the generator needs no message

    def values() -> list[str]:
        answer = other_tenant.get(f"/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries", params={
            "keys": "n", "startTs": 0, "endTs": int(time.time() * 1000) + 60_000, "limit": 100})
        assert answer.status_code == 200, answer.text
        return [v["value"] for v in reversed(answer.json().get("n", []))]

    deadline = time.monotonic() + WAIT
    while len(values()) < 3:
        assert time.monotonic() < deadline, f"3 generated messages not stored within {WAIT} s: {values()}"
        time.sleep(0.2)
    # each message saw the one before it; one shard generated (two would have stored 1, 1, 2, ...)
    assert values() == ["1", "2", "3"]


def test_generator_configurations(engine: EngineHarness) -> None:
    node = engine.build(P + "debug.TbMsgGeneratorNode")  # ThingsBoard's defaults: the node is the originator
    assert node.originator.entity_type == "RULE_NODE" and node.originator.id == node.init.node_id
    tenant = engine.build(P + "debug.TbMsgGeneratorNode", {**node.default_config, "originatorType": "TENANT"})
    assert tenant.originator.id == engine.tenant_id
    with pytest.raises(NodeConfigError, match=r"Originator type 'ALARM' is not supported\."):
        engine.build(P + "debug.TbMsgGeneratorNode", {**node.default_config, "originatorType": "ALARM"})
    with pytest.raises(NodeConfigError, match=r"Originator entity must be selected\."):
        engine.build(P + "debug.TbMsgGeneratorNode", {**node.default_config, "originatorType": "DEVICE"})
    with pytest.raises(NodeConfigError, match="periodInSeconds"):
        engine.build(P + "debug.TbMsgGeneratorNode", {**node.default_config, "periodInSeconds": 0})
    with pytest.raises(NodeConfigError, match="tbelScript"):
        engine.build(P + "debug.TbMsgGeneratorNode", {**node.default_config, "tbelScript": "return (;"})
    with pytest.raises(NodeConfigError, match="interval"):
        engine.build(P + "action.TbMsgCountNode", {"interval": 0, "telemetryPrefix": "x"})
