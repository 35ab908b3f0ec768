"""Create Alarm and Clear Alarm, one message at a time, against the real alarm tables."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.rules import entities
from tests.rules.conftest import EngineHarness
from thingsray.rules.msg import EntityId
from thingsray.rules.node import NodeConfigError

P = "org.thingsboard.rule.engine.action."
COUNTING_DETAILS = ("var details = {};\n"
                    "if (metadata.prevAlarmDetails != null) { details = JSON.parse(metadata.prevAlarmDetails); }\n"
                    "details.count = details.count == null ? 1 : details.count + 1;\n"
                    "details.temperature = msg.temperature;\n"
                    "return details;")


def create_node(engine: EngineHarness, **config: Any) -> Any:
    return engine.build(P + "TbCreateAlarmNode", {
        "alarmType": "High Temperature", "severity": "CRITICAL", "scriptLang": "TBEL",
        "alarmDetailsBuildTbel": COUNTING_DETAILS, **config})


def alarms_of(client: httpx.Client, entity: EntityId, **params: Any) -> list[dict[str, Any]]:
    page = client.get(f"/api/alarm/{entity.entity_type}/{entity.id}", params={"pageSize": 100, "page": 0, **params})
    assert page.status_code == 200, page.text
    return page.json()["data"]


def raise_alarm(client: httpx.Client, originator: EntityId, alarm_type: str) -> EntityId:
    raised = client.post("/api/alarm", json={"type": alarm_type, "originator": originator.to_json(),
                                             "severity": "MAJOR"})
    assert raised.status_code == 200, raised.text
    return EntityId("ALARM", uuid.UUID(raised.json()["id"]["id"]))


def alarm(client: httpx.Client, alarm_id: EntityId) -> dict[str, Any]:
    found = client.get(f"/api/alarm/{alarm_id.id}")
    assert found.status_code == 200, found.text
    return found.json()


async def test_create_then_update_one_alarm_with_the_previous_details(engine: EngineHarness) -> None:
    node = create_node(engine)
    device = engine.device()
    [(relation, created)] = await engine.run(node, engine.msg(device, {"temperature": 31}, ts="1000"))
    assert relation == "Created"
    assert created.type == "ALARM" and created.metadata["isNewAlarm"] == "true"
    assert created.metadata["ts"] == "1000"  # the incoming metadata stays
    alarm = created.data
    assert alarm["type"] == "High Temperature" and alarm["severity"] == "CRITICAL"
    assert alarm["originator"] == device.to_json() and alarm["status"] == "ACTIVE_UNACK"
    assert alarm["details"] == {"count": 1, "temperature": 31}
    assert alarm["startTs"] == 1000 and alarm["endTs"] == 1000  # the message's time

    [(relation, updated)] = await engine.run(node, engine.msg(device, {"temperature": 35}, ts="2000"))
    assert relation == "Updated" and updated.metadata["isExistingAlarm"] == "true"
    assert updated.data["id"] == alarm["id"]
    assert updated.data["details"] == {"count": 2, "temperature": 35}  # the script saw prevAlarmDetails
    assert updated.data["endTs"] > 2000  # an update moves endTs to now, as ThingsBoard does
    stored = alarms_of(engine.client, device)
    assert [(a["id"], a["details"]) for a in stored] == [(alarm["id"], {"count": 2, "temperature": 35})]


async def test_severity_and_type_from_patterns(engine: EngineHarness) -> None:
    node = create_node(engine, alarmType="${kind} alarm", severity="${level}", dynamicSeverity=True)
    device = engine.device()
    [(relation, out)] = await engine.run(node, engine.msg(device, {"temperature": 1}, kind="Door", level="MINOR"))
    assert relation == "Created" and out.data["type"] == "Door alarm" and out.data["severity"] == "MINOR"
    [(relation, out)] = await engine.run(node, engine.msg(device, {"temperature": 1}, kind="Door", level="MAJOR"))
    assert relation == "Updated" and out.data["severity"] == "MAJOR"
    with pytest.raises(ValueError, match="Alarm Severity not included"):
        await engine.run(node, engine.msg(device, {}, kind="Door", level="LOUD"))


async def test_propagation_and_the_owner_customer(engine: EngineHarness) -> None:
    device, building = engine.device(), entities.asset(engine.client)
    customer = entities.customer(engine.client)
    entities.assign(engine.client, device, customer)
    entities.relate(engine.client, building, device)
    node = create_node(engine, propagate=True, relationTypes=["Contains"], propagateToOwner=True)
    [(_, out)] = await engine.run(node, engine.msg(device, {"temperature": 40}))
    alarm = out.data
    assert alarm["customerId"]["id"] == str(customer.id) and alarm["propagate"] is True
    assert alarm["propagateRelationTypes"] == ["Contains"]
    assert [a["id"] for a in alarms_of(engine.client, building)] == [alarm["id"]]
    assert [a["id"] for a in alarms_of(engine.client, customer)] == [alarm["id"]]


async def test_the_alarm_in_the_message_is_used_as_is(engine: EngineHarness) -> None:
    node = create_node(engine, useMessageAlarmData=True, overwriteAlarmDetails=False)
    device = engine.device()
    body = {"type": "Carried", "severity": "WARNING", "details": {"from": "message"}, "propagate": False}
    [(relation, out)] = await engine.run(node, engine.msg(device, body, "ALARM"))
    assert relation == "Created" and out.data["type"] == "Carried" and out.data["severity"] == "WARNING"
    assert out.data["details"] == {"from": "message"}
    overwrite = create_node(engine, useMessageAlarmData=True, overwriteAlarmDetails=True)
    [(relation, out)] = await engine.run(overwrite, engine.msg(device, {**body, "temperature": 3}, "ALARM"))
    assert relation == "Updated" and out.data["details"] == {"count": 1, "temperature": 3, "from": "message"}
    with pytest.raises(ValueError, match="no 'type'"):
        await engine.run(node, engine.msg(device, {"severity": "WARNING"}, "ALARM"))


async def test_clear_alarm_clears_the_active_one_once(engine: EngineHarness) -> None:
    clear = engine.build(P + "TbClearAlarmNode", {
        "alarmType": "High Temperature", "scriptLang": "JS",
        "alarmDetailsBuildJs": "var d = JSON.parse(metadata.prevAlarmDetails); d.clearedAt = msg.temperature;"
                               " return d;"})
    device = engine.device()
    [(relation, _)] = await engine.run(clear, engine.msg(device, {"temperature": 10}))
    assert relation == "False"  # nothing to clear
    await engine.run(create_node(engine), engine.msg(device, {"temperature": 40}))
    [(relation, cleared)] = await engine.run(clear, engine.msg(device, {"temperature": 12}))
    assert relation == "Cleared" and cleared.type == "ALARM" and cleared.metadata["isClearedAlarm"] == "true"
    assert cleared.data["cleared"] is True and cleared.data["status"] == "CLEARED_UNACK"
    assert cleared.data["details"] == {"count": 1, "temperature": 40, "clearedAt": 12}
    [(relation, _)] = await engine.run(clear, engine.msg(device, {"temperature": 11}))
    assert relation == "False"
    assert [a["status"] for a in alarms_of(engine.client, device)] == ["CLEARED_UNACK"]


async def test_clear_by_alarm_originator_stays_in_its_tenant(engine: EngineHarness, tenant: httpx.Client) -> None:
    clear = engine.build(P + "TbClearAlarmNode")  # ThingsBoard's defaults: TBEL details, "General Alarm"
    device = engine.device()
    [(_, created)] = await engine.run(create_node(engine, alarmType="Mine"), engine.msg(device, {"temperature": 1}))
    mine = EntityId("ALARM", uuid.UUID(created.data["id"]["id"]))
    [(relation, out)] = await engine.run(clear, engine.msg(mine, created.data, "ENTITY_CREATED"))
    assert relation == "Cleared" and out.data["type"] == "Mine" and out.data["cleared"] is True

    theirs = raise_alarm(tenant, entities.device(tenant), "Theirs")
    [(relation, _)] = await engine.run(clear, engine.msg(theirs, {}, "ENTITY_CREATED"))
    assert relation == "False"
    assert alarm(tenant, theirs)["cleared"] is False


def test_bad_configurations_name_the_problem(engine: EngineHarness) -> None:
    with pytest.raises(NodeConfigError, match="Incorrect Alarm Severity value: LOUD"):
        create_node(engine, severity="LOUD")
    with pytest.raises(NodeConfigError, match="alarmDetailsBuildTbel"):
        create_node(engine, alarmDetailsBuildTbel="return (;")
    with pytest.raises(NodeConfigError, match="alarmDetailsBuildJs"):
        engine.build(P + "TbClearAlarmNode", {"alarmType": "x", "scriptLang": "JS", "alarmDetailsBuildJs": ""})
    defaults = engine.build(P + "TbCreateAlarmNode")
    assert defaults.alarm_type == "General Alarm" and defaults.severity == "CRITICAL"
