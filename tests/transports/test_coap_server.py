"""The CoAP transport on its own, behind an in-memory platform, driven by a real client (aiocoap)
and by raw datagrams for what clients never send."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import aiocoap
import pytest
from aiocoap import Message
from aiocoap.numbers.codes import Code
from aiocoap.numbers.types import Type

from tests.transports.memory_service import MemoryService
from thingsray.transports.coap import CoapOptions, CoapServer
from thingsray.transports.coap.paths import Feature, Route, RouteError, route
from thingsray.transports.payloads import JsonValue, TelemetryGroup

WAIT = 10.0  # a bound on waiting for something that should happen at once; never a speed assertion
TOKEN = "COAP-TOKEN"


@dataclass
class GatedService(MemoryService):
    """Telemetry is "durably processed" only once the test opens the gate."""

    gate: asyncio.Event = field(default_factory=asyncio.Event)
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def post_telemetry(self, device: Any, groups: Any, msg_id: Any, received_ts: int) -> None:
        self.arrived.set()
        await self.gate.wait()
        await super().post_telemetry(device, groups, msg_id, received_ts)


class Coap:
    """The server, its in-memory platform, and an aiocoap client."""

    def __init__(self, service: MemoryService, server: CoapServer, client: aiocoap.Context) -> None:
        self.service = service
        self.server = server
        self.client = client
        self.device = service.add_token(TOKEN, "coap device")

    def uri(self, path: str, token: str = TOKEN) -> str:
        return f"coap://127.0.0.1:{self.server.port}/api/v1/{token}/{path}"

    async def request(self, code: Code, path: str, payload: bytes = b"", *, token: str = TOKEN,
                      reliable: bool = True, **options: Any) -> Message:
        tuning = aiocoap.Reliable if reliable else aiocoap.Unreliable
        message = Message(code=code, uri=self.uri(path, token), payload=payload, transport_tuning=tuning, **options)
        async with asyncio.timeout(WAIT):
            return await self.client.request(message).response


async def running(service: MemoryService, options: CoapOptions | None = None) -> AsyncIterator[Coap]:
    server = CoapServer(service, "127.0.0.1", 0, options=options)
    await server.start()
    client = await aiocoap.Context.create_client_context(transports=["udp6"])
    try:
        yield Coap(service, server, client)
    finally:
        await client.shutdown()
        await server.stop()


@pytest.fixture
async def coap() -> AsyncIterator[Coap]:
    async for running_coap in running(MemoryService()):
        yield running_coap


async def eventually(check: Any, what: str = "condition") -> Any:
    async with asyncio.timeout(WAIT):
        while not (result := check()):  # noqa: ASYNC110 (a predicate over plain state, no event to wait on)
            await asyncio.sleep(0.01)
    return result


class RawPeer:
    """A UDP socket speaking CoAP by hand: explicit tokens, deregistration, and garbage."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.bind(("127.0.0.1", 0))
        self._mid = 100

    def send_raw(self, data: bytes) -> None:
        self.sock.sendto(data, ("127.0.0.1", self.port))

    def send(self, code: Code, path: tuple[str, ...], *, token: bytes, mtype: Type = Type.CON,
             payload: bytes = b"", **options: Any) -> int:
        message = Message(code=code, payload=payload, uri_path=path, **options)
        message.mtype, message.token = mtype, token
        message.mid = self._mid = self._mid + 1
        self.send_raw(message.encode())
        return message.mid

    def ack(self, message: Message) -> None:
        reply = Message(code=Code.EMPTY)
        reply.mtype, reply.mid = Type.ACK, message.mid
        self.send_raw(reply.encode())

    async def receive(self) -> Message:
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(WAIT):
            while True:
                message = Message.decode((await loop.sock_recvfrom(self.sock, 65536))[0])
                if message.code != Code.EMPTY:
                    return message

    def close(self) -> None:
        self.sock.close()


# --- uploads: answered once durably processed ----------------------------------------------------

async def test_telemetry_is_answered_created_only_once_the_platform_processed_it() -> None:
    service = GatedService()
    async for coap in running(service):
        pending = asyncio.ensure_future(coap.request(Code.POST, "telemetry", b'{"temperature": 21.5}'))
        await asyncio.wait_for(service.arrived.wait(), WAIT)
        await asyncio.sleep(0.3)  # room for a wrong early answer to arrive (and for the server's empty ACK)
        assert not pending.done() and service.telemetry == []
        service.gate.set()
        answer = await pending
        assert answer.code == Code.CREATED
        assert service.telemetry == [("coap device", TelemetryGroup(None, {"temperature": 21.5}))]


