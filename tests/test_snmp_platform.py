"""SNMP through the whole platform: profiles and devices made over REST with ThingsBoard's SNMP
transport configurations, polled by the SNMP transport process from a real agent (snmpsim), their
values readable over REST; shared attributes and RPC reaching the agent."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import assert_tb_error, eventually, unique
from tests.transports.snmp_agent import SnmpSimAgent, read_oid
from thingsray.platform import Platform

RECORDS = """
1.3.6.1.2.1.1.1.0|4|Platform test agent
1.3.6.1.2.1.1.3.0|67|4200
1.3.6.1.4.1.99.1.0|2|21
1.3.6.1.4.1.99.2.0|4|19.5
1.3.6.1.4.1.99.30.0|4:writecache|value=unset
1.3.6.1.4.1.99.31.0|4:writecache|value=idle
"""


def transport(*configs: dict[str, Any]) -> dict[str, Any]:
    return {"type": "SNMP", "timeoutMs": 1000, "retries": 1, "communicationConfigs": list(configs)}


def mapping(oid: str, key: str, data_type: str) -> dict[str, str]:
    return {"oid": oid, "key": key, "dataType": data_type}


TRANSPORT = transport(
    {"spec": "TELEMETRY_QUERYING", "queryingFrequencyMs": 300,
     "mappings": [mapping("1.3.6.1.4.1.99.1.0", "temperature", "LONG"),
                  mapping("1.3.6.1.4.1.99.2.0", "humidity", "DOUBLE"),
                  mapping("1.3.6.1.2.1.1.3.0", "uptime", "LONG")]},
    {"spec": "CLIENT_ATTRIBUTES_QUERYING", "queryingFrequencyMs": 300,
     "mappings": [mapping("1.3.6.1.2.1.1.1.0", "model", "STRING")]},
    {"spec": "SHARED_ATTRIBUTES_SETTING", "mappings": [mapping("1.3.6.1.4.1.99.30.0", "label", "STRING")]},
    {"spec": "TO_DEVICE_RPC_REQUEST", "mappings": [mapping("1.3.6.1.2.1.1.1.0", "descr", "STRING"),
                                                   mapping("1.3.6.1.4.1.99.31.0", "mode", "STRING")]})


@pytest.fixture(scope="module")
def agent() -> Iterator[SnmpSimAgent]:
    with SnmpSimAgent({"public": RECORDS}) as running:
        yield running


def create_profile(tenant: httpx.Client, transport_configuration: dict[str, Any]) -> httpx.Response:
    return tenant.post("/api/deviceProfile", json={
        "name": unique("SNMP profile"), "type": "DEFAULT", "transportType": "SNMP",
        "profileData": {"configuration": {"type": "DEFAULT"}, "transportConfiguration": transport_configuration}})


def create_device(tenant: httpx.Client, profile_id: str,
                  transport_configuration: dict[str, Any] | None) -> httpx.Response:
    body: dict[str, Any] = {"name": unique("SNMP device"),
                            "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile_id}}
    if transport_configuration is not None:
        body["deviceData"] = {"configuration": {"type": "DEFAULT"}, "transportConfiguration": transport_configuration}
    return tenant.post("/api/device", json=body)


@pytest.fixture(scope="module")
def polled(tenant: httpx.Client, agent: SnmpSimAgent) -> Iterator[str]:
    """An SNMP device of the agent, made over REST; its id."""
    response = create_profile(tenant, TRANSPORT)
    assert response.status_code == 200, response.text
    profile_id = response.json()["id"]["id"]
    response = create_device(tenant, profile_id, {"type": "SNMP", "host": "127.0.0.1", "port": agent.port,
                                                  "protocolVersion": "V2C", "community": "public"})
    assert response.status_code == 200, response.text
    device_id = response.json()["id"]["id"]
    yield device_id
    tenant.delete(f"/api/device/{device_id}")
    tenant.delete(f"/api/deviceProfile/{profile_id}")


def test_the_platform_runs_an_snmp_transport(platform: Platform) -> None:
    assert platform.snmp_handles


def test_an_snmp_profile_keeps_its_transport_configuration(tenant: httpx.Client) -> None:
    sent = {**TRANSPORT, "unknownField": 1}
    response = create_profile(tenant, sent)
    assert response.status_code == 200, response.text
    profile = response.json()
    assert profile["transportType"] == "SNMP"
    assert profile["profileData"]["transportConfiguration"] == TRANSPORT  # unknown fields dropped, as Jackson does
    again = tenant.get(f"/api/deviceProfile/{profile['id']['id']}").json()
    assert again["profileData"]["transportConfiguration"] == TRANSPORT
    tenant.delete(f"/api/deviceProfile/{profile['id']['id']}")


@pytest.mark.parametrize(("transport_configuration", "complaint"), [
    ({"type": "SNMP"}, "timeoutMs is required"),
    (transport({"spec": "TELEMETRY_QUERYING", "queryingFrequencyMs": 1000,
                "mappings": [mapping("not an oid", "t", "LONG")]}), "communicationConfigs[0].mappings[0].oid"),
    (transport({"spec": "TELEMETRY_QUERYING", "mappings": [mapping("1.3.6.1", "t", "LONG")]}),
     "queryingFrequencyMs is required"),
    (transport({"spec": "NO_SUCH_SPEC", "mappings": [mapping("1.3.6.1", "t", "LONG")]}), "spec must be one of"),
])
def test_an_invalid_snmp_profile_is_refused_with_thingsboards_error(tenant: httpx.Client,
                                                                    transport_configuration: dict[str, Any],
                                                                    complaint: str) -> None:
    body = assert_tb_error(create_profile(tenant, transport_configuration), 400, 31)
    assert body["message"].startswith("SNMP transport configuration is not valid")
    assert complaint in body["message"]


def test_an_snmp_device_gets_thingsboards_defaults_and_an_invalid_one_is_refused(tenant: httpx.Client) -> None:
    response = create_profile(tenant, transport())
    assert response.status_code == 200, response.text
    profile_id = response.json()["id"]["id"]
    device = create_device(tenant, profile_id, None)
    assert device.status_code == 200, device.text
    assert device.json()["deviceData"]["transportConfiguration"] == {
        "type": "SNMP", "host": "localhost", "port": 161, "protocolVersion": "V2C", "community": "public",
        "username": None, "securityName": None, "contextName": None, "authenticationProtocol": None,
        "authenticationPassphrase": None, "privacyProtocol": None, "privacyPassphrase": None, "engineId": None}
    bad = assert_tb_error(create_device(tenant, profile_id, {"type": "SNMP", "protocolVersion": "V3",
                                                             "username": "u"}), 400, 31)
    assert bad["message"].startswith("Transport configuration is not valid")
    assert "V3" in bad["message"]
    tenant.delete(f"/api/device/{device.json()['id']['id']}")
    tenant.delete(f"/api/deviceProfile/{profile_id}")


def test_polled_values_are_readable_as_telemetry_and_client_attributes(tenant: httpx.Client, polled: str) -> None:
    path = f"/api/plugins/telemetry/DEVICE/{polled}/values/timeseries"

    def latest() -> dict[str, Any] | None:
        values = tenant.get(path, params={"keys": "temperature,humidity,uptime", "useStrictDataTypes": "true"}).json()
        present = all(points and points[0]["value"] is not None for points in values.values())
        return values if len(values) == 3 and present else None

    values = eventually(latest, "the polled telemetry")
    assert {key: points[0]["value"] for key, points in values.items()} == {
        "temperature": 21, "humidity": 19.5, "uptime": 4200}

    def model() -> list[dict[str, Any]]:
        return tenant.get(f"/api/plugins/telemetry/DEVICE/{polled}/values/attributes/CLIENT_SCOPE",
                          params={"keys": "model"}).json()

    assert eventually(model, "the polled client attribute")[0]["value"] == "Platform test agent"


def polled_once(tenant: httpx.Client, device_id: str) -> bool:
    values = tenant.get(f"/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries",
                        params={"keys": "temperature"}).json()
    return bool(values.get("temperature")) and values["temperature"][0]["value"] is not None


def read(agent: SnmpSimAgent, oid: str) -> str:
    return asyncio.run(read_oid(agent, oid))


def test_a_shared_attribute_is_set_on_the_agent(tenant: httpx.Client, agent: SnmpSimAgent, polled: str) -> None:
    eventually(lambda: polled_once(tenant, polled), "the device polled (its session open)")
    response = tenant.post(f"/api/plugins/telemetry/DEVICE/{polled}/attributes/SHARED_SCOPE",
                           json={"label": "rack 7"})
    assert response.status_code == 200, response.text
    eventually(lambda: read(agent, "1.3.6.1.4.1.99.30.0") == "rack 7", "the SET of the label")


def test_rpc_reads_and_writes_the_agent(tenant: httpx.Client, agent: SnmpSimAgent, polled: str) -> None:
    def call(body: dict[str, Any]) -> httpx.Response | None:
        response = tenant.post(f"/api/plugins/rpc/twoway/{polled}", json=body)
        return response if response.status_code != 409 else None  # 409 until the session is subscribed

    got = eventually(lambda: call({"method": "GET", "params": {"key": "descr"}}), "the RPC session")
    assert got.status_code == 200, got.text
    assert got.json() == {"descr": "Platform test agent"}
    put = call({"method": "SET", "params": {"key": "mode", "value": "eco"}})
    assert put is not None and put.status_code == 200 and put.json() == {"mode": "eco"}
    assert read(agent, "1.3.6.1.4.1.99.31.0") == "eco"
    refused = call({"method": "SET", "params": {"key": "nope", "value": 1}})
    assert refused is not None and refused.json() == {"error": "No SNMP mapping found in the config for specified key"}


def test_a_deleted_device_is_no_longer_polled(tenant: httpx.Client, agent: SnmpSimAgent, platform: Platform) -> None:
    import ray

    profile_id = create_profile(tenant, TRANSPORT).json()["id"]["id"]
    device_id = create_device(tenant, profile_id, {"type": "SNMP", "host": "127.0.0.1", "port": agent.port}).json()
    device_id = device_id["id"]["id"]
    handle = platform.snmp_handles[0]
    eventually(lambda: polled_once(tenant, device_id), "the new device polled")
    before = ray.get(handle.stats.remote())["devices"]
    assert tenant.delete(f"/api/device/{device_id}").status_code == 200
    eventually(lambda: ray.get(handle.stats.remote())["devices"] == before - 1, "the device dropped from the polls")
    tenant.delete(f"/api/deviceProfile/{profile_id}")


def test_a_device_whose_stored_configuration_is_invalid_is_left_out_and_named(tenant: httpx.Client,
                                                                             platform: Platform,
                                                                             database_url: str) -> None:
    import asyncpg
    import ray

    profile_id = create_profile(tenant, TRANSPORT).json()["id"]["id"]
    device_id = create_device(tenant, profile_id, None).json()["id"]["id"]

    async def break_it() -> None:  # as a row written by hand, past the REST checks
        conn = await asyncpg.connect(database_url)
        try:
            await conn.execute("UPDATE device SET device_data = jsonb_set(device_data, '{transportConfiguration,port}',"
                               " '\"not a port\"') WHERE id = $1", uuid.UUID(device_id))
        finally:
            await conn.close()

    asyncio.run(break_it())
    handle = platform.snmp_handles[0]
    ray.get(handle.rescan.remote())
    invalid = ray.get(handle.stats.remote())["invalid"]
    assert "port must be a whole number" in invalid[device_id]
    tenant.delete(f"/api/device/{device_id}")
    tenant.delete(f"/api/deviceProfile/{profile_id}")
