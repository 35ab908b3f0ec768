"""/api/device and friends: devices, credentials, listings, assignment, isolation; and the
credentials cache the transports authenticate through (in-process and Redis)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
import uuid
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest

from tests.conftest import assert_tb_error, unique
from thingsray.storage import connect
from thingsray.storage.attributes import AttributeScope, save_attributes
from thingsray.storage.credentials import (
    MISS,
    REDIS_PREFIX,
    CredentialStore,
    CredentialsType,
    InProcessCredentialsCache,
    RedisCredentialsCache,
    normalize,
)
from thingsray.storage.entities import NULL_UUID, now_ms

DUPLICATE_CREDENTIALS = "Device credentials are already assigned to another device!"


def sha3(text: str) -> str:
    return hashlib.sha3_256(text.encode()).hexdigest()


def create_device(client: httpx.Client, name: str | None = None, token: str | None = None, **fields) -> dict:
    params = {"accessToken": token} if token else None
    response = client.post("/api/device", json={"name": name or unique("Device"), **fields}, params=params)
    assert response.status_code == 200, response.text
    return response.json()


def credentials_of(client: httpx.Client, device: dict) -> dict:
    response = client.get(f"/api/device/{device['id']['id']}/credentials")
    assert response.status_code == 200, response.text
    return response.json()


def set_credentials(client: httpx.Client, device: dict, credentials_type: str, credentials_id: str | None = None,
                    value: str | None = None) -> httpx.Response:
    current = credentials_of(client, device)
    return client.post("/api/device/credentials", json={
        **current, "credentialsType": credentials_type, "credentialsId": credentials_id, "credentialsValue": value})


def customer_id_of(client: httpx.Client) -> str:
    return client.get("/api/auth/user").json()["customerId"]["id"]


def find_by_name(client: httpx.Client, name: str) -> httpx.Response:
    return client.get("/api/tenant/devices", params={"deviceName": name})


async def audit_actions(database_url: str, entity_id: str) -> list[str]:
    """The audit log's changes of an entity, oldest first (reads of credentials left out)."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT action_type FROM audit_log WHERE entity_id = $1"
                                " AND action_type <> 'CREDENTIALS_READ' ORDER BY created_time", uuid.UUID(entity_id))
    finally:
        await conn.close()
    return [r["action_type"] for r in rows]


@pytest.fixture(scope="module")
def default_profile(tenant: httpx.Client) -> dict:
    return tenant.get("/api/deviceProfileInfo/default").json()


@pytest.fixture(scope="module")
def customer_a_id(customer_a: httpx.Client) -> str:
    return customer_id_of(customer_a)


@pytest.fixture(scope="module")
def customer_b_id(customer_b: httpx.Client) -> str:
    return customer_id_of(customer_b)


@pytest.fixture(scope="module")
def demo_device(tenant: httpx.Client) -> dict:
    return find_by_name(tenant, "Test Device A1").json()


# --- create, read, update ----------------------------------------------------------------------

def test_new_device_gets_default_profile_and_a_random_token(tenant, default_profile, platform):
    device = create_device(tenant, label="kitchen")
    assert device["id"]["entityType"] == "DEVICE"
    assert device["tenantId"]["entityType"] == "TENANT"
    assert device["customerId"] == {"entityType": "CUSTOMER", "id": str(NULL_UUID)}
    assert device["deviceProfileId"] == default_profile["id"]
    assert device["type"] == default_profile["name"] == "default"
    assert device["label"] == "kitchen"
    assert device["deviceData"] == {"configuration": {"type": "DEFAULT"}, "transportConfiguration": {"type": "DEFAULT"}}
    assert isinstance(device["createdTime"], int) and device["version"] == 1
    assert tenant.get(f"/api/device/{device['id']['id']}").json() == device
    credentials = credentials_of(tenant, device)
    assert credentials["credentialsType"] == "ACCESS_TOKEN"
    assert re.fullmatch(r"[A-Za-z0-9]{20}", credentials["credentialsId"])
    assert credentials["credentialsValue"] is None
    assert credentials["deviceId"] == device["id"]
    assert credentials_of(tenant, create_device(tenant))["credentialsId"] != credentials["credentialsId"]
    assert asyncio.run(audit_actions(platform.database_url, device["id"]["id"]))[0] == "ADDED"