async def test_past_the_inflight_limit_requests_are_refused_503_until_room_is_made() -> None:
    service = GatedService()
    async for coap in running(service, CoapOptions(max_inflight_requests=1)):
        pending = asyncio.ensure_future(coap.request(Code.POST, "telemetry", b'{"first": 1}'))
        await asyncio.wait_for(service.arrived.wait(), WAIT)
        assert (await coap.request(Code.POST, "attributes", b'{"a": 1}')).code == Code.SERVICE_UNAVAILABLE
        service.gate.set()
        assert (await pending).code == Code.CREATED
        assert (await coap.request(Code.POST, "attributes", b'{"a": 1}')).code == Code.CREATED
        assert coap.service.attributes == {"coap device": {"a": 1}}


@pytest.mark.parametrize("reliable", [True, False], ids=["CON", "NON"])
async def test_telemetry_and_attributes_over_confirmable_and_non_confirmable(coap: Coap, reliable: bool) -> None:
    posted = await coap.request(Code.POST, "telemetry", b'[{"ts": 1700000000000, "values": {"t": 1}}, {"on": true}]',
                                reliable=reliable)
    assert posted.code == Code.CREATED
    assert posted.mtype is (Type.ACK if reliable else Type.NON)
    attributes = await coap.request(Code.POST, "attributes", b'{"fw": "1.2", "cfg": {"a": [1]}}', reliable=reliable)
    assert attributes.code == Code.CREATED
    assert coap.service.telemetry == [("coap device", TelemetryGroup(1_700_000_000_000, {"t": 1})),
                                      ("coap device", TelemetryGroup(None, {"on": True}))]
    assert coap.service.attributes["coap device"] == {"fw": 1.2, "cfg": JsonValue.of({"a": [1]})}


async def test_a_large_payload_arrives_blockwise_and_an_oversized_one_is_refused(coap: Coap) -> None:
    big = json.dumps({"blob": "x" * 3000}).encode()  # past one datagram's block: aiocoap sends Block1
    assert (await coap.request(Code.POST, "telemetry", big)).code == Code.CREATED
    assert coap.service.telemetry == [("coap device", TelemetryGroup(None, {"blob": "x" * 3000}))]
    huge = json.dumps({"blob": "x" * 70_000}).encode()
    refused = await coap.request(Code.POST, "telemetry", huge)
    assert refused.code == Code.REQUEST_ENTITY_TOO_LARGE
    assert refused.opt.size1 == 65536
    assert len(coap.service.telemetry) == 1


# --- attribute requests --------------------------------------------------------------------------

async def test_attribute_request_answers_sections_that_have_attributes_and_404_when_none(coap: Coap) -> None:
    await coap.request(Code.POST, "attributes", b'{"fw": "1.2", "count": 3}')
    coap.service.shared["coap device"] = {"target": 21}
    both = await coap.request(Code.GET, "attributes", uri_query=("clientKeys=count,missing", "sharedKeys=target"))
    assert both.code == Code.CONTENT
    assert both.opt.content_format == 50  # application/json
    assert json.loads(both.payload) == {"client": {"count": 3}, "shared": {"target": 21}}
    only_client = await coap.request(Code.GET, "attributes", uri_query=("clientKeys=fw", "sharedKeys=nope"))
    assert json.loads(only_client.payload) == {"client": {"fw": 1.2}}
    everything = await coap.request(Code.GET, "attributes")
    assert json.loads(everything.payload) == {"client": {"fw": 1.2, "count": 3}, "shared": {"target": 21}}
    none = await coap.request(Code.GET, "attributes", uri_query=("clientKeys=nope",))
    assert none.code == Code.NOT_FOUND


# --- claim, RPC, provisioning --------------------------------------------------------------------

async def test_claim_with_and_without_a_body(coap: Coap) -> None:
    claimed = await coap.request(Code.POST, "claim", b'{"secretKey": "s3cret", "durationMs": 60000}')
    assert claimed.code == Code.CREATED
    assert (await coap.request(Code.POST, "claim")).code == Code.CREATED
    assert (await coap.request(Code.POST, "claim", b'{"durationMs": "soon"}')).code == Code.BAD_REQUEST
    assert coap.service.claims == [("coap device", "s3cret", 60000), ("coap device", None, None)]


async def test_the_device_answers_a_server_rpc_by_its_id(coap: Coap) -> None:
    answered = await coap.request(Code.POST, "rpc/7", b'{"temp": 36.6}')
    assert answered.code == Code.CREATED
    assert coap.service.rpc_responses == {7: {"temp": 36.6}}
    assert (await coap.request(Code.POST, "rpc/not-a-number", b"{}")).code == Code.BAD_REQUEST


