"""Enrichment nodes over what is really stored: entities, relations, attributes and time series are
made over REST (or by the save attributes node), then the nodes read them."""

from __future__ import annotations

import json
import time
import uuid

import httpx
import pytest

from tests.rules import entities
from tests.rules.conftest import EngineHarness
from thingsray.rules.msg import EntityId
from thingsray.rules.node import NodeConfigError

P = "org.thingsboard.rule.engine.metadata."
ATTRIBUTES = P + "TbGetAttributesNode"
TELEMETRY = P + "TbGetTelemetryNode"
RELATED = P + "TbGetRelatedAttributeNode"
CUSTOMER_ATTRIBUTES = P + "TbGetCustomerAttributeNode"
CUSTOMER_DETAILS = P + "TbGetCustomerDetailsNode"
TENANT_DETAILS = P + "TbGetTenantDetailsNode"
FIELDS = P + "TbGetOriginatorFieldsNode"
CONTAINED_IN_ASSET = {"direction": "TO", "maxLevel": 1, "fetchLastLevelOnly": False,
                      "filters": [{"relationType": "Contains", "entityTypes": ["ASSET"]}]}


async def stored_device(engine: EngineHarness) -> EntityId:
    """A device with attributes of all three scopes and a latest value, stored as devices store them."""
    client = engine.client
    dev = entities.device(client)
    entities.save_attributes(client, dev, "SERVER_SCOPE", {"threshold": 25, "mode": "eco"})
    entities.save_attributes(client, dev, "SHARED_SCOPE", {"target": 21.5, "cfg": {"a": 1}})
    save_client = engine.build("org.thingsboard.rule.engine.telemetry.TbMsgAttributesNode", {"scope": "CLIENT_SCOPE"})
    await engine.run(save_client, engine.msg(dev, {"fw": "1.2", "on": True}, "POST_ATTRIBUTES_REQUEST"))
    entities.save_timeseries(client, dev, {"ts": 1000, "values": {"temperature": 22.5}})
    return dev


# --- originator attributes ----------------------------------------------------------------------
async def test_originator_attributes_go_to_metadata_with_thingsboards_prefixes(engine: EngineHarness) -> None:
    dev = await stored_device(engine)
    node = engine.build(ATTRIBUTES, {
        "clientAttributeNames": ["fw", "on"], "sharedAttributeNames": ["target", "cfg"],
        "serverAttributeNames": ["threshold", "mode"], "latestTsKeyNames": ["temperature"],
        "tellFailureIfAbsent": True, "fetchTo": "METADATA"})
    [(relation, out)] = await engine.run(node, engine.msg(dev, {"t": 1}, requestId="7"))
    assert relation == "Success"
    assert out.metadata == {"requestId": "7", "cs_fw": "1.2", "cs_on": "true", "shared_target": "21.5",
                            "shared_cfg": '{"a":1}', "ss_threshold": "25", "ss_mode": "eco", "temperature": "22.5"}
    assert out.data == {"t": 1}


async def test_originator_attributes_into_the_body_keep_their_json_types(engine: EngineHarness) -> None:
    dev = await stored_device(engine)
    node = engine.build(ATTRIBUTES, {"serverAttributeNames": ["threshold"], "sharedAttributeNames": ["cfg"],
                                     "clientAttributeNames": ["on"], "latestTsKeyNames": ["temperature"],
                                     "fetchTo": "DATA"})
    [(relation, out)] = await engine.run(node, engine.msg(dev, {"t": 1}))
    assert relation == "Success"
    assert out.data == {"t": 1, "cs_on": True, "shared_cfg": {"a": 1}, "ss_threshold": 25, "temperature": 22.5}
    assert out.metadata == {}


async def test_originator_attribute_names_take_metadata_and_body_patterns(engine: EngineHarness) -> None:
    dev = await stored_device(engine)
    node = engine.build(ATTRIBUTES, {"serverAttributeNames": ["${which}", "$[other.key]"], "fetchTo": "METADATA"})
    [(_, out)] = await engine.run(node, engine.msg(dev, {"other": {"key": "mode"}}, which="threshold"))
    assert out.metadata == {"which": "threshold", "ss_threshold": "25", "ss_mode": "eco"}