def test_access_token_parameter_sets_the_token_and_tokens_are_unique(tenant):
    token = f"TOKEN_{uuid.uuid4().hex}"
    device = create_device(tenant, token=token)
    assert credentials_of(tenant, device)["credentialsId"] == token
    name = unique("Second holder")
    body = assert_tb_error(tenant.post("/api/device", json={"name": name}, params={"accessToken": token}), 400, 31)
    assert body["message"] == DUPLICATE_CREDENTIALS
    assert_tb_error(find_by_name(tenant, name), 404, 32)  # nothing half-made
    # a demo device's token belongs to the demo device
    assert_tb_error(tenant.post("/api/device", json={"name": unique("D")}, params={"accessToken": "A1_TEST_TOKEN"}),
                    400, 31)


def test_type_without_profile_picks_or_creates_the_profile_of_that_name(tenant):
    profile_name = unique("Sensor type")
    first = create_device(tenant, type=profile_name)
    assert first["type"] == profile_name
    names = {p["name"]: p["id"] for p in tenant.get("/api/deviceProfile/names").json()}
    assert names[profile_name] == first["deviceProfileId"]
    second = create_device(tenant, type=profile_name)
    assert second["deviceProfileId"] == first["deviceProfileId"]


def test_type_follows_the_profile_given_by_id(tenant):
    thermostat = next(p for p in tenant.get("/api/deviceProfile/names").json() if p["name"] == "thermostat")
    device = create_device(tenant, type="ignored", deviceProfileId=thermostat["id"])
    assert device["type"] == "thermostat" and device["deviceProfileId"] == thermostat["id"]


def test_unknown_or_malformed_profile_is_refused(tenant):
    unknown = {"entityType": "DEVICE_PROFILE", "id": str(uuid.uuid4())}
    body = assert_tb_error(tenant.post("/api/device", json={"name": unique("D"), "deviceProfileId": unknown}), 400, 31)
    assert "device profile" in body["message"]
    assert_tb_error(tenant.post("/api/device", json={"name": unique("D"),
                                                     "deviceProfileId": {"id": "not-a-uuid"}}), 400)


def test_update_keeps_credentials_and_checks_version(tenant, platform):
    device = create_device(tenant)
    token = credentials_of(tenant, device)["credentialsId"]
    renamed = unique("Renamed")
    response = tenant.post("/api/device", json={**device, "name": renamed, "label": "new label"})
    assert response.status_code == 200, response.text
    updated = response.json()
    assert updated["id"] == device["id"] and updated["name"] == renamed and updated["label"] == "new label"
    assert updated["version"] == device["version"] + 1
    assert updated["createdTime"] == device["createdTime"]
    assert credentials_of(tenant, updated)["credentialsId"] == token
    stale = tenant.post("/api/device", json={**device, "name": unique("Stale")})
    assert_tb_error(stale, 409, 35)
    assert asyncio.run(audit_actions(platform.database_url, device["id"]["id"]))[:2] == ["ADDED", "UPDATED"]


def test_update_of_unknown_device_is_404(tenant):
    missing = {"entityType": "DEVICE", "id": str(uuid.uuid4())}
    assert_tb_error(tenant.post("/api/device", json={"id": missing, "name": unique("D")}), 404, 32)


def test_bad_device_bodies_are_400(tenant):
    existing = create_device(tenant)
    body = assert_tb_error(tenant.post("/api/device", json={"name": existing["name"]}), 400, 31)
    assert body["message"] == "Device with such name already exists!"
    assert_tb_error(tenant.post("/api/device", json={"name": "x" * 256}), 400)
    assert_tb_error(tenant.post("/api/device", json={"label": "no name"}), 400)
    assert_tb_error(tenant.post("/api/device", json={"name": ""}), 400)
    assert_tb_error(tenant.post("/api/device", json={"name": 42}), 400)
    assert_tb_error(tenant.post("/api/device", json={"name": unique("D"), "label": "x" * 256}), 400)
    assert_tb_error(tenant.post("/api/device", json={"name": unique("D"), "deviceData": "text"}), 400)
    assert_tb_error(tenant.post("/api/device", content=b"{not json", headers={"Content-Type": "application/json"}),
                    400)
    assert_tb_error(tenant.post("/api/device", json={"name": unique("D")}, params={"accessToken": "a b"}), 400)


def test_get_by_bad_or_unknown_id(tenant):
    assert_tb_error(tenant.get("/api/device/not-a-uuid"), 400, 31)
    assert_tb_error(tenant.get(f"/api/device/{uuid.uuid4()}"), 404, 32)
    assert_tb_error(tenant.get(f"/api/device/{uuid.uuid4()}/credentials"), 404, 32)
    assert_tb_error(tenant.get("/api/device/info/nope"), 400, 31)