async def test_client_side_rpc_is_answered_with_the_chains_answer(coap: Coap) -> None:
    answer = await coap.request(Code.POST, "rpc", b'{"method": "getTime", "params": {"tz": "UTC"}}')
    assert answer.code == Code.CONTENT
    assert json.loads(answer.payload) == {"echo": {"tz": "UTC"}, "method": "getTime"}
    unanswered = await coap.request(Code.POST, "rpc", b'{"method": "silent", "params": {}}')
    assert unanswered.code == Code.GATEWAY_TIMEOUT
    failed = await coap.request(Code.POST, "rpc", b'{"method": "fail", "params": {}}')
    assert failed.code == Code.INTERNAL_SERVER_ERROR
    assert (await coap.request(Code.POST, "rpc", b'{"params": {}}')).code == Code.BAD_REQUEST


async def test_provisioning_answers_the_platforms_json(coap: Coap) -> None:
    uri = f"coap://127.0.0.1:{coap.server.port}/api/v1/provision"
    request = {"deviceName": "new one", "provisionDeviceKey": "KEY", "provisionDeviceSecret": "SECRET"}
    async def post(body: bytes) -> Message:
        async with asyncio.timeout(WAIT):
            return await coap.client.request(Message(code=Code.POST, uri=uri, payload=body)).response

    done = await post(json.dumps(request).encode())
    wrong = await post(json.dumps({**request, "provisionDeviceSecret": "nope"}).encode())
    garbage = await post(b"{nope")
    assert done.code == Code.CREATED
    assert json.loads(done.payload) == {"credentialsType": "ACCESS_TOKEN", "credentialsValue": "token-of-new one",
                                        "status": "SUCCESS"}
    assert wrong.code == Code.BAD_REQUEST and json.loads(wrong.payload)["status"] == "NOT_FOUND"
    assert garbage.code == Code.BAD_REQUEST
    provisioned = await coap.request(Code.POST, "telemetry", b'{"a": 1}', token="token-of-new one")
    assert provisioned.code == Code.CREATED


# --- refusals ------------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["telemetry", "attributes", "claim", "rpc"])
async def test_malformed_json_is_400_and_not_stored(coap: Coap, path: str) -> None:
    answer = await coap.request(Code.POST, path, b'{"temperature": ')
    assert answer.code == Code.BAD_REQUEST
    assert b"JSON" in answer.payload
    assert coap.service.telemetry == [] and coap.service.attributes == {} and coap.service.claims == []


async def test_bad_values_and_shapes_are_400(coap: Coap) -> None:
    assert (await coap.request(Code.POST, "telemetry", b'{"big": 123456789012345678901234}')).code == Code.BAD_REQUEST
    assert (await coap.request(Code.POST, "telemetry", b"")).code == Code.BAD_REQUEST
    assert (await coap.request(Code.POST, "attributes", b"[1, 2]")).code == Code.BAD_REQUEST
    assert coap.service.telemetry == [] and coap.service.attributes == {}


@pytest.mark.parametrize("method", [Code.POST, Code.GET])
async def test_an_unknown_token_is_401(coap: Coap, method: Code) -> None:
    answer = await coap.request(method, "attributes", b'{"a": 1}' if method == Code.POST else b"", token="NO-SUCH")
    assert answer.code == Code.UNAUTHORIZED
    observed = await coap.request(Code.GET, "attributes", token="NO-SUCH", observe=0)
    assert observed.code == Code.UNAUTHORIZED
    assert coap.service.attributes == {} and coap.service.events == []


async def test_paths_features_and_methods_the_api_does_not_have(coap: Coap) -> None:
    base = f"coap://127.0.0.1:{coap.server.port}"

    async def send(code: Code, uri: str) -> Code:
        async with asyncio.timeout(WAIT):
            return (await coap.client.request(Message(code=code, uri=uri, payload=b"{}")).response).code

    assert await send(Code.POST, f"{base}/api/v1/telemetry") == Code.UNAUTHORIZED  # the token is missing
    assert await send(Code.POST, f"{base}/api/v1/{TOKEN}/nothing") == Code.BAD_REQUEST
    assert await send(Code.POST, f"{base}/api/v1") == Code.BAD_REQUEST
    assert await send(Code.POST, f"{base}/elsewhere") == Code.NOT_FOUND
    assert await send(Code.PUT, f"{base}/api/v1/{TOKEN}/telemetry") == Code.METHOD_NOT_ALLOWED
    assert await send(Code.GET, f"{base}/api/v1/{TOKEN}/telemetry") == Code.BAD_REQUEST
    assert await send(Code.GET, f"{base}/api/v1/{TOKEN}/rpc") == Code.BAD_REQUEST  # RPC is only observed
    assert coap.server.stats()["answers"]["4.00 Bad Request"] == 4


