"""The device profile node: alarm rules of a device's profile raised, updated and cleared, end to
end over MQTT through ThingsBoard's pre-4.3 root chain, and node by node with the engine's real
services (relations, dynamic values, state kept in ``rule_node_state``)."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import assert_tb_error, unique
from tests.rules.conftest import EngineHarness
from tests.rules.test_engine_e2e import WAIT, eventually, mqtt, publish, series
from thingsray.rules.engine import TenantRules
from thingsray.rules.msg import EntityId, TbMsg
from thingsray.rules.node import NODE_TYPES, NodeInit, RuleNode

DATA = Path(__file__).parent / "data"
PROFILE_NODE = "org.thingsboard.rule.engine.profile.TbDeviceProfileNode"


# --- helpers ------------------------------------------------------------------------------------------
def key_filter(key: str, operation: str, value: Any, dynamic: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"key": {"type": "TIME_SERIES", "key": key}, "valueType": "NUMERIC",
            "predicate": {"type": "NUMERIC", "operation": operation,
                          "value": {"defaultValue": value, "userValue": None, "dynamicValue": dynamic}}}


def rule(*filters: dict[str, Any], spec: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    return {"condition": {"condition": list(filters), "spec": spec or {"type": "SIMPLE"}}, "schedule": None,
            "alarmDetails": None, "dashboardId": None, **extra}


def temperature_alarm(create: dict[str, Any], clear: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"id": str(uuid.uuid4()), "alarmType": "High Temperature", "createRules": create, "clearRule": clear,
            "propagate": False, "propagateToOwner": False, "propagateToTenant": False, "propagateRelationTypes": None}


def make_profile(client: httpx.Client, *alarms: dict[str, Any]) -> str:
    saved = client.post("/api/deviceProfile", json={"name": unique("thermostat"), "profileData": {
        "configuration": {"type": "DEFAULT"}, "transportConfiguration": {"type": "DEFAULT"},
        "provisionConfiguration": {"type": "DISABLED"}, "alarms": list(alarms)}})
    assert saved.status_code == 200, saved.text
    return saved.json()["id"]["id"]


def make_device(client: httpx.Client, profile_id: str) -> dict[str, str]:
    token = f"PA-{uuid.uuid4().hex[:12]}"
    created = client.post("/api/device", params={"accessToken": token}, json={
        "name": unique("thermometer"), "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile_id}})
    assert created.status_code == 200, created.text
    return {"id": created.json()["id"]["id"], "token": token}


def alarms_of(client: httpx.Client, device_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/api/alarm/DEVICE/{device_id}", params={"pageSize": 50, "page": 0,
                                                                "sortProperty": "createdTime", "sortOrder": "ASC"})
    assert page.status_code == 200, page.text
    return page.json()["data"]


def readings(port: int, device: dict[str, str], *values: float) -> None:
    session = mqtt(port, device["token"])
    try:
        for value in values:
            publish(session, "v1/devices/me/telemetry", {"temperature": value})
    finally:
        session.loop_stop()
        session.disconnect()


async def eventually_async(check: Any, what: str) -> Any:
    """``eventually`` for async tests: waits without blocking the loop the engine's timers run on."""
    deadline = time.monotonic() + WAIT
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {WAIT} s")
        await asyncio.sleep(0.05)


@pytest.fixture(scope="module")
def root_chain(other_tenant: httpx.Client) -> str:
    """ThingsBoard's root chain up to 4.2 (the device profile node first), the tenant's root."""
    export = json.loads((DATA / "root_rule_chain_pre_4_3.json").read_text())
    export["ruleChain"]["name"] = unique(export["ruleChain"]["name"])
    imported = other_tenant.post("/api/ruleChains/import", json=export)
    assert imported.status_code == 200, imported.text
    chain_id = imported.json()[0]["ruleChainId"]["id"]
    rooted = other_tenant.post(f"/api/ruleChain/{chain_id}/root")
    assert rooted.status_code == 200, rooted.text
    return chain_id


CRITICAL_MAJOR = temperature_alarm(
    {"CRITICAL": rule(key_filter("temperature", "GREATER", 50)),
     "MAJOR": rule(key_filter("temperature", "GREATER", 30), alarmDetails="Temperature is ${temperature}")},
    rule(key_filter("temperature", "LESS", 20)))