async def test_missing_keys_send_the_enriched_message_to_failure_naming_them(engine: EngineHarness) -> None:
    dev = await stored_device(engine)
    config = {"serverAttributeNames": ["threshold", "nope"], "latestTsKeyNames": ["nothing"], "fetchTo": "METADATA"}
    [(relation, out)] = await engine.run(engine.build(ATTRIBUTES, {**config, "tellFailureIfAbsent": True}),
                                         engine.msg(dev, {}))
    assert relation == "Failure"
    assert out.metadata["ss_threshold"] == "25"
    assert out.metadata["error"] == ("RuntimeError: The following attribute/telemetry keys is not present in the DB: "
                                     "\n\t[SERVER_SCOPE]:[nope]\n\t[LATEST_TS]:[nothing]\n")
    [(relation, out)] = await engine.run(engine.build(ATTRIBUTES, {**config, "tellFailureIfAbsent": False}),
                                         engine.msg(dev, {}))
    assert relation == "Success" and out.metadata == {"ss_threshold": "25"}


async def test_latest_values_with_their_timestamps(engine: EngineHarness) -> None:
    dev = await stored_device(engine)
    config = {"latestTsKeyNames": ["temperature"], "getLatestValueWithTs": True}
    [(_, out)] = await engine.run(engine.build(ATTRIBUTES, {**config, "fetchTo": "METADATA"}), engine.msg(dev, {}))
    assert json.loads(out.metadata["temperature"]) == {"ts": 1000, "value": 22.5}
    [(_, out)] = await engine.run(engine.build(ATTRIBUTES, {**config, "fetchTo": "DATA"}), engine.msg(dev, {}))
    assert out.data == {"temperature": {"ts": 1000, "value": 22.5}}


async def test_configurations_from_before_fetch_to(engine: EngineHarness) -> None:
    dev = await stored_device(engine)
    [(_, out)] = await engine.run(engine.build(ATTRIBUTES, {"serverAttributeNames": ["mode"]}), engine.msg(dev, {}))
    assert out.metadata == {"ss_mode": "eco"}
    old_data = engine.build(ATTRIBUTES, {"serverAttributeNames": ["mode"], "fetchToData": True})
    [(_, out)] = await engine.run(old_data, engine.msg(dev, {}))
    assert out.data == {"ss_mode": "eco"}


async def test_a_body_that_is_no_object_cannot_take_values(engine: EngineHarness) -> None:
    node = engine.build(ATTRIBUTES, {"serverAttributeNames": ["mode"], "fetchTo": "DATA"})
    with pytest.raises(ValueError, match="Message body is not an object!"):
        await engine.run(node, engine.msg(engine.device(), [1, 2]))


# --- originator telemetry -----------------------------------------------------------------------
def telemetry_device(engine: EngineHarness) -> EntityId:
    dev = entities.device(engine.client)
    entities.save_timeseries(engine.client, dev, [
        {"ts": 10_000, "values": {"temp": 10, "hum": 50}}, {"ts": 20_000, "values": {"temp": 11}},
        {"ts": 30_000, "values": {"temp": 12}}, {"ts": 90_000, "values": {"temp": 99}}])
    return dev


def window(**config: object) -> dict[str, object]:
    """From metadata ``from`` to body ``to``, the rest as given."""
    return {"latestTsKeyNames": ["temp", "hum"], "useMetadataIntervalPatterns": True,
            "startIntervalPattern": "${from}", "endIntervalPattern": "$[to]", **config}


async def test_first_last_and_all_values_in_an_interval(engine: EngineHarness) -> None:
    dev = telemetry_device(engine)
    msg = engine.msg(dev, {"to": 60_000}, **{"from": "5000"})
    [(_, out)] = await engine.run(engine.build(TELEMETRY, window(fetchMode="FIRST")), msg)
    assert (out.metadata["temp"], out.metadata["hum"]) == ("10", "50")
    [(_, out)] = await engine.run(engine.build(TELEMETRY, window(fetchMode="LAST")), msg)
    assert out.metadata["temp"] == "12"
    [(_, out)] = await engine.run(engine.build(TELEMETRY, window(fetchMode="ALL", orderBy="ASC", limit=0)), msg)
    assert json.loads(out.metadata["temp"]) == [{"ts": 10_000, "value": 10}, {"ts": 20_000, "value": 11},
                                                {"ts": 30_000, "value": 12}]
    assert json.loads(out.metadata["hum"]) == [{"ts": 10_000, "value": 50}]
    [(_, out)] = await engine.run(engine.build(TELEMETRY, window(fetchMode="ALL", orderBy="DESC", limit=2)), msg)
    assert [p["value"] for p in json.loads(out.metadata["temp"])] == [12, 11]


