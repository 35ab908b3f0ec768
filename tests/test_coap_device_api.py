"""ThingsBoard's CoAP device API end to end: aiocoap as the device, the CoAP transport actor,
device actors in the shards, PostgreSQL, the REST API; a 2.01 means stored."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from typing import Any

import aiocoap
import httpx
import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code

from tests.conftest import eventually as _eventually
from tests.conftest import unique
from tests.rules.test_engine_e2e import save_rpc_answering_root_chain
from tests.test_device_provisioning import device_named, provisioning_profile

WAIT = 20.0  # a bound on waiting for what should happen at once; never a speed assertion


def eventually(check: Any, what: str = "condition") -> Any:
    return _eventually(check, what, WAIT)


class Observed:
    """The notifications of one observation, as they arrive."""

    def __init__(self, first: Message) -> None:
        self.first = first
        self.notifications: list[Message] = []

    def bodies(self) -> list[Any]:
        return [json.loads(m.payload) for m in list(self.notifications)]


class CoapDevice:
    """A device speaking CoAP from a thread of its own (its event loop must keep answering
    notifications while the test blocks on REST calls)."""

    def __init__(self, port: int, token: str) -> None:
        self.base = f"coap://127.0.0.1:{port}/api/v1"
        self.token = token
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.context: aiocoap.Context = self._run(aiocoap.Context.create_client_context(transports=["udp6"]))
        self._watchers: list[asyncio.Future[Any]] = []

    def _run(self, coro: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT + 5)

    def uri(self, path: str) -> str:
        return f"{self.base}/{self.token}/{path}" if path != "provision" else f"{self.base}/provision"

    async def _request(self, code: Code, path: str, payload: bytes, reliable: bool, options: dict[str, Any]
                       ) -> Message:
        tuning = aiocoap.Reliable if reliable else aiocoap.Unreliable
        message = Message(code=code, uri=self.uri(path), payload=payload, transport_tuning=tuning, **options)
        async with asyncio.timeout(WAIT):
            return await self.context.request(message).response

    def request(self, code: Code, path: str, body: Any = None, *, reliable: bool = True, **options: Any) -> Message:
        payload = body if isinstance(body, bytes) else b"" if body is None else json.dumps(body).encode()
        return self._run(self._request(code, path, payload, reliable, options))

    def observe(self, path: str, on_notification: Callable[[Message], Awaitable[None]] | None = None) -> Observed:
        """Register (Observe 0) and keep every later notification; ``on_notification`` runs on each."""
        async def start() -> tuple[Observed, asyncio.Future[Any]]:
            request = self.context.request(Message(code=Code.GET, uri=self.uri(path), observe=0))
            async with asyncio.timeout(WAIT):
                observed = Observed(await request.response)

            async def collect() -> None:
                async for notification in request.observation:
                    observed.notifications.append(notification)
                    if on_notification is not None:
                        await on_notification(notification)

            return observed, asyncio.ensure_future(collect())

        observed, watcher = self._run(start())
        self._watchers.append(watcher)
        return observed

    def answer(self, path: str, body: Any) -> Awaitable[Message]:
        """For use on the device's loop (inside ``on_notification``)."""
        return self._request(Code.POST, path, json.dumps(body).encode(), True, {})

    def close(self) -> None:
        async def shutdown() -> None:
            for watcher in self._watchers:
                watcher.cancel()
            await self.context.shutdown()

        self._run(shutdown())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


def make_device(client: httpx.Client) -> dict[str, str]:
    token = f"COAP-{uuid.uuid4().hex[:12]}"
    created = client.post("/api/device", params={"accessToken": token}, json={"name": unique("coap device")})
    assert created.status_code == 200, created.text
    return {"id": created.json()["id"]["id"], "token": token, "name": created.json()["name"]}


@pytest.fixture
def device(tenant: httpx.Client) -> dict[str, str]:
    return make_device(tenant)


@pytest.fixture
def coap(coap_port: int, device: dict[str, str]) -> Iterator[CoapDevice]:
    client = CoapDevice(coap_port, device["token"])
    try:
        yield client
    finally:
        client.close()


