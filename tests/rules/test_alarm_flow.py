"""An alarm's life through a rule chain in ThingsBoard's format, saved over REST and made root, driven
by a real MQTT device: raised above a threshold, updated (not duplicated) while it stays hot, cleared
when it cools, acknowledged over REST; the alarm nodes' action messages and the REST change reach
the chain too."""

from __future__ import annotations

from typing import Any

import httpx

from tests.rules.test_engine_e2e import eventually, make_device, mqtt, node, publish, save_root_chain, series

DETAILS_TBEL = ("var details = {};\n"
                "if (metadata.prevAlarmDetails != null) {\n"
                "    details = JSON.parse(metadata.prevAlarmDetails);\n"
                "    metadata.remove('prevAlarmDetails');\n"
                "}\n"
                "details.readings = details.readings == null ? 1 : details.readings + 1;\n"
                "details.last = msg.temperature;\n"
                "return details;")
CLEAR_TBEL = ("var details = JSON.parse(metadata.prevAlarmDetails);\n"
              "details.clearedAt = msg.temperature;\n"
              "return details;")
RECORD_EVENT = ("var out = {};\nout[msgType] = msg.type + '/' + msg.status;\n"
                "return {msg: out, metadata: metadata, msgType: 'POST_TELEMETRY_REQUEST'};")


def alarm_chain() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    nodes = [
        node("filter.TbMsgTypeSwitchNode", "Message Type Switch", {"version": 0}),
        node("transform.TbTransformMsgNode", "To Fahrenheit", {
            "scriptLang": "TBEL",
            "tbelScript": "msg.temperatureF = msg.temperature * 1.8 + 32;"
                          " return {msg: msg, metadata: metadata, msgType: msgType};"}),
        node("telemetry.TbMsgTimeseriesNode", "Save Timeseries", {"defaultTTL": 0, "useServerTs": False}),
        node("filter.TbJsFilterNode", "Too hot?", {
            "scriptLang": "JS",
            "jsScript": "if (typeof msg.temperature !== 'number') { throw new Error('no temperature'); }\n"
                        "return msg.temperature > 30;"}),
        node("action.TbCreateAlarmNode", "Raise High Temperature", {
            "alarmType": "High Temperature", "severity": "MAJOR", "propagate": False, "propagateToOwner": False,
            "propagateToTenant": False, "useMessageAlarmData": False, "overwriteAlarmDetails": False,
            "dynamicSeverity": False, "relationTypes": [], "scriptLang": "TBEL",
            "alarmDetailsBuildJs": "return {};", "alarmDetailsBuildTbel": DETAILS_TBEL}),
        node("action.TbClearAlarmNode", "Clear High Temperature", {
            "alarmType": "High Temperature", "scriptLang": "TBEL", "alarmDetailsBuildTbel": CLEAR_TBEL}),
        node("transform.TbTransformMsgNode", "Record alarm event", {"scriptLang": "TBEL",
                                                                    "tbelScript": RECORD_EVENT}),
        node("telemetry.TbMsgTimeseriesNode", "Save alarm event", {"defaultTTL": 0}),
    ]
    connections = [
        {"fromIndex": 0, "toIndex": 1, "type": "Post telemetry"},
        {"fromIndex": 1, "toIndex": 2, "type": "Success"},
        {"fromIndex": 1, "toIndex": 3, "type": "Success"},
        {"fromIndex": 3, "toIndex": 4, "type": "True"},
        {"fromIndex": 3, "toIndex": 5, "type": "False"},
        # the alarm nodes' action messages and the alarm's changes over REST come back to the root chain
        {"fromIndex": 0, "toIndex": 6, "type": "Entity Created"},
        {"fromIndex": 0, "toIndex": 6, "type": "Entity Updated"},
        {"fromIndex": 0, "toIndex": 6, "type": "Alarm Cleared"},
        {"fromIndex": 0, "toIndex": 6, "type": "Alarm Acknowledged"},
        {"fromIndex": 6, "toIndex": 7, "type": "Success"},
    ]
    return nodes, connections


def alarms(client: httpx.Client, device_id: str) -> list[dict[str, Any]]:
    page = client.get(f"/api/alarm/DEVICE/{device_id}", params={"pageSize": 10, "page": 0})
    assert page.status_code == 200, page.text
    return page.json()["data"]


def test_an_alarm_raised_updated_cleared_and_acknowledged(other_tenant: httpx.Client, mqtt_port: int) -> None:
    save_root_chain(other_tenant, *alarm_chain())
    device = make_device(other_tenant)
    client = mqtt(mqtt_port, device["token"])
    try:
        publish(client, "v1/devices/me/telemetry", {"temperature": 25})
        assert alarms(other_tenant, device["id"]) == []  # acknowledged means processed: nothing raised

        publish(client, "v1/devices/me/telemetry", {"temperature": 35})
        [raised] = alarms(other_tenant, device["id"])
        assert raised["type"] == "High Temperature" and raised["severity"] == "MAJOR"
        assert raised["status"] == "ACTIVE_UNACK" and raised["details"] == {"readings": 1, "last": 35}

        publish(client, "v1/devices/me/telemetry", {"temperature": 40})
        [updated] = alarms(other_tenant, device["id"])  # the same alarm, not a second one
        assert updated["id"] == raised["id"] and updated["details"] == {"readings": 2, "last": 40}

        publish(client, "v1/devices/me/telemetry", {"temperature": "n/a"})  # fails in two nodes, stops nothing
        publish(client, "v1/devices/me/telemetry", {"temperature": 20})
        [cleared] = alarms(other_tenant, device["id"])
        assert cleared["id"] == raised["id"] and cleared["status"] == "CLEARED_UNACK"
        assert cleared["details"] == {"readings": 2, "last": 40, "clearedAt": 20}

        acked = other_tenant.post(f"/api/alarm/{raised['id']['id']}/ack")
        assert acked.status_code == 200, acked.text
        assert alarms(other_tenant, device["id"])[0]["status"] == "CLEARED_ACK"

        # the transformed readings are stored; the bad one left no trace
        assert series(other_tenant, device["id"], "temperatureF") == ["77.0", "95.0", "104.0", "68.0"]
        # what the alarm nodes did, and the acknowledgement over REST, came back to the root chain
        events = {"ENTITY_CREATED": ["High Temperature/ACTIVE_UNACK"],
                  "ENTITY_UPDATED": ["High Temperature/ACTIVE_UNACK"],
                  "ALARM_CLEAR": ["High Temperature/CLEARED_UNACK"],
                  "ALARM_ACK": ["High Temperature/CLEARED_ACK"]}
        for key, expected in events.items():
            eventually(lambda key=key, expected=expected: series(other_tenant, device["id"], key) == expected,
                       f"the {key} message in the root chain")
    finally:
        client.loop_stop()
        client.disconnect()
