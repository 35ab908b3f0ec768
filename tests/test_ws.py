"""ThingsBoard's WebSocket APIs end to end: a `websockets` client on both endpoints, an MQTT
device publishing through the shards, REST writes; every committed value arrives, in order."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import unique

WAIT = 20.0  # a bound on waiting for what should happen at once; never a speed assertion


def token_of(client: httpx.Client) -> str:
    return client.headers["X-Authorization"].split()[1]


@pytest.fixture
def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://")


@pytest.fixture
def device(tenant: httpx.Client) -> dict[str, str]:
    token = f"WS-{uuid.uuid4().hex[:12]}"
    created = tenant.post("/api/device", params={"accessToken": token}, json={"name": unique("ws device")})
    assert created.status_code == 200, created.text
    return {"id": created.json()["id"]["id"], "token": token}


async def receive(ws: ClientConnection) -> dict[str, Any]:
    async with asyncio.timeout(WAIT):
        return json.loads(await ws.recv())


async def updates_until(ws: ClientConnection, sub_id: int, key: str, count: int) -> list[list[Any]]:
    """The [ts, value] points of ``key`` that reach subscription ``sub_id`` until ``count`` arrived."""
    points: list[list[Any]] = []
    while len(points) < count:
        update = await receive(ws)
        assert update["errorCode"] == 0, update
        if update["subscriptionId"] == sub_id:
            points.extend(update["data"].get(key, []))
    return points


def publish(mqtt_port: int, token: str, values: list[dict[str, Any]]) -> None:
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.username_pw_set(token)
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    try:
        for value in values:
            client.publish("v1/devices/me/telemetry", json.dumps(value), qos=1).wait_for_publish(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()


async def _live_values_arrive(ws: ClientConnection, send: Any, device: dict[str, str], mqtt_port: int,
                              tenant: httpx.Client) -> None:
    await send([("TIMESERIES", 1, {"keys": "n"}), ("ATTRIBUTES", 2, {"scope": "SHARED_SCOPE"})])
    first = {}
    for _ in range(2):
        update = await receive(ws)
        first[update["subscriptionId"]] = update
    assert first[1]["errorCode"] == 0 and first[1]["data"]["n"][0][1] is None  # no value yet
    assert first[1]["errorMsg"] is None and "latestValues" in first[1]
    assert first[2]["data"] == {}

    await asyncio.to_thread(publish, mqtt_port, device["token"], [{"n": n} for n in range(1, 31)])
    points = await updates_until(ws, 1, "n", 30)
    assert [value for _, value in points] == [str(n) for n in range(1, 31)]
    assert [ts for ts, _ in points] == sorted(ts for ts, _ in points)

    saved = await asyncio.to_thread(tenant.post, f"/api/plugins/telemetry/DEVICE/{device['id']}/attributes/"
                                    "SHARED_SCOPE", json={"target": 21.5})
    assert saved.status_code == 200, saved.text
    attrs = await updates_until(ws, 2, "target", 1)
    assert attrs[0][1] == "21.5"


async def test_plugin_endpoint_delivers_telemetry_and_shared_attributes(
        ws_url: str, tenant: httpx.Client, device: dict[str, str], mqtt_port: int) -> None:
    async with connect(f"{ws_url}/api/ws/plugins/telemetry?token={token_of(tenant)}") as ws:
        async def send(cmds: list[tuple[str, int, dict[str, Any]]]) -> None:
            lists: dict[str, list[Any]] = {}
            for kind, cmd_id, extra in cmds:
                field = "tsSubCmds" if kind == "TIMESERIES" else "attrSubCmds"
                lists.setdefault(field, []).append(
                    {"cmdId": cmd_id, "entityType": "DEVICE", "entityId": device["id"], **extra})
            await ws.send(json.dumps(lists))

        await _live_values_arrive(ws, send, device, mqtt_port, tenant)


async def test_general_endpoint_delivers_telemetry_and_shared_attributes(
        ws_url: str, tenant: httpx.Client, device: dict[str, str], mqtt_port: int) -> None:
    async with connect(f"{ws_url}/api/ws") as ws:
        async def send(cmds: list[tuple[str, int, dict[str, Any]]]) -> None:
            await ws.send(json.dumps({
                "authCmd": {"cmdId": 0, "token": token_of(tenant)},
                "cmds": [{"type": kind, "cmdId": cmd_id, "entityType": "DEVICE", "entityId": device["id"], **extra}
                         for kind, cmd_id, extra in cmds]}))

        await _live_values_arrive(ws, send, device, mqtt_port, tenant)


async def test_history_and_time_window_subscription(ws_url: str, tenant: httpx.Client,
                                                    device: dict[str, str], mqtt_port: int) -> None:
    base = 1_700_000_000_000
    await asyncio.to_thread(publish, mqtt_port, device["token"],
                            [{"ts": base + i, "values": {"h": i}} for i in range(5)])
    async with connect(f"{ws_url}/api/ws/plugins/telemetry?token={token_of(tenant)}") as ws:
        await ws.send(json.dumps({"historyCmds": [{"cmdId": 7, "entityType": "DEVICE", "entityId": device["id"],
                                                   "keys": "h", "startTs": base, "endTs": base + 10, "limit": 3}]}))
        answer = await receive(ws)
        assert answer["subscriptionId"] == 7 and answer["errorCode"] == 0
        assert answer["data"] == {"h": [[base + 4, "4"], [base + 3, "3"], [base + 2, "2"]]}
        await ws.send(json.dumps({"tsSubCmds": [{"cmdId": 8, "entityType": "DEVICE", "entityId": device["id"],
                                                 "keys": "h", "startTs": base, "timeWindow": 3}]}))
        window = await receive(ws)
        assert window["subscriptionId"] == 8
        assert sorted(ts for ts, _ in window["data"]["h"]) == [base, base + 1, base + 2]


async def test_a_bad_token_gets_no_data(ws_url: str, device: dict[str, str]) -> None:
    cmd = {"cmdId": 1, "entityType": "DEVICE", "entityId": device["id"], "keys": "n"}
    async with connect(f"{ws_url}/api/ws/plugins/telemetry?token=not-a-jwt") as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await ws.send(json.dumps({"tsSubCmds": [cmd]}))
            await receive(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1011
    async with connect(f"{ws_url}/api/ws") as ws:
        await ws.send(json.dumps({"authCmd": {"cmdId": 0, "token": "not-a-jwt"},
                                  "cmds": [{"type": "TIMESERIES", **cmd}]}))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1007
    async with connect(f"{ws_url}/api/ws") as ws:
        await ws.send(json.dumps({"cmds": [{"type": "TIMESERIES", **cmd}]}))
        with pytest.raises(ConnectionClosed) as closed:
            await receive(ws)
        assert closed.value.rcvd is not None
        assert (closed.value.rcvd.code, closed.value.rcvd.reason) == (1008, "Auth cmd is missing")


async def test_a_customer_cannot_watch_another_customers_or_tenants_device(
        ws_url: str, tenant: httpx.Client, customer_a: httpx.Client, customer_b: httpx.Client,
        other_tenant: httpx.Client, device: dict[str, str]) -> None:
    found = await asyncio.to_thread(tenant.get, "/api/tenant/customers", params={"customerTitle": "Customer A"})
    customer = found.json()
    assigned = await asyncio.to_thread(tenant.post, f"/api/customer/{customer['id']['id']}/device/{device['id']}")
    assert assigned.status_code == 200, assigned.text
    cmd = {"cmdId": 3, "entityType": "DEVICE", "entityId": device["id"], "keys": "n"}
    for client, code in ((customer_b, 3), (other_tenant, 3), (customer_a, 0)):
        async with connect(f"{ws_url}/api/ws/plugins/telemetry?token={token_of(client)}") as ws:
            await ws.send(json.dumps({"tsSubCmds": [cmd], "attrSubCmds": [{**cmd, "cmdId": 4}]}))
            answers = {}
            for _ in range(2):
                update = await receive(ws)
                answers[update["subscriptionId"]] = update
            assert {answers[3]["errorCode"], answers[4]["errorCode"]} == {code}, answers
            if code:
                assert answers[3]["data"] is None and answers[3]["errorMsg"] == "Unauthorized"


async def test_bad_input_is_answered_and_the_socket_keeps_working(ws_url: str, tenant: httpx.Client,
                                                                 device: dict[str, str]) -> None:
    async with connect(f"{ws_url}/api/ws") as ws:
        await ws.send(json.dumps({"authCmd": {"cmdId": 0, "token": token_of(tenant)}}))
        await ws.send("{not json")
        assert await receive(ws) == {"subscriptionId": 1, "errorCode": 2, "errorMsg": "Failed to parse the payload",
                                     "data": None, "latestValues": {}}
        await ws.send(json.dumps({"cmds": [
            {"type": "BOGUS", "cmdId": 5},
            {"type": "TIMESERIES", "cmdId": 6, "entityType": "DEVICE", "entityId": "not-a-uuid"},
            {"type": "TIMESERIES", "cmdId": 7, "entityType": "WIDGET", "entityId": device["id"]},
            {"type": "TIMESERIES", "cmdId": 8, "entityType": "DEVICE", "entityId": device["id"], "keys": "n"},
        ]}))
        answers = [await receive(ws) for _ in range(4)]
        assert [(a["subscriptionId"], a["errorCode"]) for a in answers] == [(5, 2), (6, 2), (7, 2), (8, 0)]
        flood = [{"type": "TIMESERIES", "cmdId": n, "entityType": "DEVICE", "entityId": device["id"]}
                 for n in range(100, 400)]
        await ws.send(json.dumps({"cmds": flood}))
        refused = await receive(ws)
        assert (refused["subscriptionId"], refused["errorCode"]) == (100, 2)
        await ws.send(json.dumps({"cmds": [{"type": "TIMESERIES", "cmdId": 9, "entityType": "DEVICE",
                                            "entityId": device["id"]}]}))
        assert (await receive(ws))["subscriptionId"] == 9