def test_delete_removes_device_and_frees_its_token(tenant, platform):
    token = f"DEL_{uuid.uuid4().hex}"
    device = create_device(tenant, token=token)
    assert tenant.delete(f"/api/device/{device['id']['id']}").status_code == 200
    assert_tb_error(tenant.get(f"/api/device/{device['id']['id']}"), 404, 32)
    assert_tb_error(tenant.get(f"/api/device/{device['id']['id']}/credentials"), 404, 32)
    assert_tb_error(tenant.delete(f"/api/device/{device['id']['id']}"), 404, 32)
    assert credentials_of(tenant, create_device(tenant, token=token))["credentialsId"] == token
    assert asyncio.run(audit_actions(platform.database_url, device["id"]["id"]))[-1] == "DELETED"


# --- credentials -------------------------------------------------------------------------------

def test_access_token_update_frees_the_old_token(tenant, platform):
    device = create_device(tenant)
    old = credentials_of(tenant, device)
    new_token = f"NEW_{uuid.uuid4().hex}"
    response = set_credentials(tenant, device, "ACCESS_TOKEN", new_token)
    assert response.status_code == 200, response.text
    saved = response.json()
    assert saved["credentialsId"] == new_token and saved["id"] == old["id"]
    assert saved["version"] == old["version"] + 1
    assert credentials_of(tenant, device) == saved
    assert credentials_of(tenant, create_device(tenant, token=old["credentialsId"]))["credentialsId"] == \
        old["credentialsId"]
    assert "CREDENTIALS_UPDATED" in asyncio.run(audit_actions(platform.database_url, device["id"]["id"]))


def test_mqtt_basic_credentials_ids_are_derived_as_thingsboard_does(tenant):
    device = create_device(tenant)
    client_id, user = f"client-{uuid.uuid4().hex[:8]}", f"user-{uuid.uuid4().hex[:8]}"
    both = set_credentials(tenant, device, "MQTT_BASIC",
                           value=json.dumps({"clientId": client_id, "userName": user, "password": "secret"}))
    assert both.status_code == 200, both.text
    assert both.json()["credentialsType"] == "MQTT_BASIC"
    assert both.json()["credentialsId"] == sha3(f"{client_id}|{user}")
    assert json.loads(both.json()["credentialsValue"]) == {"clientId": client_id, "userName": user,
                                                          "password": "secret"}
    client_only = set_credentials(tenant, device, "MQTT_BASIC", value=json.dumps({"clientId": client_id}))
    assert client_only.json()["credentialsId"] == sha3(client_id)
    user_only = set_credentials(tenant, device, "MQTT_BASIC", value=json.dumps({"userName": user, "password": "p"}))
    assert user_only.json()["credentialsId"] == user
    for bad in ({}, {"clientId": "", "userName": ""}, {"clientId": client_id, "password": "p"}, {"clientId": 5}):
        assert_tb_error(set_credentials(tenant, device, "MQTT_BASIC", value=json.dumps(bad)), 400, 31)
    assert_tb_error(set_credentials(tenant, device, "MQTT_BASIC", value="{not json"), 400, 31)
    other = create_device(tenant)
    duplicate = set_credentials(tenant, other, "MQTT_BASIC", value=json.dumps({"userName": user}))
    assert assert_tb_error(duplicate, 400, 31)["message"] == DUPLICATE_CREDENTIALS


def test_x509_credentials_id_is_sha3_of_the_pem_body(tenant):
    device = create_device(tenant)
    body = "MIIB" + uuid.uuid4().hex + "QAB"
    pem = f"-----BEGIN CERTIFICATE-----\n{body[:20]}\r\n{body[20:]}\n-----END CERTIFICATE-----\n"
    response = set_credentials(tenant, device, "X509_CERTIFICATE", value=pem)
    assert response.status_code == 200, response.text
    assert response.json()["credentialsId"] == sha3(body)
    assert response.json()["credentialsValue"] == body
    assert_tb_error(set_credentials(tenant, device, "X509_CERTIFICATE", value=""), 400, 31)