def rest_attributes(tenant: httpx.Client, device_id: str, scope: str) -> dict[str, Any]:
    answer = tenant.get(f"/api/plugins/telemetry/DEVICE/{device_id}/values/attributes/{scope}")
    assert answer.status_code == 200, answer.text
    return {a["key"]: a["value"] for a in answer.json()}


def test_posted_telemetry_is_stored_when_answered(tenant: httpx.Client, coap: CoapDevice,
                                                  device: dict[str, str]) -> None:
    posted = coap.request(Code.POST, "telemetry", [{"ts": 1_700_000_000_000, "values": {"temperature": 21.5}},
                                                   {"ts": 1_700_000_001_000, "values": {"temperature": 22}}])
    assert posted.code == Code.CREATED
    unreliable = coap.request(Code.POST, "telemetry", {"ts": 1_700_000_002_000, "values": {"on": True}},
                              reliable=False)
    assert unreliable.code == Code.CREATED
    # answered means stored: read back at once, no waiting
    answer = tenant.get(f"/api/plugins/telemetry/DEVICE/{device['id']}/values/timeseries",
                        params={"keys": "temperature,on", "startTs": 0, "endTs": 1_800_000_000_000, "limit": 10})
    assert answer.status_code == 200, answer.text
    assert [p["value"] for p in answer.json()["temperature"]] == ["22", "21.5"]
    assert [p["value"] for p in answer.json()["on"]] == ["true"]


def test_attributes_are_stored_and_requested_back(tenant: httpx.Client, coap: CoapDevice,
                                                  device: dict[str, str]) -> None:
    assert coap.request(Code.POST, "attributes", {"firmware": "1.2", "count": 3}).code == Code.CREATED
    assert rest_attributes(tenant, device["id"], "CLIENT_SCOPE") == {"firmware": 1.2, "count": 3}
    shared = tenant.post(f"/api/plugins/telemetry/DEVICE/{device['id']}/attributes/SHARED_SCOPE",
                         json={"target": 21, "mode": "eco"})
    assert shared.status_code == 200, shared.text
    answer = coap.request(Code.GET, "attributes", uri_query=("clientKeys=count,missing", "sharedKeys=target"))
    assert answer.code == Code.CONTENT
    assert json.loads(answer.payload) == {"client": {"count": 3}, "shared": {"target": 21}}
    assert coap.request(Code.GET, "attributes", uri_query=("clientKeys=nope", "sharedKeys=nope")).code == Code.NOT_FOUND


def test_observing_shared_attributes_set_over_rest(tenant: httpx.Client, coap: CoapDevice,
                                                   device: dict[str, str]) -> None:
    path = f"/api/plugins/telemetry/DEVICE/{device['id']}"
    assert tenant.post(f"{path}/attributes/SHARED_SCOPE", json={"mode": "eco"}).status_code == 200
    observed = coap.observe("attributes")
    assert observed.first.code == Code.CONTENT and json.loads(observed.first.payload) == {"mode": "eco"}
    assert tenant.post(f"{path}/attributes/SHARED_SCOPE", json={"target": 22}).status_code == 200
    eventually(lambda: {"target": 22} in observed.bodies(), "the shared attribute notification")
    assert tenant.delete(f"{path}/SHARED_SCOPE", params={"keys": "mode"}).status_code == 200
    eventually(lambda: {"deleted": ["mode"]} in observed.bodies(), "the deletion notification")
    assert rest_attributes(tenant, device["id"], "SERVER_SCOPE").get("lastConnectTime", 0) > 0