# --- end to end ---------------------------------------------------------------------------------------
def test_readings_raise_escalate_and_clear_an_alarm(other_tenant: httpx.Client, root_chain: str,
                                                   mqtt_port: int) -> None:
    device = make_device(other_tenant, make_profile(other_tenant, CRITICAL_MAJOR))
    readings(mqtt_port, device, 25)
    assert alarms_of(other_tenant, device["id"]) == []
    readings(mqtt_port, device, 35)  # acknowledged means the chain's alarms are written
    [alarm] = alarms_of(other_tenant, device["id"])
    assert (alarm["type"], alarm["severity"], alarm["status"]) == ("High Temperature", "MAJOR", "ACTIVE_UNACK")
    assert alarm["details"] == {"data": "Temperature is 35"}
    readings(mqtt_port, device, 55)
    [escalated] = alarms_of(other_tenant, device["id"])
    assert (escalated["id"], escalated["severity"]) == (alarm["id"], "CRITICAL")
    readings(mqtt_port, device, 40)  # MAJOR holds, CRITICAL does not: ThingsBoard keeps the severity
    assert [a["severity"] for a in alarms_of(other_tenant, device["id"])] == ["CRITICAL"]
    readings(mqtt_port, device, 15)
    [cleared] = alarms_of(other_tenant, device["id"])
    assert (cleared["id"], cleared["status"]) == (alarm["id"], "CLEARED_UNACK")
    readings(mqtt_port, device, 36)
    assert [(a["status"], a["severity"]) for a in alarms_of(other_tenant, device["id"])] == [
        ("CLEARED_UNACK", "CRITICAL"), ("ACTIVE_UNACK", "MAJOR")]  # a new alarm, the old one stays cleared
    # the messages went on by Success to the rest of the chain
    assert series(other_tenant, device["id"], "temperature") == ["25", "35", "55", "40", "15", "36"]


def test_a_repeating_rule_raises_after_n_readings_in_a_row(other_tenant: httpx.Client, root_chain: str,
                                                          mqtt_port: int) -> None:
    repeating = temperature_alarm({"MAJOR": rule(key_filter("temperature", "GREATER", 30), spec={
        "type": "REPEATING", "predicate": {"defaultValue": 3, "dynamicValue": None}})})
    device = make_device(other_tenant, make_profile(other_tenant, repeating))
    readings(mqtt_port, device, 31, 32, 10, 33, 34)  # the 10 breaks the run
    assert alarms_of(other_tenant, device["id"]) == []
    readings(mqtt_port, device, 35)
    assert [a["severity"] for a in alarms_of(other_tenant, device["id"])] == ["MAJOR"]


def test_a_duration_rule_raises_only_after_the_duration_without_new_data(other_tenant: httpx.Client,
                                                                         root_chain: str, mqtt_port: int) -> None:
    duration = temperature_alarm({"CRITICAL": rule(key_filter("temperature", "GREATER", 50), spec={
        "type": "DURATION", "unit": "SECONDS", "predicate": {"defaultValue": 3, "dynamicValue": None}})})
    device = make_device(other_tenant, make_profile(other_tenant, duration))
    session = mqtt(mqtt_port, device["token"])
    try:
        started = int(time.time() * 1000)
        publish(session, "v1/devices/me/telemetry", {"ts": started, "values": {"temperature": 60}})
    finally:
        session.loop_stop()
        session.disconnect()
    assert alarms_of(other_tenant, device["id"]) == []  # acknowledged: evaluated, and not yet long enough
    [alarm] = eventually(lambda: alarms_of(other_tenant, device["id"]), "the alarm after the duration")
    assert alarm["severity"] == "CRITICAL" and alarm["startTs"] == started
    assert alarm["createdTime"] > started + 3000  # raised by the device's timer, once 3 s had passed


def test_a_saved_profile_applies_from_the_next_reading(other_tenant: httpx.Client, root_chain: str,
                                                      mqtt_port: int) -> None:
    no_clear = temperature_alarm({"MAJOR": rule(key_filter("temperature", "GREATER", 30))})
    profile_id = make_profile(other_tenant, no_clear)
    device = make_device(other_tenant, profile_id)
    readings(mqtt_port, device, 35, 10)  # no clear rule yet: the alarm stays
    assert [a["status"] for a in alarms_of(other_tenant, device["id"])] == ["ACTIVE_UNACK"]
    profile = other_tenant.get(f"/api/deviceProfile/{profile_id}").json()
    profile["profileData"]["alarms"][0]["clearRule"] = rule(key_filter("temperature", "LESS", 20))
    saved = other_tenant.post("/api/deviceProfile", json=profile)
    assert saved.status_code == 200, saved.text
    readings(mqtt_port, device, 12)
    assert [a["status"] for a in alarms_of(other_tenant, device["id"])] == ["CLEARED_UNACK"]


