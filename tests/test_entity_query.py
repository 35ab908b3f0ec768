"""POST /api/entitiesQuery/find and /count: ThingsBoard's entity data query over REST.

The module makes its own fleet (devices of a device type of their own, an asset, an entity view)
with telemetry and attributes written through the REST API, then queries it as a tenant
administrator, as customer users and as another tenant.
"""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import assert_tb_error, unique
from tests.tenancy import customer_id

FIND = "/api/entitiesQuery/find"
COUNT = "/api/entitiesQuery/count"


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    return response.json() if response.content else None  # saves answer an empty 200, as ThingsBoard's


@pytest.fixture(scope="module")
def fleet(tenant: httpx.Client) -> dict[str, Any]:
    """Four devices of a type of their own: temperatures 20.5, 21, 22.5, 30 (a long), floor
    attributes 1..4, ``ok`` true on the even ones; the second and fourth belong to Customer A;
    an asset that contains the first two; an entity view of the first."""
    device_type = unique("eq-type").replace(" ", "-")
    prefix = unique("EqDev").replace(" ", "-")
    customer_a = customer_id(tenant, "Customer A")
    temperatures = [20.5, 21, 22.5, 30]
    devices = []
    for i, temperature in enumerate(temperatures):
        device = ok(tenant.post("/api/device", json={
            "name": f"{prefix}-{i}", "type": device_type, "label": f"Room {i}",
            "additionalInfo": {"description": f"device {i}"}}))
        path = f"/api/plugins/telemetry/DEVICE/{device['id']['id']}"
        ok(tenant.post(f"{path}/timeseries/ANY", json={"temperature": temperature}))
        ok(tenant.post(f"{path}/attributes/SERVER_SCOPE", json={"floor": i + 1, "ok": i % 2 == 0,
                                                                "zone": f"zone-{'ab'[i % 2]}"}))
        if i % 2:
            ok(tenant.post(f"/api/customer/{customer_a}/device/{device['id']['id']}"))
        devices.append(device)
    asset = ok(tenant.post("/api/asset", json={"name": unique("EqAsset"), "type": unique("eq-asset-type")}))
    for device in devices[:2]:
        ok(tenant.post("/api/relation", json={"from": asset["id"], "to": device["id"], "type": "Contains"}))
    view = ok(tenant.post("/api/entityView", json={
        "name": unique("EqView"), "type": unique("eq-view-type"), "entityId": devices[0]["id"],
        "keys": {"timeseries": [], "attributes": {"cs": [], "ss": [], "sh": []}}}))
    return {"type": device_type, "prefix": prefix, "devices": devices, "asset": asset, "view": view,
            "ids": [d["id"]["id"] for d in devices]}


def device_type_filter(fleet: dict[str, Any]) -> dict[str, Any]:
    return {"type": "deviceType", "deviceTypes": [fleet["type"]], "deviceNameFilter": ""}


def query(entity_filter: dict[str, Any], page_size: int = 10, page: int = 0, **extra: Any) -> dict[str, Any]:
    page_link = {"pageSize": page_size, "page": page}
    for name in ("textSearch", "sortOrder"):
        if name in extra:
            page_link[name] = extra.pop(name)
    return {"entityFilter": entity_filter, "pageLink": page_link, **extra}


def field(key: str) -> dict[str, str]:
    return {"type": "ENTITY_FIELD", "key": key}


def ids(page: dict[str, Any]) -> list[str]:
    return [item["entityId"]["id"] for item in page["data"]]


def numeric(key: dict[str, str], operation: str, value: float) -> dict[str, Any]:
    return {"key": key, "valueType": "NUMERIC",
            "predicate": {"type": "NUMERIC", "operation": operation, "value": {"defaultValue": value}}}


def string(key: dict[str, str], operation: str, value: str, ignore_case: bool = False) -> dict[str, Any]:
    return {"key": key, "valueType": "STRING", "predicate": {
        "type": "STRING", "operation": operation, "value": {"defaultValue": value}, "ignoreCase": ignore_case}}


TEMPERATURE = {"type": "TIME_SERIES", "key": "temperature"}
FLOOR = {"type": "SERVER_ATTRIBUTE", "key": "floor"}


