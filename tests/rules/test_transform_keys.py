"""Change originator, rename keys, delete keys and to email, with the engine's real services."""

from __future__ import annotations

import uuid

import httpx
import pytest

from tests.rules import entities
from tests.rules.conftest import EngineHarness
from thingsray.rules.msg import EntityId
from thingsray.rules.node import NodeConfigError

T = "org.thingsboard.rule.engine.transform."
CHANGE = T + "TbChangeOriginatorNode"
RENAME = T + "TbRenameKeysNode"
DELETE = T + "TbDeleteKeysNode"
EMAIL = "org.thingsboard.rule.engine.mail.TbMsgToEmailNode"


# --- change originator --------------------------------------------------------------------------
async def test_originator_becomes_its_customer_or_the_tenant(engine: EngineHarness) -> None:
    client = engine.client
    cust, dev = entities.customer(client), entities.device(client)
    entities.assign(client, dev, cust)
    [(relation, out)] = await engine.run(engine.build(CHANGE), engine.msg(dev, {"t": 1}, ts="5"))
    assert relation == "Success"
    assert out.originator == cust and out.data == {"t": 1} and out.metadata == {"ts": "5"}
    [(_, out)] = await engine.run(engine.build(CHANGE, {"originatorSource": "TENANT"}), engine.msg(dev, {}))
    assert out.originator == EntityId("TENANT", engine.tenant_id)
    with pytest.raises(LookupError, match="Failed to find new originator!"):
        await engine.run(engine.build(CHANGE), engine.msg(entities.device(client), {}))


async def test_originator_becomes_a_related_entity(engine: EngineHarness, tenant: httpx.Client) -> None:
    client = engine.client
    dev, room = entities.device(client), entities.asset(client)
    entities.relate(client, room, dev)
    node = engine.build(CHANGE, {"originatorSource": "RELATED", "relationsQuery": {
        "direction": "TO", "maxLevel": 1, "filters": [{"relationType": "Contains", "entityTypes": ["ASSET"]}]}})
    [(_, out)] = await engine.run(node, engine.msg(dev, {}))
    assert out.originator == room
    lonely = entities.device(client)
    foreign = entities.asset(tenant)  # a row joining tenants (REST makes none) leads nowhere
    await engine.db.execute(
        "INSERT INTO relation (from_id, from_type, to_id, to_type, relation_type_group, relation_type, version)"
        " VALUES ($1, 'ASSET', $2, 'DEVICE', 'COMMON', 'Contains', 1)", foreign.id, lonely.id)
    with pytest.raises(LookupError, match="Failed to find new originator!"):
        await engine.run(node, engine.msg(lonely, {}))


async def test_originator_becomes_the_entity_a_name_pattern_names(engine: EngineHarness,
                                                                  tenant: httpx.Client) -> None:
    name = f"target {uuid.uuid4().hex[:8]}"
    target = entities.device(engine.client, name)
    node = engine.build(CHANGE, {"originatorSource": "ENTITY", "entityType": "DEVICE",
                                 "entityNamePattern": "${prefix} $[suffix]"})
    prefix, suffix = name.split(" ")
    [(_, out)] = await engine.run(node, engine.msg(engine.device(), {"suffix": suffix}, prefix=prefix))
    assert out.originator == target
    theirs = f"theirs {uuid.uuid4().hex[:8]}"
    entities.device(tenant, theirs)
    by_name = engine.build(CHANGE, {"originatorSource": "ENTITY", "entityType": "DEVICE", "entityNamePattern": theirs})
    with pytest.raises(LookupError, match=f"Failed to found DEVICE  entity by name: '{theirs}'!"):
        await engine.run(by_name, engine.msg(engine.device(), {}))


async def test_originator_becomes_the_alarms_originator(engine: EngineHarness) -> None:
    dev = engine.device()
    created = engine.client.post("/api/alarm", json={"originator": dev.to_json(), "type": "High temperature",
                                                      "severity": "MAJOR"})
    assert created.status_code == 200, created.text
    alarm = EntityId("ALARM", uuid.UUID(created.json()["id"]["id"]))
    node = engine.build(CHANGE, {"originatorSource": "ALARM_ORIGINATOR"})
    [(_, out)] = await engine.run(node, engine.msg(alarm, {}, "ALARM"))
    assert out.originator == dev
    with pytest.raises(ValueError, match="Unexpected original EntityType DEVICE"):
        await engine.run(node, engine.msg(dev, {}))


def test_change_originator_configuration_errors(engine: EngineHarness) -> None:
    with pytest.raises(NodeConfigError, match="Originator source should be specified"):
        engine.build(CHANGE, {"originatorSource": None})
    with pytest.raises(NodeConfigError, match="Relations query should be specified"):
        engine.build(CHANGE, {"originatorSource": "RELATED"})
    with pytest.raises(NodeConfigError, match="Name pattern should be specified"):
        engine.build(CHANGE, {"originatorSource": "ENTITY", "entityType": "DEVICE"})
    with pytest.raises(NodeConfigError, match="Unexpected entity type DASHBOARD"):
        engine.build(CHANGE, {"originatorSource": "ENTITY", "entityType": "DASHBOARD", "entityNamePattern": "x"})