def test_bad_credentials_updates_are_refused(tenant):
    device = create_device(tenant)
    current = credentials_of(tenant, device)
    assert_tb_error(set_credentials(tenant, device, "ACCESS_TOKEN", ""), 400, 31)
    body = assert_tb_error(set_credentials(tenant, device, "ACCESS_TOKEN", "A1_TEST_TOKEN"), 400, 31)
    assert body["message"] == DUPLICATE_CREDENTIALS
    assert_tb_error(set_credentials(tenant, device, "PASSWORD", "x"), 400, 31)
    assert_tb_error(set_credentials(tenant, device, "ACCESS_TOKEN", "x" * 256), 400)
    assert_tb_error(tenant.post("/api/device/credentials", json={**current, "deviceId": None}), 400, 31)
    assert_tb_error(tenant.post("/api/device/credentials", json={**current, "credentialsType": None}), 400, 31)
    assert_tb_error(tenant.post("/api/device/credentials", json={**current, "id": {"id": str(uuid.uuid4())}}), 400, 31)
    missing = {**current, "deviceId": {"entityType": "DEVICE", "id": str(uuid.uuid4())}}
    assert_tb_error(tenant.post("/api/device/credentials", json=missing), 404, 32)
    assert set_credentials(tenant, device, "ACCESS_TOKEN", f"T_{uuid.uuid4().hex}").status_code == 200
    stale = tenant.post("/api/device/credentials", json={**current, "credentialsId": f"T_{uuid.uuid4().hex}"})
    assert_tb_error(stale, 409, 35)
    assert credentials_of(tenant, device)["credentialsId"] != current["credentialsId"]


def test_device_with_credentials_creates_then_updates_by_name(tenant):
    name, token = unique("With credentials"), f"WC_{uuid.uuid4().hex}"
    response = tenant.post("/api/device-with-credentials", json={
        "device": {"name": name, "label": "first"},
        "credentials": {"credentialsType": "ACCESS_TOKEN", "credentialsId": token}})
    assert response.status_code == 200, response.text
    device = response.json()
    assert device["name"] == name and credentials_of(tenant, device)["credentialsId"] == token
    again = tenant.post("/api/device-with-credentials", json={
        "device": {"name": name, "label": "second"},
        "credentials": {"credentialsType": "MQTT_BASIC", "credentialsValue": json.dumps({"userName": token})}})
    assert again.status_code == 200, again.text
    assert again.json()["id"] == device["id"] and again.json()["label"] == "second"
    assert credentials_of(tenant, device)["credentialsType"] == "MQTT_BASIC"
    taken = tenant.post("/api/device-with-credentials", json={
        "device": {"name": unique("Taken")},
        "credentials": {"credentialsType": "ACCESS_TOKEN", "credentialsId": "A2_TEST_TOKEN"}})
    assert assert_tb_error(taken, 400, 31)["message"] == DUPLICATE_CREDENTIALS
    assert_tb_error(tenant.post("/api/device-with-credentials", json={"device": {"name": unique("D")}}), 400)


# --- listings ----------------------------------------------------------------------------------

def test_tenant_devices_page_search_sort_and_type(tenant):
    prefix = unique("Paged")
    profile = unique("Paged type")
    for suffix in ("b", "a", "c"):
        create_device(tenant, name=f"{prefix} {suffix}", type=profile if suffix != "c" else None)
    first = tenant.get("/api/tenant/devices", params={"pageSize": 2, "page": 0, "textSearch": prefix.upper(),
                                                      "sortProperty": "name", "sortOrder": "ASC"}).json()
    assert [d["name"] for d in first["data"]] == [f"{prefix} a", f"{prefix} b"]
    assert first["totalElements"] == 3 and first["totalPages"] == 2 and first["hasNext"] is True
    second = tenant.get("/api/tenant/devices", params={"pageSize": 2, "page": 1, "textSearch": prefix,
                                                       "sortProperty": "name", "sortOrder": "ASC"}).json()
    assert [d["name"] for d in second["data"]] == [f"{prefix} c"] and second["hasNext"] is False
    desc = tenant.get("/api/tenant/devices", params={"pageSize": 10, "page": 0, "textSearch": prefix,
                                                     "sortProperty": "name", "sortOrder": "DESC"}).json()
    assert [d["name"][-1] for d in desc["data"]] == ["c", "b", "a"]
    typed = tenant.get("/api/tenant/devices", params={"pageSize": 10, "page": 0, "type": profile}).json()
    assert sorted(d["name"][-1] for d in typed["data"]) == ["a", "b"]
    by_profile_name = tenant.get("/api/tenant/devices", params={
        "pageSize": 10, "page": 0, "textSearch": prefix, "sortProperty": "deviceProfileName"}).json()
    assert [d["type"] for d in by_profile_name["data"]] == sorted(d["type"] for d in by_profile_name["data"])
    assert tenant.get("/api/tenant/devices", params={"pageSize": 5, "page": 0, "textSearch": "%_nothing_%"}
                      ).json()["totalElements"] == 0