def test_routes_follow_thingsboards_path_scheme() -> None:
    assert route(("api", "v1", "tok", "telemetry")) == Route(Feature.TELEMETRY, "tok")
    assert route(("api", "v1", "tok", "RPC", "12")) == Route(Feature.RPC, "tok", "12")
    assert route(("api", "v1", "provision")) == Route(Feature.PROVISION, None)
    for path, code in [(("api", "v1", "attributes"), Code.UNAUTHORIZED), (("api", "v1", "rpc", "3"), Code.UNAUTHORIZED),
                       (("api", "v1", "tok"), Code.BAD_REQUEST), (("api", "v1", "tok", "x"), Code.BAD_REQUEST),
                       (("api", "v2", "tok", "telemetry"), Code.NOT_FOUND), ((), Code.NOT_FOUND)]:
        with pytest.raises(RouteError) as refused:
            route(path)
        assert refused.value.code == code, path


# --- observations --------------------------------------------------------------------------------

async def test_observing_shared_attributes_and_rpc_shares_one_platform_session(coap: Coap) -> None:
    service, device = coap.service, coap.device
    service.shared["coap device"] = {"mode": "eco"}
    attributes = coap.client.request(Message(code=Code.GET, uri=coap.uri("attributes"), observe=0))
    first = await asyncio.wait_for(attributes.response, WAIT)
    assert first.code == Code.CONTENT and first.opt.observe is not None
    assert json.loads(first.payload) == {"mode": "eco"}  # the shared state first, as ThingsBoard sends it
    rpc = coap.client.request(Message(code=Code.GET, uri=coap.uri("rpc"), observe=0))
    registered = await asyncio.wait_for(rpc.response, WAIT)
    assert registered.code == Code.VALID and registered.opt.observe is not None
    await eventually(lambda: device.device_id in service.rpc_sinks, "the RPC subscription")
    assert service.events == ["connect coap device"]  # one session for both observations
    assert coap.server.session_count == 1
    assert service.attribute_sinks[device.device_id] is service.rpc_sinks[device.device_id]

    updates = aiter(attributes.observation)
    await service.share(device, {"target": 22})
    assert json.loads((await asyncio.wait_for(anext(updates), WAIT)).payload) == {"target": 22}
    from thingsray.transports.service import AttributeUpdate
    await service.attribute_sinks[device.device_id].push_attributes(AttributeUpdate({"x": 1}, ("mode",)))
    assert json.loads((await asyncio.wait_for(anext(updates), WAIT)).payload) == {"x": 1, "deleted": ["mode"]}

    requests = aiter(rpc.observation)
    delivered = asyncio.ensure_future(service.call(device, 5, "setMode", {"mode": "on"}))
    notification = await asyncio.wait_for(anext(requests), WAIT)
    assert json.loads(notification.payload) == {"id": 5, "method": "setMode", "params": {"mode": "on"}}
    assert await asyncio.wait_for(delivered, WAIT) is True  # the confirmable notification was acknowledged


async def test_deregistering_with_observe_1_ends_the_observation_and_the_last_one_the_session(coap: Coap) -> None:
    service, device = coap.service, coap.device
    peer = RawPeer(coap.server.port)
    try:
        for token, feature in ((b"at", "attributes"), (b"rp", "rpc")):
            peer.send(Code.GET, ("api", "v1", TOKEN, feature), token=token, observe=0)
            assert (await peer.receive()).opt.observe is not None
        await eventually(lambda: device.device_id in service.rpc_sinks, "the RPC subscription")
        peer.send(Code.GET, ("api", "v1", TOKEN, "attributes"), token=b"at", observe=1)
        answer = await peer.receive()
        assert answer.code == Code.DELETED and answer.token == b"at"
        await eventually(lambda: device.device_id not in service.attribute_sinks, "the attribute unsubscription")
        assert service.events == ["connect coap device"] and device.device_id in service.rpc_sinks
        peer.send(Code.GET, ("api", "v1", TOKEN, "rpc"), token=b"rp", observe=1)
        assert (await peer.receive()).code == Code.DELETED
        await eventually(lambda: service.events == ["connect coap device", "disconnect coap device"], "the disconnect")
        assert coap.server.session_count == 0
    finally:
        peer.close()