# --- fields and latest values ------------------------------------------------------------------------
def test_entity_fields_and_latest_values_come_back_as_strings(tenant, fleet):
    body = query(device_type_filter(fleet), sortOrder={"key": field("name"), "direction": "ASC"},
                 entityFields=[field("name"), field("type"), field("label"), field("createdTime"),
                               field("additionalInfo"), field("email")],
                 latestValues=[TEMPERATURE, FLOOR, {"type": "ATTRIBUTE", "key": "ok"},
                               {"type": "SHARED_ATTRIBUTE", "key": "floor"},
                               {"type": "CLIENT_ATTRIBUTE", "key": "never-written"}])
    page = ok(tenant.post(FIND, json=body))
    assert page["totalElements"] == 4 and page["totalPages"] == 1 and page["hasNext"] is False
    assert ids(page) == fleet["ids"]
    first, last = page["data"][0], page["data"][3]
    assert first["entityId"] == fleet["devices"][0]["id"] and first["timeseries"] == {}
    fields = first["latest"]["ENTITY_FIELD"]
    assert fields["name"]["value"] == f"{fleet['prefix']}-0"
    assert fields["type"]["value"] == fleet["type"] and fields["label"]["value"] == "Room 0"
    assert fields["createdTime"]["value"] == str(fleet["devices"][0]["createdTime"])
    assert fields["additionalInfo"]["value"] == '{"description":"device 0"}'
    assert fields["email"]["value"] == ""  # not a field of devices, as ThingsBoard answers it
    temperature = first["latest"]["TIME_SERIES"]["temperature"]
    assert temperature["value"] == "20.5" and temperature["ts"] > 0
    assert last["latest"]["TIME_SERIES"]["temperature"]["value"] == "30"
    assert first["latest"]["SERVER_ATTRIBUTE"]["floor"]["value"] == "1"
    assert first["latest"]["ATTRIBUTE"]["ok"]["value"] == "true"
    assert last["latest"]["ATTRIBUTE"]["ok"]["value"] == "false"
    # a key that has no value in that scope: ts 0 and an empty string
    assert first["latest"]["SHARED_ATTRIBUTE"]["floor"] == {"ts": 0, "value": ""}
    assert first["latest"]["CLIENT_ATTRIBUTE"]["never-written"] == {"ts": 0, "value": ""}


# --- entity filters ----------------------------------------------------------------------------------
def test_single_entity_and_entity_list(tenant, fleet):
    single = {"type": "singleEntity", "singleEntity": fleet["devices"][2]["id"]}
    assert ids(ok(tenant.post(FIND, json=query(single)))) == [fleet["ids"][2]]
    listed = {"type": "entityList", "entityType": "DEVICE", "entityList": [*fleet["ids"][1:3], str(uuid.uuid4())]}
    assert sorted(ids(ok(tenant.post(FIND, json=query(listed))))) == sorted(fleet["ids"][1:3])
    assert ok(tenant.post(COUNT, json={"entityFilter": listed})) == 2


def test_entity_name_is_a_case_insensitive_prefix(tenant, fleet):
    by_name = {"type": "entityName", "entityType": "DEVICE", "entityNameFilter": fleet["prefix"].lower()}
    assert sorted(ids(ok(tenant.post(FIND, json=query(by_name))))) == sorted(fleet["ids"])
    middle = {"type": "entityName", "entityType": "DEVICE", "entityNameFilter": fleet["prefix"][3:]}
    assert ok(tenant.post(COUNT, json={"entityFilter": middle})) == 0