@pytest.mark.parametrize("params", [
    {"pageSize": 0, "page": 0}, {"pageSize": 10, "page": -1}, {"pageSize": 10}, {"page": 0},
    {"pageSize": "ten", "page": 0}, {"pageSize": 10, "page": 0, "sortProperty": "password"},
    {"pageSize": 10, "page": 0, "sortOrder": "SIDEWAYS"}, {"pageSize": 10, "page": 0, "textSearch": "x" * 300},
])
def test_bad_paging_is_400(tenant, params):
    assert_tb_error(tenant.get("/api/tenant/devices", params=params), 400)


def test_find_by_name_on_both_paths(tenant, demo_device):
    assert demo_device["name"] == "Test Device A1"
    assert tenant.get("/api/tenant/device", params={"deviceName": "Test Device A1"}).json() == demo_device
    assert_tb_error(find_by_name(tenant, unique("Nobody")), 404, 32)
    assert_tb_error(tenant.get("/api/tenant/device", params={"deviceName": unique("Nobody")}), 404, 32)


def test_device_infos_carry_customer_profile_and_activity(tenant, platform, customer_a_id):
    device = create_device(tenant, name=unique("Info"))
    device_id = device["id"]["id"]
    info = tenant.get(f"/api/device/info/{device_id}").json()
    assert info["active"] is False and info["customerTitle"] is None and info["customerIsPublic"] is False
    assert info["deviceProfileName"] == "default"
    assert {k: info[k] for k in device} == device

    async def activate() -> None:
        conn = await asyncpg.connect(platform.database_url)
        try:
            await save_attributes(conn, uuid.UUID(device_id), AttributeScope.SERVER_SCOPE, {"active": True}, now_ms())
        finally:
            await conn.close()

    asyncio.run(activate())
    assert tenant.post(f"/api/customer/{customer_a_id}/device/{device_id}").status_code == 200
    info = tenant.get(f"/api/device/info/{device_id}").json()
    assert info["active"] is True and info["customerTitle"] == "Customer A"
    query = {"pageSize": 50, "page": 0, "textSearch": device["name"]}
    assert [d["id"] for d in tenant.get("/api/tenant/deviceInfos", params={**query, "active": "true"}
                                        ).json()["data"]] == [device["id"]]
    assert tenant.get("/api/tenant/deviceInfos", params={**query, "active": "false"}).json()["data"] == []
    customer_infos = tenant.get(f"/api/customer/{customer_a_id}/deviceInfos", params=query).json()
    assert customer_infos["data"][0]["customerTitle"] == "Customer A"
    demo = tenant.get("/api/tenant/deviceInfos", params={"pageSize": 10, "page": 0, "textSearch": "Thermostat T",
                                                         "sortProperty": "name"}).json()["data"]
    assert [(d["name"], d["deviceProfileName"], d["active"]) for d in demo] == [
        ("Thermostat T1", "thermostat", False), ("Thermostat T2", "thermostat", False)]
    by_customer = tenant.get("/api/tenant/deviceInfos", params={"pageSize": 100, "page": 0, "textSearch": "Test Device",
                                                                "sortProperty": "customerTitle"}).json()["data"]
    assert [d["customerTitle"] for d in by_customer][:5] == ["Customer A"] * 3 + ["Customer B", "Customer C"]


def test_device_types_are_the_profile_names_in_use(tenant, customer_a):
    types = tenant.get("/api/device/types").json()
    assert {"default", "thermostat"} <= {t["type"] for t in types}
    assert all(t["entityType"] == "DEVICE" and t["tenantId"]["entityType"] == "TENANT" for t in types)
    assert customer_a.get("/api/device/types").status_code == 200


def test_devices_by_ids_returns_what_the_caller_may_read(tenant, customer_a, demo_device):
    mine = create_device(tenant)
    ids = f"{demo_device['id']['id']},{mine['id']['id']},{uuid.uuid4()}"
    assert {d["id"]["id"] for d in tenant.get("/api/devices", params={"deviceIds": ids}).json()} == {
        demo_device["id"]["id"], mine["id"]["id"]}
    assert [d["id"] for d in customer_a.get("/api/devices", params={"deviceIds": ids}).json()] == [demo_device["id"]]
    assert_tb_error(tenant.get("/api/devices", params={"deviceIds": "nope"}), 400, 31)
    assert_tb_error(tenant.get("/api/devices"), 400)