def test_a_bad_alarm_rule_is_refused_at_save(other_tenant: httpx.Client) -> None:
    bad = temperature_alarm({"MAJOR": rule({"key": {"type": "TIME_SERIES", "key": "temperature"},
                                            "valueType": "NUMERIC",
                                            "predicate": {"type": "NUMERIC", "operation": "ABOVE",
                                                          "value": {"defaultValue": 30}}})})
    body = {"name": unique("bad"), "profileData": {"configuration": {"type": "DEFAULT"},
                                                   "transportConfiguration": {"type": "DEFAULT"}, "alarms": [bad]}}
    refused = assert_tb_error(other_tenant.post("/api/deviceProfile", json=body), 400, 31)
    assert refused["message"] == ("Alarm rule 'High Temperature': create rule MAJOR, key filter 1 (temperature), "
                                  "predicate: NUMERIC operation \"ABOVE\" is not one of EQUAL, NOT_EQUAL, GREATER, "
                                  "LESS, GREATER_OR_EQUAL, LESS_OR_EQUAL")
    twice = {**body, "profileData": {**body["profileData"], "alarms": [CRITICAL_MAJOR, CRITICAL_MAJOR]}}
    refused = assert_tb_error(other_tenant.post("/api/deviceProfile", json=twice), 400, 31)
    assert refused["message"] == "Can't create device profile with the same alarm rule types: \"High Temperature\"!"
    untyped = {**body, "profileData": {**body["profileData"], "alarms": [{"id": "x", "createRules": {}}]}}
    refused = assert_tb_error(other_tenant.post("/api/deviceProfile", json=untyped), 400, 31)
    assert refused["message"] == "Alarm rule type should be specified!"
    good = other_tenant.post("/api/deviceProfile", json={**body, "profileData": {**body["profileData"],
                                                                                  "alarms": [CRITICAL_MAJOR]}})
    assert good.status_code == 200, good.text
    assert good.json()["profileData"]["alarms"] == [CRITICAL_MAJOR]


# --- node by node -------------------------------------------------------------------------------------
def saved_node(engine: EngineHarness, configuration: dict[str, Any]) -> tuple[str, uuid.UUID]:
    """A chain (not root) holding one device profile node: (chain id, node id)."""
    chain = engine.client.post("/api/ruleChain", json={"name": unique("profile chain"), "type": "CORE"})
    assert chain.status_code == 200, chain.text
    chain_id = chain.json()["id"]["id"]
    saved = engine.client.post("/api/ruleChain/metadata", json={
        "ruleChainId": {"entityType": "RULE_CHAIN", "id": chain_id}, "firstNodeIndex": 0,
        "nodes": [{"type": PROFILE_NODE, "name": "Device Profile Node", "configuration": configuration}],
        "connections": []})
    assert saved.status_code == 200, saved.text
    return chain_id, uuid.UUID(saved.json()["nodes"][0]["id"]["id"])


def node_instance(engine: EngineHarness, chain_id: str, node_id: uuid.UUID, configuration: dict[str, Any]) -> RuleNode:
    """The node as a shard builds it from the saved chain (its id is the saved node's)."""
    scripts = engine.services.scripts.for_tenant(engine.tenant_id)
    return NODE_TYPES[PROFILE_NODE](configuration, NodeInit(engine.tenant_id, uuid.UUID(chain_id), node_id, scripts))


def set_attributes(client: httpx.Client, entity_type: str, entity_id: Any, values: dict[str, Any]) -> None:
    saved = client.post(f"/api/plugins/telemetry/{entity_type}/{entity_id}/attributes/SERVER_SCOPE", json=values)
    assert saved.status_code == 200, saved.text