def test_entity_type_device_type_asset_type_and_entity_view_type(tenant, fleet):
    every_device = ok(tenant.post(FIND, json=query({"type": "entityType", "entityType": "DEVICE"}, page_size=10000)))
    assert set(fleet["ids"]) <= set(ids(every_device))
    assert ok(tenant.post(COUNT, json={"entityFilter": {"type": "entityType", "entityType": "DEVICE"}})) == \
        every_device["totalElements"]
    # the older single deviceType and a name prefix
    typed = {"type": "deviceType", "deviceType": fleet["type"], "deviceNameFilter": f"{fleet['prefix']}-3"}
    assert ids(ok(tenant.post(FIND, json=query(typed)))) == [fleet["ids"][3]]
    asset = {"type": "assetType", "assetTypes": [fleet["asset"]["type"]]}
    assert ids(ok(tenant.post(FIND, json=query(asset)))) == [fleet["asset"]["id"]["id"]]
    view = {"type": "entityViewType", "entityViewTypes": [fleet["view"]["type"]], "entityViewNameFilter": ""}
    page = ok(tenant.post(FIND, json=query(view, entityFields=[field("name")])))
    assert ids(page) == [fleet["view"]["id"]["id"]]
    assert page["data"][0]["entityId"]["entityType"] == "ENTITY_VIEW"
    assert page["data"][0]["latest"]["ENTITY_FIELD"]["name"]["value"] == fleet["view"]["name"]


def test_relations_query_walks_from_the_root(tenant, fleet):
    relations = {"type": "relationsQuery", "rootEntity": fleet["asset"]["id"], "direction": "FROM", "maxLevel": 1,
                 "filters": [{"relationType": "Contains", "entityTypes": ["DEVICE"]}]}
    page = ok(tenant.post(FIND, json=query(relations, entityFields=[field("name")])))
    assert sorted(ids(page)) == sorted(fleet["ids"][:2])
    assert {d["entityId"]["entityType"] for d in page["data"]} == {"DEVICE"}
    upward = {"type": "relationsQuery", "rootEntity": fleet["devices"][0]["id"], "direction": "TO", "maxLevel": 1,
              "filters": [{"relationType": "Contains", "entityTypes": ["ASSET"]}]}
    assert ids(ok(tenant.post(FIND, json=query(upward)))) == [fleet["asset"]["id"]["id"]]
    assert ok(tenant.post(COUNT, json={"entityFilter": {**relations, "filters": [
        {"relationType": "Manages", "entityTypes": []}]}})) == 0


# --- key filters ---------------------------------------------------------------------------------------
def test_numeric_string_boolean_and_complex_key_filters(tenant, fleet):
    def found(*key_filters: dict[str, Any]) -> list[str]:
        body = query(device_type_filter(fleet), keyFilters=list(key_filters),
                     sortOrder={"key": field("name"), "direction": "ASC"})
        page = ok(tenant.post(FIND, json=body))
        assert ok(tenant.post(COUNT, json={"entityFilter": body["entityFilter"], "keyFilters": list(key_filters)})) \
            == page["totalElements"]
        return ids(page)

    devices = fleet["ids"]
    assert found(numeric(TEMPERATURE, "GREATER", 21)) == [devices[2], devices[3]]  # a double and a long
    assert found(numeric(TEMPERATURE, "LESS_OR_EQUAL", 21)) == [devices[0], devices[1]]
    assert found(numeric(FLOOR, "EQUAL", 3)) == [devices[2]]
    assert found(numeric(TEMPERATURE, "GREATER", 20), numeric(FLOOR, "NOT_EQUAL", 1)) == devices[1:]
    assert found(string(field("name"), "ENDS_WITH", "-1")) == [devices[1]]
    assert found(string(field("label"), "CONTAINS", "ROOM", ignore_case=True)) == devices
    assert found(string(field("label"), "CONTAINS", "ROOM")) == []
    zone_b = [devices[1], devices[3]]
    assert found(string({"type": "SERVER_ATTRIBUTE", "key": "zone"}, "IN", "zone-b, zone-x")) == zone_b
    assert found(string({"type": "ATTRIBUTE", "key": "zone"}, "NOT_EQUAL", "zone-a")) == zone_b
    assert found(numeric(field("createdTime"), "GREATER_OR_EQUAL", fleet["devices"][2]["createdTime"])) == devices[2:]
    assert found({"key": {"type": "ATTRIBUTE", "key": "ok"}, "valueType": "BOOLEAN",
                  "predicate": {"type": "BOOLEAN", "operation": "EQUAL", "value": {"defaultValue": True}}}) == \
        [devices[0], devices[2]]
    either = {"key": TEMPERATURE, "valueType": "NUMERIC", "predicate": {
        "type": "COMPLEX", "operation": "OR", "predicates": [
            {"type": "NUMERIC", "operation": "LESS", "value": {"defaultValue": 21}},
            {"type": "NUMERIC", "operation": "GREATER", "value": {"defaultValue": 25}}]}}
    assert found(either) == [devices[0], devices[3]]
    # an empty string filters nothing; a key nobody has filters everything out
    assert found(string(field("name"), "EQUAL", "")) == devices
    assert found(numeric({"type": "TIME_SERIES", "key": "no-such-key"}, "GREATER", 0)) == []