async def test_all_values_aggregated_over_the_interval(engine: EngineHarness) -> None:
    dev = telemetry_device(engine)
    msg = engine.msg(dev, {"to": 60_000}, **{"from": "5000"})
    [(_, out)] = await engine.run(engine.build(TELEMETRY, window(fetchMode="ALL", aggregation="MAX")), msg)
    [point] = json.loads(out.metadata["temp"])
    assert point["value"] == 12
    [(_, out)] = await engine.run(engine.build(TELEMETRY, window(fetchMode="ALL", aggregation="COUNT")), msg)
    assert [p["value"] for p in json.loads(out.metadata["temp"])] == [3]


async def test_interval_relative_to_now(engine: EngineHarness) -> None:
    dev = entities.device(engine.client)
    now = int(time.time() * 1000)
    entities.save_timeseries(engine.client, dev, [{"ts": now - 7_200_000, "values": {"temp": 1}},
                                                  {"ts": now - 1_800_000, "values": {"temp": 2}}])
    node = engine.build(TELEMETRY, {"latestTsKeyNames": ["temp"], "fetchMode": "FIRST", "startInterval": 1,
                                    "startIntervalTimeUnit": "HOURS", "endInterval": 0,
                                    "endIntervalTimeUnit": "MINUTES"})
    [(_, out)] = await engine.run(node, engine.msg(dev, {}))
    assert out.metadata == {"temp": "2"}


async def test_telemetry_key_and_interval_errors(engine: EngineHarness) -> None:
    dev = telemetry_device(engine)
    with pytest.raises(ValueError, match="Telemetry is not selected!"):
        await engine.run(engine.build(TELEMETRY), engine.msg(dev, {}))
    node = engine.build(TELEMETRY, window(fetchMode="FIRST"))
    with pytest.raises(ValueError, match="Message value: 'from' is undefined"):
        await engine.run(node, engine.msg(dev, {"to": 60_000}))
    with pytest.raises(ValueError, match="Message value: 'to' has invalid format"):
        await engine.run(node, engine.msg(dev, {"to": "soon"}, **{"from": "5000"}))
    with pytest.raises(NodeConfigError, match="fetchMode"):
        engine.build(TELEMETRY, window(fetchMode="SOME"))


# --- related entity data ------------------------------------------------------------------------
def device_in_asset(engine: EngineHarness) -> tuple[EntityId, EntityId]:
    client = engine.client
    dev, room = entities.device(client), entities.asset(client, label="Floor 3")
    entities.relate(client, room, dev)
    entities.save_attributes(client, room, "SERVER_SCOPE", {"serialNumber": "SN-1", "floor": 3})
    entities.save_timeseries(client, room, {"ts": 5000, "values": {"occupancy": 7}})
    return dev, room


async def test_related_entity_attributes_telemetry_and_fields(engine: EngineHarness) -> None:
    dev, room = device_in_asset(engine)
    attributes = engine.build(RELATED, {"relationsQuery": CONTAINED_IN_ASSET, "dataToFetch": "ATTRIBUTES",
                                        "dataMapping": {"serialNumber": "sn", "floor": "$[target]"},
                                        "fetchTo": "METADATA"})
    [(_, out)] = await engine.run(attributes, engine.msg(dev, {"target": "floorNo"}))
    assert out.metadata == {"sn": "SN-1", "floorNo": "3"}
    latest = engine.build(RELATED, {"relationsQuery": CONTAINED_IN_ASSET, "dataToFetch": "LATEST_TELEMETRY",
                                    "dataMapping": {"occupancy": "occ"}, "fetchTo": "DATA"})
    [(_, out)] = await engine.run(latest, engine.msg(dev, {"t": 1}))
    assert out.data == {"t": 1, "occ": 7}
    fields = engine.build(RELATED, {"relationsQuery": CONTAINED_IN_ASSET, "dataToFetch": "FIELDS",
                                    "dataMapping": {"name": "roomName", "label": "roomLabel", "id": "roomId"},
                                    "fetchTo": "METADATA"})
    [(_, out)] = await engine.run(fields, engine.msg(dev, {}))
    name = engine.client.get(f"/api/asset/{room.id}").json()["name"]
    assert out.metadata == {"roomName": name, "roomLabel": "Floor 3", "roomId": str(room.id)}