# --- rename keys, delete keys -------------------------------------------------------------------
async def test_rename_keys_in_body_or_metadata(engine: EngineHarness) -> None:
    dev = engine.device()
    node = engine.build(RENAME, {"renameIn": "DATA", "renameKeysMapping": {"temp": "temperature", "x": "y"}})
    [(relation, out)] = await engine.run(node, engine.msg(dev, {"temp": 21, "hum": 40}, ts="1"))
    assert relation == "Success" and out.data == {"hum": 40, "temperature": 21} and out.metadata == {"ts": "1"}
    in_metadata = engine.build(RENAME, {"renameIn": "METADATA", "renameKeysMapping": {"deviceName": "name"}})
    [(_, out)] = await engine.run(in_metadata, engine.msg(dev, {"deviceName": 1}, deviceName="d1"))
    assert out.metadata == {"name": "d1"} and out.data == {"deviceName": 1}
    old = engine.build(RENAME, {"fromMetadata": True, "renameKeysMapping": {"a": "b"}})
    [(_, out)] = await engine.run(old, engine.msg(dev, {}, a="1"))
    assert out.metadata == {"b": "1"}
    with pytest.raises(NodeConfigError, match="At least one mapping entry should be specified!"):
        engine.build(RENAME, {"renameIn": "DATA", "renameKeysMapping": {}})
    with pytest.raises(NodeConfigError, match="RenameIn can't be null!"):
        engine.build(RENAME, {"renameKeysMapping": {"a": "b"}})


async def test_delete_keys_by_name_or_regular_expression(engine: EngineHarness) -> None:
    dev = engine.device()
    node = engine.build(DELETE, {"deleteFrom": "DATA", "keys": ["secret", "tmp_.*"]})
    [(_, out)] = await engine.run(node, engine.msg(dev, {"secret": 1, "tmp_a": 2, "tmp": 3, "my_tmp_b": 4}))
    assert out.data == {"tmp": 3, "my_tmp_b": 4}  # a pattern matches the whole key, as Java's matches()
    from_metadata = engine.build(DELETE, {"deleteFrom": "METADATA", "keys": ["ss_.*"]})
    [(_, out)] = await engine.run(from_metadata, engine.msg(dev, {"ss_a": 1}, ss_a="1", ss_b="2", keep="3"))
    assert out.metadata == {"keep": "3"} and out.data == {"ss_a": 1}
    [(_, out)] = await engine.run(node, engine.msg(dev, [1, 2]))
    assert out.data == [1, 2]
    with pytest.raises(NodeConfigError, match="not a valid regular expression"):
        engine.build(DELETE, {"deleteFrom": "DATA", "keys": ["(unclosed"]})


# --- to email -----------------------------------------------------------------------------------
async def test_to_email_fills_the_templates(engine: EngineHarness) -> None:
    dev = engine.device()
    node = engine.build(EMAIL)
    msg = engine.msg(dev, {"temperature": 42}, userEmail="ops@example.com", deviceType="thermo", deviceName="t-1")
    [(relation, out)] = await engine.run(node, msg)
    assert relation == "Success" and out.type == "SEND_EMAIL" and out.originator == dev
    assert out.data == {"from": "info@testmail.org", "to": "ops@example.com", "cc": None, "bcc": None,
                        "subject": "Device thermo temperature high", "body": "Device t-1 has high temperature 42",
                        "images": None, "html": False}
    assert out.metadata == msg.metadata


async def test_to_email_html_by_template_cc_bcc_and_images(engine: EngineHarness) -> None:
    node = engine.build(EMAIL, {"fromTemplate": "noreply@example.com", "toTemplate": "$[to]", "ccTemplate": "${cc}",
                                "bccTemplate": "audit@example.com", "subjectTemplate": "Alarm",
                                "bodyTemplate": "<b>${*}</b>", "mailBodyType": "dynamic",
                                "isHtmlTemplate": "${html}"})
    msg = engine.msg(engine.device(), {"to": "a@example.com"}, cc="b@example.com", html="TRUE",
                     images='{"logo":"data:image/png;base64,AAAA"}')
    [(_, out)] = await engine.run(node, msg)
    assert out.data["to"] == "a@example.com" and out.data["cc"] == "b@example.com"
    assert out.data["bcc"] == "audit@example.com" and out.data["html"] is True
    assert out.data["images"] == {"logo": "data:image/png;base64,AAAA"}
    assert out.data["body"].startswith('<b>{"cc":"b@example.com"')
    old = engine.build(EMAIL, {"fromTemplate": "a@b.c", "toTemplate": "d@e.f", "subjectTemplate": "s",
                               "bodyTemplate": "b", "isHtml": True})
    [(_, out)] = await engine.run(old, engine.msg(engine.device(), {}))
    assert out.data["html"] is True
    with pytest.raises(NodeConfigError, match="mailBodyType"):
        engine.build(EMAIL, {"mailBodyType": "rich"})