# --- paging, sorting, text search ------------------------------------------------------------------------
def test_paging_and_sorting_by_fields_and_latest_values(tenant, fleet):
    devices = fleet["ids"]
    by_name_desc = {"key": field("name"), "direction": "DESC"}
    first = ok(tenant.post(FIND, json=query(device_type_filter(fleet), page_size=3, sortOrder=by_name_desc)))
    assert ids(first) == devices[::-1][:3]
    assert (first["totalElements"], first["totalPages"], first["hasNext"]) == (4, 2, True)
    second = ok(tenant.post(FIND, json=query(device_type_filter(fleet), page_size=3, page=1, sortOrder=by_name_desc)))
    assert ids(second) == [devices[0]] and second["hasNext"] is False
    beyond = ok(tenant.post(FIND, json=query(device_type_filter(fleet), page_size=3, page=7)))
    assert beyond == {"data": [], "totalPages": 2, "totalElements": 4, "hasNext": False}
    # by a latest value that is not selected: numbers as numbers (30 after 22.5)
    by_temperature = ok(tenant.post(FIND, json=query(device_type_filter(fleet), sortOrder={
        "key": TEMPERATURE, "direction": "DESC"})))
    assert ids(by_temperature) == devices[::-1]
    assert by_temperature["data"][0]["latest"] == {}
    by_created = ok(tenant.post(FIND, json=query(device_type_filter(fleet), sortOrder={
        "key": field("createdTime"), "direction": "ASC"})))
    assert ids(by_created) == devices


def test_text_search_looks_in_selected_fields_and_values(tenant, fleet):
    def searched(text: str, **extra: Any) -> list[str]:
        return sorted(ids(ok(tenant.post(FIND, json=query(device_type_filter(fleet), textSearch=text, **extra)))))

    devices = fleet["ids"]
    assert searched(f"{fleet['prefix']}-2".upper(), entityFields=[field("name")]) == [devices[2]]
    assert searched("22.5", entityFields=[field("name")], latestValues=[TEMPERATURE]) == [devices[2]]
    assert searched("22.5", entityFields=[field("name")]) == []
    # additionalInfo is not searched; with nothing selected to search in, the search is not applied
    assert searched("device 1", entityFields=[field("name"), field("additionalInfo")]) == []
    assert searched("no such text") == sorted(devices)


# --- permissions and isolation -----------------------------------------------------------------------------
def test_customer_users_see_only_their_customers_entities(customer_a, customer_b, fleet):
    owned = [fleet["ids"][1], fleet["ids"][3]]
    page = ok(customer_a.post(FIND, json=query(device_type_filter(fleet), entityFields=[field("name")],
                                               latestValues=[TEMPERATURE])))
    assert sorted(ids(page)) == sorted(owned)
    assert ok(customer_a.post(COUNT, json={"entityFilter": device_type_filter(fleet)})) == 2
    single = {"type": "singleEntity", "singleEntity": fleet["devices"][0]["id"]}
    assert ok(customer_a.post(FIND, json=query(single)))["data"] == []
    assert ok(customer_b.post(COUNT, json={"entityFilter": device_type_filter(fleet)})) == 0
    relations = {"type": "relationsQuery", "rootEntity": fleet["asset"]["id"], "direction": "FROM", "maxLevel": 1,
                 "filters": [{"relationType": "Contains", "entityTypes": ["DEVICE"]}]}
    assert ids(ok(customer_a.post(FIND, json=query(relations)))) == [fleet["ids"][1]]
    customers = ok(customer_a.post(FIND, json=query({"type": "entityType", "entityType": "CUSTOMER"},
                                                    entityFields=[field("title")])))
    assert [c["latest"]["ENTITY_FIELD"]["title"]["value"] for c in customers["data"]] == ["Customer A"]
    assert ok(customer_a.post(COUNT, json={"entityFilter": {"type": "entityType", "entityType": "TENANT"}})) == 0