async def test_a_client_that_resets_a_confirmable_notification_is_disconnected(coap: Coap) -> None:
    service, device = coap.service, coap.device
    rpc = coap.client.request(Message(code=Code.GET, uri=coap.uri("rpc"), observe=0))
    await asyncio.wait_for(rpc.response, WAIT)
    await eventually(lambda: device.device_id in service.rpc_sinks, "the RPC subscription")
    rpc.observation.cancel()  # aiocoap takes one more notification, then resets the next
    assert await asyncio.wait_for(service.call(device, 1, "m", {}), WAIT) is True
    assert await asyncio.wait_for(service.call(device, 2, "m", {}), WAIT) is False
    await eventually(lambda: "disconnect coap device" in service.events, "the disconnect")
    assert coap.server.session_count == 0
    assert await asyncio.wait_for(service.call(device, 3, "m", {}), WAIT) is False  # nothing left to deliver to


async def test_non_confirmable_observations_get_non_confirmable_notifications(coap: Coap) -> None:
    service, device = coap.service, coap.device
    peer = RawPeer(coap.server.port)
    try:
        peer.send(Code.GET, ("api", "v1", TOKEN, "rpc"), token=b"n1", mtype=Type.NON, observe=0)
        assert (await peer.receive()).mtype is Type.NON
        await eventually(lambda: device.device_id in service.rpc_sinks, "the RPC subscription")
        assert await asyncio.wait_for(service.call(device, 3, "m", [1]), WAIT) is True  # sent counts as delivered
        notification = await peer.receive()
        assert notification.mtype is Type.NON and json.loads(notification.payload) == {"id": 3, "method": "m",
                                                                                        "params": [1]}
    finally:
        peer.close()


async def test_a_new_registration_of_a_feature_replaces_the_old_one(coap: Coap) -> None:
    service, device = coap.service, coap.device
    peer = RawPeer(coap.server.port)
    try:
        peer.send(Code.GET, ("api", "v1", TOKEN, "attributes"), token=b"o1", mtype=Type.NON, observe=0)
        await peer.receive()
        peer.send(Code.GET, ("api", "v1", TOKEN, "attributes"), token=b"o2", mtype=Type.NON, observe=0)
        answers = {m.token: m for m in [await peer.receive(), await peer.receive()]}
        assert answers[b"o1"].code == Code.DELETED and answers[b"o1"].opt.observe is None
        assert answers[b"o2"].code == Code.CONTENT
        await service.share(device, {"k": 1})
        update = await peer.receive()
        assert update.token == b"o2" and json.loads(update.payload) == {"k": 1}
        assert service.events == ["connect coap device"]
    finally:
        peer.close()


async def test_the_platform_closing_the_session_ends_its_observations(coap: Coap) -> None:
    service, device = coap.service, coap.device
    peer = RawPeer(coap.server.port)
    try:
        peer.send(Code.GET, ("api", "v1", TOKEN, "attributes"), token=b"cl", mtype=Type.NON, observe=0)
        assert (await peer.receive()).code == Code.CONTENT
        await eventually(lambda: device.device_id in service.sessions, "the session")
        await service.sessions[device.device_id].close("another session of the device connected")
        last = await peer.receive()
        assert last.token == b"cl" and last.code == Code.DELETED and last.opt.observe is None  # ends the observation
        await eventually(lambda: "disconnect coap device" in service.events, "the disconnect")
        assert coap.server.session_count == 0
    finally:
        peer.close()


# --- what clients never send ---------------------------------------------------------------------

async def test_garbage_datagrams_and_bad_options_harm_no_one(coap: Coap) -> None:
    peer = RawPeer(coap.server.port)
    try:
        peer.send_raw(b"\xff\x00garbage")  # not CoAP at all
        peer.send_raw(b"\x40")  # a truncated header
        peer.send_raw(bytes([0x40, 0x02, 0x00, 0x01, 0xB2, 0xFF, 0xFE]))  # a Uri-Path that is not UTF-8
        peer.send(Code.POST, ("api", "v1", TOKEN, "telemetry"), token=b"c", payload=b'{"a": 1}', if_none_match=True)
        refused = await peer.receive()
        assert refused.code == Code.BAD_OPTION  # If-None-Match is critical and not understood
        await eventually(lambda: coap.server.stats()["malformed_datagrams"] >= 3, "the malformed datagrams counted")
        assert (await coap.request(Code.POST, "telemetry", b'{"after": 1}')).code == Code.CREATED
        assert coap.service.telemetry == [("coap device", TelemetryGroup(None, {"after": 1}))]
    finally:
        peer.close()