def test_a_server_rpc_is_answered_by_the_coap_device(tenant: httpx.Client, coap: CoapDevice,
                                                      device: dict[str, str]) -> None:
    requests: list[Any] = []

    async def answer(notification: Message) -> None:
        request = json.loads(notification.payload)
        requests.append(request)
        if request["method"] == "getTemp":
            replied = await coap.answer(f"rpc/{request['id']}", {"temp": 36.6, "unit": request["params"]["unit"]})
            assert replied.code == Code.CREATED

    observed = coap.observe("rpc", answer)
    assert observed.first.code == Code.VALID
    device_id = device["id"]
    called = tenant.post(f"/api/plugins/rpc/twoway/{device_id}", json={"method": "getTemp", "params": {"unit": "C"}})
    assert called.status_code == 200, called.text
    assert called.json() == {"temp": 36.6, "unit": "C"}
    assert requests[0]["method"] == "getTemp" and isinstance(requests[0]["id"], int)

    one_way = tenant.post(f"/api/plugins/rpc/oneway/{device_id}", json={"method": "blink", "params": 3})
    assert one_way.status_code == 200, one_way.text
    eventually(lambda: any(r["method"] == "blink" for r in requests), "the one-way RPC")
    blink = next(r for r in requests if r["method"] == "blink")
    assert blink["params"] == 3 and blink["id"] > requests[0]["id"]


def test_a_client_side_rpc_is_answered_by_the_chain(other_tenant: httpx.Client, coap_port: int) -> None:
    save_rpc_answering_root_chain(other_tenant)
    device = make_device(other_tenant)
    client = CoapDevice(coap_port, device["token"])
    try:
        answer = client.request(Code.POST, "rpc", {"method": "getTime", "params": {}})
        assert answer.code == Code.CONTENT
        assert json.loads(answer.payload) == {"time": 42, "asked": "getTime"}
    finally:
        client.close()


def test_a_claim_offers_the_device(tenant: httpx.Client, coap: CoapDevice, device: dict[str, str]) -> None:
    assert coap.request(Code.POST, "claim", {"secretKey": "s3cret", "durationMs": 60000}).code == Code.CREATED
    assert "claimingData" in rest_attributes(tenant, device["id"], "SERVER_SCOPE")  # answered once stored
    assert coap.request(Code.POST, "claim", {"durationMs": "soon"}).code == Code.BAD_REQUEST


def test_refusals_reach_the_device_and_store_nothing(tenant: httpx.Client, coap: CoapDevice, coap_port: int,
                                                     device: dict[str, str]) -> None:
    assert coap.request(Code.POST, "telemetry", b'{"temperature": ').code == Code.BAD_REQUEST
    assert coap.request(Code.POST, "telemetry", {"big": "x" * 70_000}).code == Code.REQUEST_ENTITY_TOO_LARGE
    stranger = CoapDevice(coap_port, f"NO-SUCH-{uuid.uuid4().hex}")
    try:
        assert stranger.request(Code.POST, "telemetry", {"a": 1}).code == Code.UNAUTHORIZED
        assert stranger.request(Code.GET, "attributes", observe=0).code == Code.UNAUTHORIZED
    finally:
        stranger.close()
    assert tenant.get(f"/api/plugins/telemetry/DEVICE/{device['id']}/keys/timeseries").json() == []


def test_a_device_provisions_itself_over_coap(tenant: httpx.Client, coap_port: int) -> None:
    _, key, secret = provisioning_profile(tenant, "ALLOW_CREATE_NEW_DEVICES")
    name = unique("coap provisioned")
    client = CoapDevice(coap_port, "")
    try:
        answer = client.request(Code.POST, "provision", {"deviceName": name, "provisionDeviceKey": key,
                                                         "provisionDeviceSecret": secret})
        assert answer.code == Code.CREATED, answer.payload
        credentials = json.loads(answer.payload)
        assert credentials["status"] == "SUCCESS" and credentials["credentialsType"] == "ACCESS_TOKEN"
        wrong = client.request(Code.POST, "provision", {"deviceName": unique("intruder"), "provisionDeviceKey": key,
                                                        "provisionDeviceSecret": "guess"})
        assert wrong.code == Code.BAD_REQUEST
        assert json.loads(wrong.payload) == {"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"}
    finally:
        client.close()
    found = device_named(tenant, name)
    assert found is not None
    provisioned = CoapDevice(coap_port, credentials["credentialsValue"])
    try:
        assert provisioned.request(Code.POST, "telemetry", {"provisioned": 1}).code == Code.CREATED
    finally:
        provisioned.close()