def test_another_tenant_finds_nothing_of_this_tenant(other_tenant, fleet):
    for entity_filter in (device_type_filter(fleet),
                          {"type": "singleEntity", "singleEntity": fleet["devices"][0]["id"]},
                          {"type": "entityList", "entityType": "DEVICE", "entityList": fleet["ids"]},
                          {"type": "entityName", "entityType": "DEVICE", "entityNameFilter": fleet["prefix"]},
                          {"type": "relationsQuery", "rootEntity": fleet["asset"]["id"], "direction": "FROM"}):
        page = ok(other_tenant.post(FIND, json=query(entity_filter, latestValues=[TEMPERATURE])))
        assert page["data"] == [] and page["totalElements"] == 0, entity_filter
        assert ok(other_tenant.post(COUNT, json={"entityFilter": entity_filter})) == 0
    every_device = ok(other_tenant.post(FIND, json=query({"type": "entityType", "entityType": "DEVICE"},
                                                         page_size=10000)))
    assert not set(fleet["ids"]) & set(ids(every_device))


def test_system_administrator_may_not_query_tenant_entities(sysadmin, anonymous, fleet):
    assert_tb_error(sysadmin.post(FIND, json=query(device_type_filter(fleet))), 403, 20)
    assert_tb_error(sysadmin.post(COUNT, json={"entityFilter": device_type_filter(fleet)}), 403, 20)
    assert_tb_error(anonymous.post(FIND, json=query(device_type_filter(fleet))), 401, 10)


# --- bad input ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("body, fragment", [
    ({"pageLink": {"pageSize": 10, "page": 0}}, "entityFilter"),
    ({"entityFilter": {"type": "entityType", "entityType": "DEVICE"}}, "pageLink"),
    ({"entityFilter": {"type": "nope"}, "pageLink": {"pageSize": 10, "page": 0}}, "nope"),
    ({"entityFilter": {"type": "entityType", "entityType": "WIDGET"}, "pageLink": {"pageSize": 10, "page": 0}},
     "WIDGET"),
    ({"entityFilter": {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": "not-a-uuid"}},
      "pageLink": {"pageSize": 10, "page": 0}}, "UUID"),
    ({"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 0, "page": 0}},
     "pageSize"),
    ({"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "page": -1}},
     "page"),
    ({"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "page": 10 ** 20}},
     "page"),
    ({"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "page": 0},
      "keyFilters": [numeric(TEMPERATURE, "GREATER", 10 ** 400)]}, "number"),
    ({"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "page": 0},
      "latestValues": [{"type": "SOMETHING", "key": "x"}]}, "SOMETHING"),
    ({"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "page": 0},
      "keyFilters": [numeric(TEMPERATURE, "BIGGER", 1)]}, "BIGGER"),
    ({"entityFilter": {"type": "entityType", "entityType": "DEVICE"}, "pageLink": {"pageSize": 10, "page": 0},
      "keyFilters": [numeric(TEMPERATURE, "GREATER", "warm")]}, "number"),
    ({"entityFilter": {"type": "entityType", "entityType": "DEVICE"},
      "pageLink": {"pageSize": 10, "page": 0, "sortOrder": {"key": field("name"), "direction": "UP"}}}, "direction"),
])
def test_bad_queries_get_thingsboards_error_body(tenant, body, fragment):
    error = assert_tb_error(tenant.post(FIND, json=body), 400, 31)
    assert fragment in error["message"]


def test_bad_bodies_get_thingsboards_error_body(tenant):
    assert_tb_error(tenant.post(FIND, content=b"{not json", headers={"Content-Type": "application/json"}), 400)
    assert_tb_error(tenant.post(FIND, json=[1, 2]), 400)
    assert_tb_error(tenant.post(COUNT, json={"entityFilter": {"type": "entityList", "entityType": "DEVICE",
                                                              "entityList": "x"}}), 400, 31)