# --- assignment and customer users -------------------------------------------------------------

def test_assign_and_unassign(tenant, customer_a, customer_b, customer_a_id, platform):
    device = create_device(tenant)
    device_id = device["id"]["id"]
    assert_tb_error(customer_a.get(f"/api/device/{device_id}"), 403, 20)
    response = tenant.post(f"/api/customer/{customer_a_id}/device/{device_id}")
    assert response.status_code == 200, response.text
    assert response.json()["customerId"] == {"entityType": "CUSTOMER", "id": customer_a_id}
    assert customer_a.get(f"/api/device/{device_id}").json()["id"] == device["id"]
    assert_tb_error(customer_b.get(f"/api/device/{device_id}"), 403, 20)
    listed = customer_a.get(f"/api/customer/{customer_a_id}/devices", params={"pageSize": 100, "page": 0,
                                                                               "textSearch": device["name"]}).json()
    assert [d["id"] for d in listed["data"]] == [device["id"]]
    unassigned = tenant.delete(f"/api/customer/device/{device_id}")
    assert unassigned.status_code == 200
    assert unassigned.json()["customerId"]["id"] == str(NULL_UUID)
    assert_tb_error(customer_a.get(f"/api/device/{device_id}"), 403, 20)
    assert_tb_error(tenant.delete(f"/api/customer/device/{device_id}"), 400, 31)
    assert_tb_error(tenant.post(f"/api/customer/{uuid.uuid4()}/device/{device_id}"), 404, 32)
    assert_tb_error(tenant.post(f"/api/customer/{customer_a_id}/device/{uuid.uuid4()}"), 404, 32)
    assert_tb_error(tenant.post(f"/api/customer/bad/device/{device_id}"), 400, 31)
    actions = asyncio.run(audit_actions(platform.database_url, device_id))
    assert actions == ["ADDED", "ASSIGNED_TO_CUSTOMER", "UNASSIGNED_FROM_CUSTOMER"]


def test_customer_user_reads_its_devices_and_changes_nothing(customer_a, customer_a_id, customer_b_id, demo_device):
    device_id = demo_device["id"]["id"]
    assert customer_a.get(f"/api/device/{device_id}").json()["name"] == "Test Device A1"
    assert customer_a.get(f"/api/device/info/{device_id}").json()["customerTitle"] == "Customer A"
    assert_tb_error(customer_a.get(f"/api/device/{device_id}/credentials"), 403, 20)
    assert_tb_error(customer_a.post("/api/device", json={"name": unique("By customer")}), 403, 20)
    assert_tb_error(customer_a.post("/api/device", json={**demo_device, "label": "mine"}), 403, 20)
    assert_tb_error(customer_a.delete(f"/api/device/{device_id}"), 403, 20)
    assert_tb_error(customer_a.delete(f"/api/customer/device/{device_id}"), 403, 20)
    assert_tb_error(customer_a.post(f"/api/customer/{customer_a_id}/device/{device_id}"), 403, 20)
    credentials = {"deviceId": demo_device["id"], "credentialsType": "ACCESS_TOKEN", "credentialsId": "stolen"}
    assert_tb_error(customer_a.post("/api/device/credentials", json=credentials), 403, 20)
    assert_tb_error(customer_a.get("/api/tenant/devices", params={"pageSize": 10, "page": 0}), 403, 20)
    assert_tb_error(customer_a.get("/api/tenant/deviceInfos", params={"pageSize": 10, "page": 0}), 403, 20)
    assert_tb_error(customer_a.get("/api/tenant/devices", params={"deviceName": "Test Device A1"}), 403, 20)
    page = {"pageSize": 100, "page": 0, "textSearch": "Test Device"}
    own = customer_a.get(f"/api/customer/{customer_a_id}/devices", params=page).json()
    assert sorted(d["name"] for d in own["data"]) == ["Test Device A1", "Test Device A2", "Test Device A3"]
    assert_tb_error(customer_a.get(f"/api/customer/{customer_b_id}/devices", params=page), 403, 20)
    assert_tb_error(customer_a.get(f"/api/customer/{customer_b_id}/deviceInfos", params=page), 403, 20)
    mine = customer_a.get("/api/deviceInfos/all", params=page).json()
    assert {d["name"] for d in mine["data"]} == {"Test Device A1", "Test Device A2", "Test Device A3"}