def assign_to_new_customer(client: httpx.Client, device: EntityId) -> str:
    customer = client.post("/api/customer", json={"title": unique("customer")})
    assert customer.status_code == 200, customer.text
    customer_id = customer.json()["id"]["id"]
    assigned = client.post(f"/api/customer/{customer_id}/device/{device.id}")
    assert assigned.status_code == 200, assigned.text
    return customer_id


def plain_device(client: httpx.Client) -> EntityId:
    created = client.post("/api/device", json={"name": unique("plain")})
    assert created.status_code == 200, created.text
    return EntityId("DEVICE", uuid.UUID(created.json()["id"]["id"]))


def device_of(engine: EngineHarness, *alarms: dict[str, Any], profile_id: str | None = None) -> EntityId:
    """A device of a new profile with these alarm rules (or of ``profile_id``)."""
    profile_id = profile_id or make_profile(engine.client, *alarms)
    return engine.device(deviceProfileId={"entityType": "DEVICE_PROFILE", "id": profile_id})


def relations(outputs: list[tuple[str, TbMsg]]) -> list[str]:
    return [relation for relation, _ in outputs]


async def test_alarm_messages_leave_by_thingsboards_relations(engine: EngineHarness) -> None:
    node = engine.build(PROFILE_NODE)
    device = device_of(engine, CRITICAL_MAJOR)
    reading = engine.msg(device, {"temperature": 35}, deviceName="t1")
    [(created, alarm_msg), (success, passed)] = await engine.run(node, reading)
    assert (created, success, passed) == ("Alarm Created", "Success", reading)
    assert alarm_msg.type == "ALARM" and alarm_msg.originator == device
    assert alarm_msg.data["severity"] == "MAJOR" and alarm_msg.data["type"] == "High Temperature"
    assert alarm_msg.metadata == {"deviceName": "t1", "isNewAlarm": "true"}
    assert relations(await engine.run(node, engine.msg(device, {"temperature": 36}))) == ["Alarm Updated", "Success"]
    [(severity, escalated), _] = await engine.run(node, engine.msg(device, {"temperature": 60}))
    assert severity == "Alarm Severity Updated" and escalated.data["severity"] == "CRITICAL"
    assert escalated.metadata["isSeverityUpdated"] == "true"
    [(cleared, clear_msg), _] = await engine.run(node, engine.msg(device, {"temperature": 10}))
    assert cleared == "Alarm Cleared" and clear_msg.data["cleared"] is True
    assert relations(await engine.run(node, engine.msg(device, {"humidity": 10}))) == ["Success"]


async def test_messages_the_rules_do_not_concern_pass_by_success(engine: EngineHarness, tenant: httpx.Client) -> None:
    node = engine.build(PROFILE_NODE)
    plain = engine.device()  # the default profile: no alarm rules
    assert relations(await engine.run(node, engine.msg(plain, {"temperature": 99}))) == ["Success"]
    asset = EntityId("ASSET", uuid.uuid4())
    assert relations(await engine.run(node, engine.msg(asset, {"temperature": 99}))) == ["Success"]
    foreign = plain_device(tenant)  # another tenant's
    assert await engine.run(node, engine.msg(foreign, {"temperature": 99})) == []  # no such device here
    assert alarms_of(tenant, str(foreign.id)) == []


async def test_attributes_and_dynamic_thresholds(engine: EngineHarness) -> None:
    inherit = {"sourceType": "CURRENT_DEVICE", "sourceAttribute": "tempLimit", "inherit": True}
    dynamic = temperature_alarm({"MAJOR": rule(key_filter("temperature", "GREATER", 100, inherit))})
    profile_id = make_profile(engine.client, dynamic)
    limited, customers, unlimited = (device_of(engine, profile_id=profile_id) for _ in range(3))
    set_attributes(engine.client, "DEVICE", limited.id, {"tempLimit": 40})
    customer_id = assign_to_new_customer(engine.client, customers)
    set_attributes(engine.client, "CUSTOMER", customer_id, {"tempLimit": 20})
    tenant = EntityId("TENANT", engine.tenant_id)  # a tenant's own attributes, written as the engine writes them
    ctx = engine.context(engine.msg(tenant, {}))
    await ctx.save_attributes(tenant, "SERVER_SCOPE", {"tempLimit": 30}, int(time.time() * 1000))
    await ctx.finish()
    node = engine.build(PROFILE_NODE)
    assert relations(await engine.run(node, engine.msg(limited, {"temperature": 35}))) == ["Success"]  # its 40
    created = ["Alarm Created", "Success"]
    assert relations(await engine.run(node, engine.msg(customers, {"temperature": 25}))) == created  # customer's 20
    assert relations(await engine.run(node, engine.msg(unlimited, {"temperature": 25}))) == ["Success"]  # tenant's 30
    assert relations(await engine.run(node, engine.msg(unlimited, {"temperature": 35}))) == created
    # an attribute key from a device's attributes message
    flag = temperature_alarm({"WARNING": rule({"key": {"type": "ATTRIBUTE", "key": "mode"}, "valueType": "STRING",
                                               "predicate": {"type": "STRING", "operation": "EQUAL",
                                                             "ignoreCase": True, "value": {"defaultValue": "panic"}}})})
    moody = device_of(engine, flag)
    posted = engine.msg(moody, {"mode": "PANIC"}, "POST_ATTRIBUTES_REQUEST")
    assert relations(await engine.run(node, posted)) == ["Alarm Created", "Success"]


