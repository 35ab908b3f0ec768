"""/api/deviceProfile and friends: a tenant's device profiles, the default one, and who sees what."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import httpx
import pytest

from tests.conftest import assert_tb_error, unique
from tests.test_devices import create_device

DEFAULT_PROFILE_DATA = {"configuration": {"type": "DEFAULT"}, "transportConfiguration": {"type": "DEFAULT"},
                        "provisionConfiguration": {"type": "DISABLED", "provisionDeviceSecret": None},
                        "alarms": None}
INFO_KEYS = {"id", "tenantId", "name", "image", "defaultDashboardId", "type", "transportType"}


def create_profile(client: httpx.Client, name: str | None = None, **fields) -> dict:
    response = client.post("/api/deviceProfile", json={"name": name or unique("Profile"), **fields})
    assert response.status_code == 200, response.text
    return response.json()


@pytest.fixture
def restore_default(tenant: httpx.Client) -> Iterator[dict]:
    """The default profile as it was; made default again after the test."""
    original = tenant.get("/api/deviceProfile/default").json()
    yield original
    assert tenant.post(f"/api/deviceProfile/{original['id']['id']}/default").status_code == 200


def test_new_profile_gets_thingsboard_defaults(tenant):
    profile = create_profile(tenant, description="made by a test")
    assert profile["id"]["entityType"] == "DEVICE_PROFILE"
    assert profile["tenantId"]["entityType"] == "TENANT"
    assert (profile["type"], profile["transportType"], profile["provisionType"]) == ("DEFAULT", "DEFAULT", "DISABLED")
    assert profile["default"] is False and profile["version"] == 1
    assert profile["profileData"] == DEFAULT_PROFILE_DATA
    assert profile["description"] == "made by a test"
    assert tenant.get(f"/api/deviceProfile/{profile['id']['id']}").json() == profile


def test_transport_type_shapes_the_profile_data(tenant):
    mqtt = create_profile(tenant, transportType="MQTT")
    assert mqtt["profileData"]["transportConfiguration"] == {"type": "MQTT"}
    data = {**DEFAULT_PROFILE_DATA, "transportConfiguration": {"type": "MQTT", "deviceTelemetryTopic": "v1/t"},
            "alarms": [{"id": "a1", "alarmType": "High temperature"}]}
    custom = create_profile(tenant, transportType="MQTT", profileData=data)
    assert custom["profileData"] == data
    mismatched = tenant.post("/api/deviceProfile", json={"name": unique("P"), "transportType": "COAP",
                                                         "profileData": data})
    assert_tb_error(mismatched, 400, 31)
    assert_tb_error(tenant.post("/api/deviceProfile", json={"name": unique("P"), "transportType": "ZIGBEE"}), 400)
    assert_tb_error(tenant.post("/api/deviceProfile", json={"name": unique("P"), "type": "OTHER"}), 400)
    assert_tb_error(tenant.post("/api/deviceProfile", json={"name": unique("P"), "profileData": "x"}), 400)


def test_bad_profile_bodies_are_400(tenant):
    existing = create_profile(tenant)
    body = assert_tb_error(tenant.post("/api/deviceProfile", json={"name": existing["name"]}), 400, 31)
    assert body["message"] == "Device profile with such name already exists!"
    assert_tb_error(tenant.post("/api/deviceProfile", json={"name": "p" * 256}), 400)
    assert_tb_error(tenant.post("/api/deviceProfile", json={"description": "no name"}), 400)
    missing_chain = {"entityType": "RULE_CHAIN", "id": str(uuid.uuid4())}
    assert_tb_error(tenant.post("/api/deviceProfile", json={"name": unique("P"), "defaultRuleChainId": missing_chain}),
                    400, 31)
    missing_dashboard = {"entityType": "DASHBOARD", "id": str(uuid.uuid4())}
    assert_tb_error(tenant.post("/api/deviceProfile", json={"name": unique("P"),
                                                            "defaultDashboardId": missing_dashboard}), 400, 31)
    key = f"key-{uuid.uuid4().hex}"
    create_profile(tenant, provisionType="ALLOW_CREATE_NEW_DEVICES", provisionDeviceKey=key)
    duplicate_key = tenant.post("/api/deviceProfile", json={"name": unique("P"), "provisionDeviceKey": key,
                                                            "provisionType": "ALLOW_CREATE_NEW_DEVICES"})
    assert assert_tb_error(duplicate_key, 400, 31)["message"] == \
        "Device profile with such provision device key already exists!"


def test_get_by_bad_or_unknown_id(tenant):
    assert_tb_error(tenant.get("/api/deviceProfile/nope"), 400, 31)
    assert_tb_error(tenant.get(f"/api/deviceProfile/{uuid.uuid4()}"), 404, 32)
    assert_tb_error(tenant.get(f"/api/deviceProfileInfo/{uuid.uuid4()}"), 404, 32)
    assert_tb_error(tenant.delete(f"/api/deviceProfile/{uuid.uuid4()}"), 404, 32)
    assert_tb_error(tenant.post(f"/api/deviceProfile/{uuid.uuid4()}/default"), 404, 32)


def test_update_renames_and_devices_follow(tenant):
    profile = create_profile(tenant)
    device = create_device(tenant, deviceProfileId=profile["id"])
    assert device["type"] == profile["name"]
    new_name = unique("Renamed profile")
    response = tenant.post("/api/deviceProfile", json={**profile, "name": new_name, "description": "changed"})
    assert response.status_code == 200, response.text
    assert response.json()["version"] == profile["version"] + 1 and response.json()["name"] == new_name
    assert tenant.get(f"/api/device/{device['id']['id']}").json()["type"] == new_name
    assert_tb_error(tenant.post("/api/deviceProfile", json={**profile, "name": unique("Stale")}), 409, 35)
    transport = tenant.post("/api/deviceProfile", json={**response.json(), "transportType": "MQTT",
                                                        "profileData": None})
    assert assert_tb_error(transport, 400, 31)["message"] == \
        "Changing transport type for device profile with existing devices is prohibited!"


def test_one_default_profile_per_tenant(tenant, restore_default):
    candidate = create_profile(tenant)
    response = tenant.post(f"/api/deviceProfile/{candidate['id']['id']}/default")
    assert response.status_code == 200, response.text
    assert response.json()["default"] is True
    assert tenant.get("/api/deviceProfile/default").json()["id"] == candidate["id"]
    assert tenant.get("/api/deviceProfileInfo/default").json()["id"] == candidate["id"]
    assert tenant.get(f"/api/deviceProfile/{restore_default['id']['id']}").json()["default"] is False
    defaults = [p for p in tenant.get("/api/deviceProfiles", params={"pageSize": 1000, "page": 0}).json()["data"]
                if p["default"]]
    assert [p["id"] for p in defaults] == [candidate["id"]]
    # a device created without profile now lands on the new default
    assert create_device(tenant)["deviceProfileId"] == candidate["id"]
    # saving a profile cannot make it default by itself
    other = create_profile(tenant, default=True)
    assert other["default"] is False


def test_delete_rules(tenant, restore_default):
    assert_tb_error(tenant.delete(f"/api/deviceProfile/{restore_default['id']['id']}"), 400, 31)
    used = create_profile(tenant)
    create_device(tenant, deviceProfileId=used["id"])
    body = assert_tb_error(tenant.delete(f"/api/deviceProfile/{used['id']['id']}"), 400, 31)
    assert body["message"] == "The device profile referenced by the devices cannot be deleted!"
    unused = create_profile(tenant)
    assert tenant.delete(f"/api/deviceProfile/{unused['id']['id']}").status_code == 200
    assert_tb_error(tenant.get(f"/api/deviceProfile/{unused['id']['id']}"), 404, 32)


def test_pages_of_profiles_and_infos(tenant):
    prefix = unique("Listed")
    for suffix, transport in (("b", "MQTT"), ("a", "DEFAULT"), ("c", "MQTT")):
        create_profile(tenant, name=f"{prefix} {suffix}", transportType=transport)
    query = {"pageSize": 2, "page": 0, "textSearch": prefix, "sortProperty": "name", "sortOrder": "ASC"}
    page = tenant.get("/api/deviceProfiles", params=query).json()
    assert [p["name"][-1] for p in page["data"]] == ["a", "b"]
    assert (page["totalElements"], page["totalPages"], page["hasNext"]) == (3, 2, True)
    infos = tenant.get("/api/deviceProfileInfos", params={**query, "pageSize": 10}).json()
    assert [p["name"][-1] for p in infos["data"]] == ["a", "b", "c"]
    assert all(set(p) == INFO_KEYS for p in infos["data"])
    mqtt = tenant.get("/api/deviceProfileInfos", params={**query, "pageSize": 10, "transportType": "MQTT"}).json()
    assert [p["name"][-1] for p in mqtt["data"]] == ["b", "c"]
    desc = tenant.get("/api/deviceProfiles", params={**query, "pageSize": 10, "sortOrder": "DESC"}).json()
    assert [p["name"][-1] for p in desc["data"]] == ["c", "b", "a"]
    assert_tb_error(tenant.get("/api/deviceProfiles", params={**query, "sortProperty": "secret"}), 400, 31)
    assert_tb_error(tenant.get("/api/deviceProfileInfos", params={**query, "transportType": "PIGEON"}), 400)
    assert_tb_error(tenant.get("/api/deviceProfiles", params={"pageSize": -1, "page": 0}), 400)
    ids = ",".join(p["id"]["id"] for p in infos["data"][:2])
    listed = tenant.get("/api/deviceProfileInfos/list", params={"deviceProfileIds": ids}).json()
    assert [p["name"][-1] for p in listed] == ["a", "b"]


def test_profile_names_and_active_only(tenant):
    idle = create_profile(tenant)
    names = tenant.get("/api/deviceProfile/names").json()
    assert {"id": idle["id"], "name": idle["name"]} in names
    active = tenant.get("/api/deviceProfile/names", params={"activeOnly": "true"}).json()
    assert idle["id"] not in [p["id"] for p in active]
    assert {"default", "thermostat"} <= {p["name"] for p in active}


def test_customer_user_reads_infos_only(customer_a, tenant):
    profile = create_profile(tenant)
    profile_id = profile["id"]["id"]
    info = customer_a.get(f"/api/deviceProfileInfo/{profile_id}")
    assert info.status_code == 200 and info.json()["name"] == profile["name"] and set(info.json()) == INFO_KEYS
    assert customer_a.get("/api/deviceProfileInfo/default").json()["name"] == "default"
    infos = customer_a.get("/api/deviceProfileInfos", params={"pageSize": 10, "page": 0,
                                                              "textSearch": profile["name"]}).json()
    assert [p["id"] for p in infos["data"]] == [profile["id"]]
    assert_tb_error(customer_a.get(f"/api/deviceProfile/{profile_id}"), 403, 20)
    assert_tb_error(customer_a.get("/api/deviceProfile/default"), 403, 20)
    assert_tb_error(customer_a.get("/api/deviceProfiles", params={"pageSize": 10, "page": 0}), 403, 20)
    assert_tb_error(customer_a.post("/api/deviceProfile", json={"name": unique("By customer")}), 403, 20)
    assert_tb_error(customer_a.post("/api/deviceProfile", json={**profile, "description": "mine"}), 403, 20)
    assert_tb_error(customer_a.delete(f"/api/deviceProfile/{profile_id}"), 403, 20)
    assert_tb_error(customer_a.post(f"/api/deviceProfile/{profile_id}/default"), 403, 20)


def test_another_tenant_sees_only_its_own_profiles(other_tenant, tenant):
    ours = create_profile(tenant)
    profile_id = ours["id"]["id"]
    for response in (other_tenant.get(f"/api/deviceProfile/{profile_id}"),
                     other_tenant.get(f"/api/deviceProfileInfo/{profile_id}"),
                     other_tenant.post("/api/deviceProfile", json={**ours, "description": "hijacked"}),
                     other_tenant.delete(f"/api/deviceProfile/{profile_id}"),
                     other_tenant.post(f"/api/deviceProfile/{profile_id}/default")):
        assert_tb_error(response, 404, 32)
    theirs = other_tenant.get("/api/deviceProfiles", params={"pageSize": 100, "page": 0}).json()["data"]
    assert ours["id"] not in [p["id"] for p in theirs]
    assert other_tenant.get("/api/deviceProfileInfos/list", params={"deviceProfileIds": profile_id}).json() == []
    # the same name is free in another tenant
    assert create_profile(other_tenant, name=ours["name"])["tenantId"] != ours["tenantId"]
    assert tenant.get(f"/api/deviceProfile/{profile_id}").json() == ours