def test_system_administrator_has_no_devices(sysadmin, demo_device):
    assert_tb_error(sysadmin.get(f"/api/device/{demo_device['id']['id']}"), 403, 20)
    assert_tb_error(sysadmin.post("/api/device", json={"name": unique("D")}), 403, 20)
    assert_tb_error(sysadmin.get("/api/tenant/devices", params={"pageSize": 10, "page": 0}), 403, 20)


def test_no_token_no_devices(anonymous, demo_device):
    assert_tb_error(anonymous.get(f"/api/device/{demo_device['id']['id']}"), 401, 10)
    assert_tb_error(anonymous.post("/api/device", json={"name": unique("D")}), 401, 10)


# --- tenant isolation --------------------------------------------------------------------------

def test_another_tenant_cannot_see_or_touch_our_devices(other_tenant, tenant, demo_device, customer_a_id,
                                                        default_profile):
    device_id = demo_device["id"]["id"]
    assert_tb_error(other_tenant.get(f"/api/device/{device_id}"), 404, 32)
    assert_tb_error(other_tenant.get(f"/api/device/info/{device_id}"), 404, 32)
    assert_tb_error(other_tenant.get(f"/api/device/{device_id}/credentials"), 404, 32)
    assert_tb_error(other_tenant.post("/api/device", json={**demo_device, "label": "hijacked"}), 404, 32)
    assert_tb_error(other_tenant.delete(f"/api/device/{device_id}"), 404, 32)
    assert_tb_error(other_tenant.delete(f"/api/customer/device/{device_id}"), 404, 32)
    assert_tb_error(other_tenant.post(f"/api/customer/{customer_a_id}/device/{device_id}"), 404, 32)
    credentials = {"deviceId": demo_device["id"], "credentialsType": "ACCESS_TOKEN", "credentialsId": "hijack"}
    assert_tb_error(other_tenant.post("/api/device/credentials", json=credentials), 404, 32)
    assert_tb_error(other_tenant.get(f"/api/customer/{customer_a_id}/devices", params={"pageSize": 10, "page": 0}),
                    404, 32)
    assert_tb_error(find_by_name(other_tenant, "Test Device A1"), 404, 32)
    assert other_tenant.get("/api/devices", params={"deviceIds": device_id}).json() == []
    listing = other_tenant.get("/api/tenant/devices", params={"pageSize": 100, "page": 0}).json()
    assert listing["totalElements"] == 0
    # names are unique per tenant, tokens everywhere; profiles are the tenant's own
    twin = create_device(other_tenant, name="Test Device A1")
    assert twin["tenantId"] != demo_device["tenantId"] and twin["type"] == "default"
    assert twin["deviceProfileId"] != default_profile["id"]
    taken = other_tenant.post("/api/device", json={"name": unique("D")}, params={"accessToken": "A1_TEST_TOKEN"})
    assert_tb_error(taken, 400, 31)
    foreign_profile = other_tenant.post("/api/device", json={"name": unique("D"),
                                                             "deviceProfileId": default_profile["id"]})
    assert_tb_error(foreign_profile, 400, 31)
    assert tenant.get(f"/api/device/{device_id}").json() == demo_device


# --- the credentials cache ---------------------------------------------------------------------

@pytest.fixture
async def database(platform) -> AsyncIterator:
    db = await connect(platform.database_url, max_size=2)
    try:
        yield db
    finally:
        await db.close()


async def _until(condition, what: str) -> None:
    """Wait for something another process causes (a NOTIFY delivery), failing after a long while."""
    for _ in range(1500):
        if await condition():
            return
        await asyncio.sleep(0.02)
    pytest.fail(f"never happened: {what}")


async def test_in_process_cache_follows_changes_made_through_the_rest_api(tenant, platform, database):
    cache = InProcessCredentialsCache()
    await cache.listen(platform.database_url)
    store = CredentialStore(database, cache)
    try:
        token = f"CACHE_{uuid.uuid4().hex}"
        device = create_device(tenant, token=token)
        auth = await store.find_device_by_credentials_id(token)
        assert auth is not None and str(auth.device_id) == device["id"]["id"]
        assert str(auth.tenant_id) == device["tenantId"]["id"] and auth.credentials_type is CredentialsType.ACCESS_TOKEN
        assert await cache.get(token) == auth

        new_token = f"CACHE_{uuid.uuid4().hex}"
        assert await store.find_device_by_credentials_id(new_token) is None
        assert await cache.get(new_token) is None  # a known miss, remembered briefly

        assert set_credentials(tenant, device, "ACCESS_TOKEN", new_token).status_code == 200
        await _until(lambda: _is_miss(cache, token), "the old token was evicted")
        await _until(lambda: _is_miss(cache, new_token), "the remembered miss was evicted")
        assert await store.find_device_by_credentials_id(token) is None
        assert (await store.find_device_by_credentials_id(new_token)).device_id == auth.device_id

        assert tenant.delete(f"/api/device/{device['id']['id']}").status_code == 200
        await _until(lambda: _is_miss(cache, new_token), "the deleted device's token was evicted")
        assert await store.find_device_by_credentials_id(new_token) is None
    finally:
        await store.close()


