"""ThingsBoard's query commands on /api/ws end to end: ENTITY_DATA (page, then live latest and time
series values from an MQTT device), ENTITY_COUNT, ALARM_DATA and ALARM_COUNT (alarms raised,
acknowledged and cleared over REST arrive live), tenant isolation, and bad commands."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
import weakref
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from tests.conftest import unique
from tests.test_ws import publish, receive, token_of


@pytest.fixture
def ws_url(base_url: str) -> str:
    return base_url.replace("http://", "ws://")


def make_device(client: httpx.Client) -> dict[str, str]:
    token = f"WSQ-{uuid.uuid4().hex[:12]}"
    name = unique("wsq device")
    created = client.post("/api/device", params={"accessToken": token}, json={"name": name})
    assert created.status_code == 200, created.text
    return {"id": created.json()["id"]["id"], "token": token, "name": name}


@pytest.fixture
def device(tenant: httpx.Client) -> dict[str, str]:
    return make_device(tenant)


async def send(ws: ClientConnection, client: httpx.Client, *cmds: dict[str, Any]) -> None:
    await ws.send(json.dumps({"authCmd": {"cmdId": 0, "token": token_of(client)}, "cmds": list(cmds)}))


_HELD: weakref.WeakKeyDictionary[ClientConnection, list[dict[str, Any]]] = weakref.WeakKeyDictionary()
"""Updates of other commands that arrived while a test waited for one command's: kept for later,
since two commands' updates may come in either order."""


async def next_for(ws: ClientConnection, cmd_id: int) -> dict[str, Any]:
    """The next update of command ``cmd_id``, in arrival order per command."""
    held = _HELD.setdefault(ws, [])
    for i, update in enumerate(held):
        if update.get("cmdId") == cmd_id:
            return held.pop(i)
    while True:
        update = await receive(ws)
        if update.get("cmdId") == cmd_id:
            return update
        held.append(update)


def device_query(name: str, *latest: str) -> dict[str, Any]:
    return {"entityFilter": {"type": "entityType", "entityType": "DEVICE"},
            "pageLink": {"pageSize": 10, "page": 0, "textSearch": name},
            "entityFields": [{"type": "ENTITY_FIELD", "key": "name"}],
            "latestValues": [{"type": "TIME_SERIES", "key": key} for key in latest]}


def single(device: dict[str, str]) -> dict[str, Any]:
    return {"type": "singleEntity", "singleEntity": {"entityType": "DEVICE", "id": device["id"]}}


def raise_alarm(client: httpx.Client, device: dict[str, str], alarm_type: str) -> dict[str, Any]:
    created = client.post("/api/alarm", json={"originator": {"entityType": "DEVICE", "id": device["id"]},
                                              "type": alarm_type, "severity": "CRITICAL"})
    assert created.status_code == 200, created.text
    return created.json()


async def test_entity_data_page_then_live_latest_and_time_series(
        ws_url: str, tenant: httpx.Client, device: dict[str, str], mqtt_port: int) -> None:
    now = int(time.time() * 1000)
    async with connect(f"{ws_url}/api/ws") as ws:
        await send(ws, tenant,
                   {"type": "ENTITY_DATA", "cmdId": 1, "query": device_query(device["name"]),
                    "latestCmd": {"keys": [{"type": "TIME_SERIES", "key": "temperature"}]}},
                   {"type": "ENTITY_DATA", "cmdId": 2, "query": device_query(device["name"]),
                    "tsCmd": {"keys": ["temperature"], "startTs": now - 60_000, "timeWindow": 24 * 3600_000}})
        first = await next_for(ws, 1)
        assert first["cmdUpdateType"] == "ENTITY_DATA" and first["errorCode"] == 0 and first["update"] is None
        page = first["data"]
        assert page["totalElements"] == 1 and [e["entityId"]["id"] for e in page["data"]] == [device["id"]]
        latest = page["data"][0]["latest"]
        assert latest["ENTITY_FIELD"]["name"]["value"] == device["name"]
        assert latest["TIME_SERIES"]["temperature"]["value"] == ""  # no value yet
        history = await next_for(ws, 2)
        assert history["data"]["data"][0]["timeseries"] == {"temperature": []}

        await asyncio.to_thread(publish, mqtt_port, device["token"], [{"temperature": 42}])
        update = await next_for(ws, 1)
        assert update["data"] is None and len(update["update"]) == 1
        changed = update["update"][0]
        assert changed["entityId"] == {"entityType": "DEVICE", "id": device["id"]}
        assert changed["latest"]["TIME_SERIES"]["temperature"]["value"] == "42"
        series = await next_for(ws, 2)
        assert [p["value"] for p in series["update"][0]["timeseries"]["temperature"]] == ["42"]

        # the same query again now finds the value; a historyCmd brings the point
        await send(ws, tenant, {"type": "ENTITY_DATA", "cmdId": 3, "query": device_query(device["name"], "temperature"),
                                "historyCmd": {"keys": ["temperature"], "startTs": now - 60_000,
                                               "endTs": now + 24 * 3600_000}})
        again = await next_for(ws, 3)
        entity = again["data"]["data"][0]
        assert entity["latest"]["TIME_SERIES"]["temperature"]["value"] == "42"
        assert [p["value"] for p in entity["timeseries"]["temperature"]] == ["42"]
        await send(ws, tenant, {"type": "ENTITY_DATA_UNSUBSCRIBE", "cmdId": 1},
                   {"type": "ENTITY_COUNT", "cmdId": 4, "query": {
                       "entityFilter": {"type": "entityName", "entityType": "DEVICE",
                                        "entityNameFilter": device["name"]}}})
        count = await next_for(ws, 4)
        assert count == {"cmdId": 4, "errorCode": 0, "errorMsg": None, "count": 1, "cmdUpdateType": "ENTITY_COUNT"}


