"""Check relation presence over relations made with the REST API."""

from __future__ import annotations

import httpx
import pytest

from tests.rules import entities
from tests.rules.conftest import EngineHarness
from thingsray.rules.node import NodeConfigError

CHECK = "org.thingsboard.rule.engine.filter.TbCheckRelationNode"


async def test_relation_to_or_from_a_given_entity(engine: EngineHarness) -> None:
    client = engine.client
    dev, room, other = entities.device(client), entities.asset(client), entities.asset(client)
    entities.relate(client, room, dev)  # the room contains the device
    to_room = engine.build(CHECK, {"checkForSingleEntity": True, "direction": "TO", "entityType": "ASSET",
                                   "entityId": str(room.id), "relationType": "Contains"})
    from_room = engine.build(CHECK, {"checkForSingleEntity": True, "direction": "FROM", "entityType": "ASSET",
                                     "entityId": str(room.id), "relationType": "Contains"})
    msg = engine.msg(dev, {"t": 1})
    assert await engine.run(to_room, msg) == [("True", msg)]
    assert await engine.run(from_room, msg) == [("False", msg)]
    manages = engine.build(CHECK, {"checkForSingleEntity": True, "direction": "TO", "entityType": "ASSET",
                                   "entityId": str(room.id), "relationType": "Manages"})
    assert [r for r, _ in await engine.run(manages, msg)] == ["False"]
    other_room = engine.build(CHECK, {"checkForSingleEntity": True, "direction": "TO", "entityType": "ASSET",
                                      "entityId": str(other.id), "relationType": "Contains"})
    assert [r for r, _ in await engine.run(other_room, msg)] == ["False"]


async def test_relation_to_or_from_any_entity(engine: EngineHarness) -> None:
    client = engine.client
    dev, room = entities.device(client), entities.asset(client)
    entities.relate(client, room, dev)
    any_to = engine.build(CHECK, {"checkForSingleEntity": False, "direction": "TO", "relationType": "Contains"})
    any_from = engine.build(CHECK, {"checkForSingleEntity": False, "direction": "FROM", "relationType": "Contains"})
    assert [r for r, _ in await engine.run(any_to, engine.msg(dev, {}))] == ["True"]
    assert [r for r, _ in await engine.run(any_from, engine.msg(dev, {}))] == ["False"]
    assert [r for r, _ in await engine.run(any_from, engine.msg(room, {}))] == ["True"]
    assert [r for r, _ in await engine.run(any_to, engine.msg(entities.device(client), {}))] == ["False"]


async def test_an_entity_of_another_tenant_is_refused(engine: EngineHarness, tenant: httpx.Client) -> None:
    theirs = entities.asset(tenant)
    node = engine.build(CHECK, {"checkForSingleEntity": True, "direction": "TO", "entityType": "ASSET",
                                "entityId": str(theirs.id), "relationType": "Contains"})
    with pytest.raises(ValueError, match="doesn't belong to the current tenant"):
        await engine.run(node, engine.msg(engine.device(), {}))


def test_check_relation_configuration_errors(engine: EngineHarness) -> None:
    with pytest.raises(NodeConfigError, match="Entity should be specified!"):
        engine.build(CHECK)
    with pytest.raises(NodeConfigError, match="entityId"):
        engine.build(CHECK, {"checkForSingleEntity": True, "entityType": "ASSET", "entityId": "nope"})
    with pytest.raises(NodeConfigError, match="direction"):
        engine.build(CHECK, {"checkForSingleEntity": False, "direction": "SIDEWAYS"})