async def test_no_related_entity_is_a_failure(engine: EngineHarness) -> None:
    node = engine.build(RELATED, {"relationsQuery": CONTAINED_IN_ASSET, "dataToFetch": "ATTRIBUTES",
                                  "dataMapping": {"serialNumber": "sn"}, "fetchTo": "METADATA"})
    with pytest.raises(LookupError, match="Failed to find related entity to message originator"):
        await engine.run(node, engine.msg(entities.device(engine.client), {}))


async def test_a_relation_to_another_tenants_entity_is_not_followed(engine: EngineHarness,
                                                                    tenant: httpx.Client) -> None:
    """Relations cannot be made across tenants over REST; even a row in the table that joins them
    does not let a node read the other tenant's entity."""
    dev = entities.device(engine.client)
    foreign = entities.asset(tenant, label="not yours")
    entities.save_attributes(tenant, foreign, "SERVER_SCOPE", {"serialNumber": "SECRET"})
    await engine.db.execute(
        "INSERT INTO relation (from_id, from_type, to_id, to_type, relation_type_group, relation_type, version)"
        " VALUES ($1, 'ASSET', $2, 'DEVICE', 'COMMON', 'Contains', 1)", foreign.id, dev.id)
    for what, mapping in (("ATTRIBUTES", {"serialNumber": "sn"}), ("FIELDS", {"label": "label"})):
        node = engine.build(RELATED, {"relationsQuery": CONTAINED_IN_ASSET, "dataToFetch": what,
                                      "dataMapping": mapping, "fetchTo": "METADATA"})
        with pytest.raises(LookupError, match="Failed to find related entity"):
            await engine.run(node, engine.msg(dev, {}))


def test_related_data_configuration_errors(engine: EngineHarness) -> None:
    with pytest.raises(NodeConfigError, match="At least one mapping entry should be specified!"):
        engine.build(RELATED, {"relationsQuery": CONTAINED_IN_ASSET, "dataToFetch": "FIELDS", "dataMapping": {},
                               "fetchTo": "DATA"})
    with pytest.raises(NodeConfigError, match="DataToFetch property cannot be null"):
        engine.build(RELATED, {"relationsQuery": CONTAINED_IN_ASSET, "dataMapping": {"a": "b"}, "fetchTo": "DATA"})
    with pytest.raises(NodeConfigError, match="direction"):
        engine.build(RELATED, {"relationsQuery": {"direction": "UP"}, "dataToFetch": "FIELDS",
                               "dataMapping": {"a": "b"}, "fetchTo": "DATA"})


# --- customer attributes ------------------------------------------------------------------------
async def test_customer_attributes_of_the_originators_customer(engine: EngineHarness) -> None:
    client = engine.client
    cust, dev = entities.customer(client), entities.device(client)
    entities.assign(client, dev, cust)
    entities.save_attributes(client, cust, "SERVER_SCOPE", {"alarmThreshold": 30})
    entities.save_timeseries(client, cust, {"ts": 1000, "values": {"load": 0.5}})
    node = engine.build(CUSTOMER_ATTRIBUTES, {"dataMapping": {"alarmThreshold": "threshold"},
                                              "dataToFetch": "ATTRIBUTES", "fetchTo": "METADATA"})
    for originator in (dev, cust):  # a customer is its own customer
        [(_, out)] = await engine.run(node, engine.msg(originator, {}))
        assert out.metadata == {"threshold": "30"}
    latest = engine.build(CUSTOMER_ATTRIBUTES, {"dataMapping": {"load": "customerLoad"},
                                                "dataToFetch": "LATEST_TELEMETRY", "fetchTo": "DATA"})
    [(_, out)] = await engine.run(latest, engine.msg(dev, {}))
    assert out.data == {"customerLoad": 0.5}
    old = engine.build(CUSTOMER_ATTRIBUTES, {"attrMapping": {"alarmThreshold": "limit"}, "telemetry": False})
    [(_, out)] = await engine.run(old, engine.msg(dev, {}))
    assert out.metadata == {"limit": "30"}