async def test_repeat_counts_survive_in_rule_node_state(engine: EngineHarness) -> None:
    config = {"persistAlarmRulesState": True, "fetchAlarmRulesStateOnStart": False}
    chain_id, node_id = saved_node(engine, config)
    repeating = temperature_alarm({"MAJOR": rule(key_filter("temperature", "GREATER", 30), spec={
        "type": "REPEATING", "predicate": {"defaultValue": 3}})})
    device = device_of(engine, repeating)
    first = node_instance(engine, chain_id, node_id, config)
    for value in (31, 32):
        assert relations(await engine.run(first, engine.msg(device, {"temperature": value}))) == ["Success"]
    stored = await engine.db.fetchval("SELECT state_data FROM rule_node_state WHERE rule_node_id = $1"
                                      " AND entity_id = $2", node_id, device.id)
    [alarm_state] = stored["alarmStates"].values()
    assert alarm_state["createRuleStates"]["MAJOR"]["eventCount"] == 2
    # a fresh instance (a restarted shard) reads the count back the first time the device needs it
    fresh = node_instance(engine, chain_id, node_id, config)
    [(created, alarm_msg), _] = await engine.run(fresh, engine.msg(device, {"temperature": 33}))
    assert created == "Alarm Created" and alarm_msg.metadata["alarmConditionRepeats"] == "3"
    # without persistence a fresh instance starts from nothing
    forgetful = engine.build(PROFILE_NODE)
    other = device_of(engine, repeating)
    for value in (31, 32):
        await engine.run(forgetful, engine.msg(other, {"temperature": value}))
    again = engine.build(PROFILE_NODE)
    assert relations(await engine.run(again, engine.msg(other, {"temperature": 33}))) == ["Success"]


async def test_a_duration_under_way_is_finished_by_a_restarted_node(engine: EngineHarness) -> None:
    config = {"persistAlarmRulesState": True, "fetchAlarmRulesStateOnStart": True}
    chain_id, node_id = saved_node(engine, config)
    duration = temperature_alarm({"CRITICAL": rule(key_filter("temperature", "GREATER", 50), spec={
        "type": "DURATION", "unit": "SECONDS", "predicate": {"defaultValue": 2}})})
    device = device_of(engine, duration)
    started = int(time.time() * 1000)
    reading = TbMsg("POST_TELEMETRY_REQUEST", device, {"temperature": 60}, {"ts": str(started)})
    await (await engine.rules.process(reading, uuid.UUID(chain_id)))
    stored = await engine.db.fetchval("SELECT state_data FROM rule_node_state WHERE rule_node_id = $1"
                                      " AND entity_id = $2", node_id, device.id)
    [alarm_state] = stored["alarmStates"].values()
    assert alarm_state["createRuleStates"]["CRITICAL"]["lastEventTs"] == started
    await engine.rules.close()  # the shard stops: its timers die with its nodes
    restarted = TenantRules(engine.tenant_id, engine.services)
    try:
        await restarted.chain(uuid.UUID(chain_id))  # the node starts and loads its devices' progress
        [alarm] = await eventually_async(lambda: alarms_of(engine.client, str(device.id)), "the alarm after a restart")
        assert alarm["severity"] == "CRITICAL" and alarm["createdTime"] > started + 2000
    finally:
        await restarted.close()