async def _is_miss(cache, credentials_id: str) -> bool:
    return await cache.get(credentials_id) is MISS


async def test_in_process_cache_is_a_bounded_lru_with_expiry():
    now = [0.0]
    cache = InProcessCredentialsCache(max_entries=2, ttl_s=100, negative_ttl_s=5, clock=lambda: now[0])
    await cache.put("a", None)
    await cache.put("b", None)
    assert await cache.get("a") is None  # a is now the most recently used
    await cache.put("c", None)
    assert await cache.get("b") is MISS and await cache.get("a") is None and len(cache) == 2
    now[0] = 5.0
    assert await cache.get("a") is MISS  # misses are remembered for negative_ttl_s only
    await cache.invalidate("c")
    assert len(cache) == 0


@pytest.fixture
async def redis_client() -> AsyncIterator:
    import redis.asyncio as aioredis

    url = os.environ.get("THINGSRAY_TEST_REDIS_URL", "redis://127.0.0.1:6379")
    client = aioredis.from_url(url)
    try:
        await client.ping()
    except (OSError, aioredis.RedisError) as exc:
        await client.aclose()
        pytest.skip(f"no Redis at {url} ({exc}); set THINGSRAY_TEST_REDIS_URL to test the Redis cache")
    try:
        yield client
    finally:
        await client.aclose()


async def test_redis_cache_keeps_entries_with_ttl_and_forgets_on_writes(tenant, database, redis_client):
    store = CredentialStore(database, RedisCredentialsCache(redis_client))
    token = f"REDIS_{uuid.uuid4().hex}"
    missing = f"REDIS_{uuid.uuid4().hex}"
    device = create_device(tenant, token=token)
    try:
        auth = await store.find_device_by_credentials_id(token)
        assert auth is not None and str(auth.device_id) == device["id"]["id"]
        cached = json.loads(await redis_client.get(f"{REDIS_PREFIX}{token}"))
        assert cached == {"deviceId": device["id"]["id"], "tenantId": device["tenantId"]["id"],
                          "credentialsType": "ACCESS_TOKEN", "credentialsId": token, "credentialsValue": None}
        assert 0 < await redis_client.ttl(f"{REDIS_PREFIX}{token}") <= 3600
        assert await store.find_device_by_credentials_id(token) == auth  # answered from Redis

        assert await store.find_device_by_credentials_id(missing) is None
        assert await redis_client.get(f"{REDIS_PREFIX}{missing}") == b"null"
        assert 0 < await redis_client.ttl(f"{REDIS_PREFIX}{missing}") <= 10

        async with database.transaction() as conn:
            _, replaced = await store.replace(conn, auth.device_id, normalize("ACCESS_TOKEN", missing, None))
        await store.invalidate(missing, replaced)
        assert replaced == token
        assert await redis_client.exists(f"{REDIS_PREFIX}{token}", f"{REDIS_PREFIX}{missing}") == 0
        assert (await store.find_device_by_credentials_id(missing)).device_id == auth.device_id
        assert await store.find_device_by_credentials_id(token) is None
    finally:
        await redis_client.delete(f"{REDIS_PREFIX}{token}", f"{REDIS_PREFIX}{missing}")
        tenant.delete(f"/api/device/{device['id']['id']}")


def test_demo_tokens_authenticate_through_the_store(platform):
    async def lookup() -> tuple:
        db = await connect(platform.database_url, max_size=1)
        store = CredentialStore(db, InProcessCredentialsCache())
        try:
            return (await store.find_device_by_credentials_id("A1_TEST_TOKEN"),
                    await store.find_device_by_credentials_id(""))
        finally:
            await store.close()
            await db.close()

    found, empty = asyncio.run(lookup())
    assert found is not None and found.credentials_type is CredentialsType.ACCESS_TOKEN and empty is None