async def test_customer_attributes_need_a_customer_of_this_tenant(engine: EngineHarness,
                                                                  tenant: httpx.Client) -> None:
    node = engine.build(CUSTOMER_ATTRIBUTES, {"dataMapping": {"alarmThreshold": "threshold"},
                                              "dataToFetch": "ATTRIBUTES", "fetchTo": "METADATA"})
    with pytest.raises(ValueError, match="Originator is not assigned to any customer"):
        await engine.run(node, engine.msg(entities.device(engine.client), {}))
    theirs = entities.device(tenant)
    with pytest.raises(LookupError, match="Originator not found"):
        await engine.run(node, engine.msg(theirs, {}))
    with pytest.raises(NodeConfigError, match="Only ATTRIBUTES and LATEST_TELEMETRY values supported!"):
        engine.build(CUSTOMER_ATTRIBUTES, {"dataMapping": {"a": "b"}, "dataToFetch": "FIELDS", "fetchTo": "DATA"})


# --- customer and tenant details ----------------------------------------------------------------
async def test_customer_details_into_metadata_and_body(engine: EngineHarness) -> None:
    client = engine.client
    cust = entities.customer(client, city="Kyiv", email="ops@example.com", phone="+380441234567",
                             additionalInfo={"description": "Key account"})
    title = client.get(f"/api/customer/{cust.id}").json()["title"]
    dev = entities.device(client)
    entities.assign(client, dev, cust)
    node = engine.build(CUSTOMER_DETAILS, {"detailsList": ["ID", "TITLE", "CITY", "EMAIL", "ZIP", "ADDITIONAL_INFO"],
                                           "fetchTo": "METADATA"})
    [(_, out)] = await engine.run(node, engine.msg(dev, {}, ts="1"))
    assert out.metadata == {"ts": "1", "customer_id": str(cust.id), "customer_title": title, "customer_city": "Kyiv",
                            "customer_email": "ops@example.com", "customer_additionalInfo": "Key account"}
    to_body = engine.build(CUSTOMER_DETAILS, {"detailsList": ["TITLE", "PHONE"], "fetchTo": "DATA"})
    [(_, out)] = await engine.run(to_body, engine.msg(dev, {"t": 1}))
    assert out.data == {"t": 1, "customer_title": title, "customer_phone": "+380441234567"}
    old = engine.build(CUSTOMER_DETAILS, {"detailsList": ["CITY"], "addToMetadata": True})
    [(_, out)] = await engine.run(old, engine.msg(dev, {}))
    assert out.metadata == {"customer_city": "Kyiv"}


async def test_customer_details_of_unassigned_foreign_or_unsupported_originators(
        engine: EngineHarness, tenant: httpx.Client) -> None:
    node = engine.build(CUSTOMER_DETAILS, {"detailsList": ["TITLE"], "fetchTo": "METADATA"})
    name = f"lonely {uuid.uuid4().hex[:8]}"
    with pytest.raises(RuntimeError, match=f"Device with name '{name}' is not assigned to Customer!"):
        await engine.run(node, engine.msg(entities.device(engine.client, name), {}))
    with pytest.raises(LookupError, match="Entity with entityType 'CUSTOMER' is not supported"):
        await engine.run(node, engine.msg(entities.customer(engine.client), {}))
    theirs = entities.device(tenant)  # exists, but not for this tenant: nothing is added
    [(relation, out)] = await engine.run(node, engine.msg(theirs, {}, ts="1"))
    assert relation == "Success" and out.metadata == {"ts": "1"}
    with pytest.raises(NodeConfigError, match="At least one entity detail should be selected!"):
        engine.build(CUSTOMER_DETAILS)


async def test_tenant_details(engine: EngineHarness) -> None:
    title = await engine.db.fetchval("SELECT title FROM tenant WHERE id = $1", engine.tenant_id)
    node = engine.build(TENANT_DETAILS, {"detailsList": ["ID", "TITLE", "ZIP"], "fetchTo": "METADATA"})
    [(_, out)] = await engine.run(node, engine.msg(engine.device(), {}))
    assert out.metadata == {"tenant_id": str(engine.tenant_id), "tenant_title": title}