async def test_alarm_data_and_count_follow_alarms_raised_acknowledged_and_cleared(
        ws_url: str, tenant: httpx.Client, device: dict[str, str]) -> None:
    async with connect(f"{ws_url}/api/ws") as ws:
        await send(ws, tenant,
                   {"type": "ALARM_DATA", "cmdId": 1, "query": {
                       "entityFilter": single(device),
                       "pageLink": {"pageSize": 10, "page": 0, "statusList": ["ACTIVE"],
                                    "searchPropagatedAlarms": False,
                                    "sortOrder": {"key": {"type": "ALARM_FIELD", "key": "createdTime"},
                                                  "direction": "DESC"}}}},
                   {"type": "ALARM_COUNT", "cmdId": 2, "query": {"entityFilter": single(device),
                                                                 "statusList": ["ACTIVE"]}})
        first = await next_for(ws, 1)
        assert first["cmdUpdateType"] == "ALARM_DATA" and first["errorCode"] == 0
        assert first["data"]["data"] == [] and first["totalEntities"] == 1
        assert (await next_for(ws, 2))["count"] == 0

        alarm = await asyncio.to_thread(raise_alarm, tenant, device, "High Temperature")
        raised = await next_for(ws, 1)
        [data] = raised["update"]
        assert data["id"] == alarm["id"] and data["status"] == "ACTIVE_UNACK" and data["type"] == "High Temperature"
        assert data["entityId"] == {"entityType": "DEVICE", "id": device["id"]} and data["originatorName"]
        assert (await next_for(ws, 2))["count"] == 1

        acked = await asyncio.to_thread(tenant.post, f"/api/alarm/{alarm['id']['id']}/ack")
        assert acked.status_code == 200, acked.text
        [data] = (await next_for(ws, 1))["update"]
        assert data["acknowledged"] is True and data["status"] == "ACTIVE_ACK" and data["ackTs"] > 0

        cleared = await asyncio.to_thread(tenant.post, f"/api/alarm/{alarm['id']['id']}/clear")
        assert cleared.status_code == 200, cleared.text
        refreshed = await next_for(ws, 1)  # no longer ACTIVE: the page again, without it
        assert refreshed["update"] is None and refreshed["data"]["data"] == []
        assert (await next_for(ws, 2))["count"] == 0


async def test_another_tenants_entities_and_alarms_never_appear(
        ws_url: str, tenant: httpx.Client, other_tenant: httpx.Client, device: dict[str, str]) -> None:
    foreign = await asyncio.to_thread(make_device, other_tenant)
    async with connect(f"{ws_url}/api/ws") as ws:
        both = {"type": "entityList", "entityType": "DEVICE", "entityList": [foreign["id"], device["id"]]}
        await send(ws, tenant,
                   {"type": "ENTITY_DATA", "cmdId": 1, "query": device_query(foreign["name"])},
                   {"type": "ALARM_DATA", "cmdId": 2, "query": {
                       "entityFilter": both, "pageLink": {"pageSize": 10, "page": 0}}},
                   {"type": "ENTITY_COUNT", "cmdId": 3, "query": {"entityFilter": both}})
        assert (await next_for(ws, 1))["data"]["data"] == []
        alarms = await next_for(ws, 2)
        assert alarms["data"]["data"] == [] and alarms["totalEntities"] == 1
        assert (await next_for(ws, 3))["count"] == 1

        await asyncio.to_thread(raise_alarm, other_tenant, foreign, "Foreign")
        own = await asyncio.to_thread(raise_alarm, tenant, device, "Own")
        update = await next_for(ws, 2)  # the foreign alarm, raised first, never arrives
        assert [a["id"] for a in update["update"]] == [own["id"]]


async def test_bad_query_commands_get_bad_request(ws_url: str, tenant: httpx.Client) -> None:
    async with connect(f"{ws_url}/api/ws") as ws:
        await send(ws, tenant,
                   {"type": "ENTITY_DATA", "cmdId": 1},
                   {"type": "ENTITY_DATA", "cmdId": 2, "query": {"entityFilter": {"type": "nope"},
                                                                 "pageLink": {"pageSize": 10}}},
                   {"type": "ALARM_DATA", "cmdId": 3, "query": {
                       "entityFilter": {"type": "entityType", "entityType": "DEVICE"},
                       "pageLink": {"pageSize": 10, "statusList": ["BOGUS"]}}},
                   {"type": "ALARM_COUNT", "cmdId": 4, "query": {"entityFilter": "DEVICE"}},
                   {"type": "ENTITY_COUNT", "cmdId": 5, "query": {"entityFilter": {"type": "entityType"}}},
                   {"type": "ENTITY_DATA", "cmdId": 6, "query": device_query("x"), "tsCmd": {"keys": []}})
        kinds = {1: "ENTITY_DATA", 2: "ENTITY_DATA", 3: "ALARM_DATA", 4: "ALARM_COUNT", 5: "ENTITY_COUNT",
                 6: "ENTITY_DATA"}
        for _ in kinds:
            update = await receive(ws)
            assert update["errorCode"] == 2, update
            assert update["cmdUpdateType"] == kinds[update["cmdId"]] and update["errorMsg"], update