# --- originator fields --------------------------------------------------------------------------
async def test_originator_fields(engine: EngineHarness) -> None:
    client = engine.client
    labelled = entities.device(client, label="Lobby", additionalInfo={"description": "by the door"})
    shown = client.get(f"/api/device/{labelled.id}").json()
    node = engine.build(FIELDS, {"dataMapping": {
        "name": "deviceName", "type": "deviceType", "label": "${labelKey}", "additionalInfo.description": "desc",
        "createdTime": "created", "id": "deviceId", "missing": "nothing"}, "fetchTo": "METADATA"})
    [(_, out)] = await engine.run(node, engine.msg(labelled, {}, labelKey="deviceLabel"))
    assert out.metadata == {"labelKey": "deviceLabel", "deviceName": shown["name"], "deviceType": shown["type"],
                            "deviceLabel": "Lobby", "desc": "by the door", "created": str(shown["createdTime"]),
                            "deviceId": str(labelled.id)}
    unlabelled = entities.device(client)
    mapping = {"label": "deviceLabel", "name": "deviceName"}
    [(_, out)] = await engine.run(engine.build(FIELDS, {"dataMapping": mapping, "fetchTo": "DATA"}),
                                  engine.msg(unlabelled, {}))
    assert out.data["deviceLabel"] == "null"  # as ThingsBoard writes an absent field
    skip_nulls = engine.build(FIELDS, {"dataMapping": mapping, "fetchTo": "DATA", "ignoreNullStrings": True})
    [(_, out)] = await engine.run(skip_nulls, engine.msg(unlabelled, {}))
    assert set(out.data) == {"deviceName"}


async def test_originator_fields_of_another_tenants_entity_are_not_read(engine: EngineHarness,
                                                                        tenant: httpx.Client) -> None:
    node = engine.build(FIELDS)
    with pytest.raises(LookupError, match="Entity not found!"):
        await engine.run(node, engine.msg(entities.device(tenant), {}))
    with pytest.raises(ValueError, match="Unexpected originator EntityType: DASHBOARD"):
        await engine.run(node, engine.msg(EntityId("DASHBOARD", uuid.uuid4()), {}))


# --- in a chain, for a device's own messages ------------------------------------------------------
def test_a_device_message_is_enriched_from_its_live_attributes(other_tenant: httpx.Client, mqtt_port: int) -> None:
    """Over MQTT the originator's attributes come from its device actor: what REST set just before
    is what the chain sees."""
    from tests.rules.test_engine_e2e import make_device, mqtt, node, publish, save_root_chain, series

    nodes = [node("metadata.TbGetAttributesNode", "enrich", {
                 "sharedAttributeNames": ["target"], "serverAttributeNames": ["threshold"], "fetchTo": "DATA",
                 "tellFailureIfAbsent": True}),
             node("transform.TbRenameKeysNode", "rename", {"renameIn": "DATA",
                                                           "renameKeysMapping": {"ss_threshold": "threshold"}}),
             node("telemetry.TbMsgTimeseriesNode", "save", {})]
    save_root_chain(other_tenant, nodes, [{"fromIndex": 0, "toIndex": 1, "type": "Success"},
                                          {"fromIndex": 1, "toIndex": 2, "type": "Success"}])
    device = make_device(other_tenant)
    dev = EntityId("DEVICE", uuid.UUID(device["id"]))
    entities.save_attributes(other_tenant, dev, "SERVER_SCOPE", {"threshold": 25})
    entities.save_attributes(other_tenant, dev, "SHARED_SCOPE", {"target": 21.5})
    client = mqtt(mqtt_port, device["token"])
    try:
        publish(client, "v1/devices/me/telemetry", {"t": 1})
        entities.save_attributes(other_tenant, dev, "SERVER_SCOPE", {"threshold": 26})
        publish(client, "v1/devices/me/telemetry", {"t": 2})
        assert series(other_tenant, device["id"], "threshold") == ["25", "26"]
        assert series(other_tenant, device["id"], "shared_target") == ["21.5", "21.5"]
    finally:
        client.loop_stop()
        client.disconnect()
