"""The WebSocket protocol alone: parsing commands, update shapes, per-command errors; and a
session over a fake socket and a fake live source (the database and tokens are real)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import httpx
import orjson
import pytest

from thingsray.kv import JsonValue
from thingsray.live import LiveUpdate
from thingsray.platform import Platform
from thingsray.serve_app.services import Services
from thingsray.serve_app.ws import protocol
from thingsray.serve_app.ws.protocol import CmdError, CmdType, ErrorCode, HistoryCmd, PayloadError, SubscriptionCmd
from thingsray.serve_app.ws.session import Endpoint, Limits, Subscription, WsSession
from thingsray.storage.timeseries import Aggregation


# --- parsing -------------------------------------------------------------------------------------
def test_plugin_message_runs_attribute_then_timeseries_then_history_commands() -> None:
    message = protocol.parse_plugin_message(orjson.dumps({
        "historyCmds": [{"cmdId": 3, "entityType": "DEVICE", "entityId": "x", "keys": "t", "startTs": 1,
                         "endTs": 9, "agg": "AVG", "interval": 2}],
        "tsSubCmds": [{"cmdId": 1, "entityType": "DEVICE", "entityId": "x", "keys": "a, b,,a", "timeWindow": 60}],
        "attrSubCmds": [{"cmdId": 2, "entityType": "DEVICE", "entityId": "x", "scope": "SHARED_SCOPE"}],
    }), max_cmds=10)
    assert message.token is None and not message.has_auth
    assert message.cmds == [
        SubscriptionCmd(CmdType.ATTRIBUTES, 2, "DEVICE", "x", None, "SHARED_SCOPE"),
        SubscriptionCmd(CmdType.TIMESERIES, 1, "DEVICE", "x", ("a", "b"), time_window=60),
        HistoryCmd(3, "DEVICE", "x", ("t",), 1, 9, 2, 100, Aggregation.AVG),
    ]


def test_general_message_carries_the_auth_token_and_typed_commands() -> None:
    message = protocol.parse_general_message(orjson.dumps({
        "authCmd": {"cmdId": 0, "token": "jwt"},
        "cmds": [{"type": "TIMESERIES", "cmdId": 4, "entityType": "DEVICE", "entityId": "x", "keys": ""},
                 {"type": "ATTRIBUTES", "cmdId": 5, "entityType": "DEVICE", "entityId": "x", "unsubscribe": True}],
    }), max_cmds=10)
    assert message.token == "jwt" and message.has_auth
    assert message.cmds == [SubscriptionCmd(CmdType.TIMESERIES, 4, "DEVICE", "x"),
                            SubscriptionCmd(CmdType.ATTRIBUTES, 5, "DEVICE", "x", unsubscribe=True)]


@pytest.mark.parametrize(("cmd", "code", "message"), [
    ({"type": "NOPE", "cmdId": 7}, ErrorCode.BAD_REQUEST, "Unknown command type: NOPE"),
    ({"cmdId": 7}, ErrorCode.BAD_REQUEST, "Command type is missing"),
    ({"type": "NOTIFICATIONS", "cmdId": 7}, ErrorCode.BAD_REQUEST, "Command type NOTIFICATIONS is not supported"),
    ({"type": "TIMESERIES", "cmdId": -1, "entityId": "x"}, ErrorCode.BAD_REQUEST, "Cmd id is negative value!"),
    ({"type": "TIMESERIES", "cmdId": 7, "entityType": "DEVICE"}, ErrorCode.BAD_REQUEST, "Device id is empty!"),
    ({"type": "TIMESERIES", "cmdId": 7, "entityType": "DEVICE", "entityId": "x", "limit": "ten"},
     ErrorCode.BAD_REQUEST, "'limit' must be an integer"),
    ({"type": "TIMESERIES", "cmdId": 7, "entityType": "DEVICE", "entityId": "x", "agg": "MEDIAN"},
     ErrorCode.BAD_REQUEST, "Invalid agg 'MEDIAN'"),
    ({"type": "ATTRIBUTES", "cmdId": 7, "entityType": "DEVICE", "entityId": "x", "scope": "ANY"},
     ErrorCode.BAD_REQUEST, "Invalid scope: ANY"),
    ({"type": "TIMESERIES_HISTORY", "cmdId": 7, "entityType": "DEVICE", "entityId": "x"},
     ErrorCode.BAD_REQUEST, "Keys are empty!"),
    ({"type": "TIMESERIES", "cmdId": 2**40}, ErrorCode.BAD_REQUEST, "'cmdId' is out of range"),
    ("not an object", ErrorCode.BAD_REQUEST, "A command must be a JSON object"),
])
def test_a_wrong_command_is_an_error_on_that_command_alone(cmd: Any, code: ErrorCode, message: str) -> None:
    good = {"type": "TIMESERIES", "cmdId": 8, "entityType": "DEVICE", "entityId": "y"}
    parsed = protocol.parse_general_message(orjson.dumps({"cmds": [cmd, good]}), max_cmds=10).cmds
    error = parsed[0]
    assert isinstance(error, CmdError) and error.code is code and error.message.startswith(message)
    expected_id = cmd["cmdId"] if isinstance(cmd, dict) and abs(cmd["cmdId"]) < 2**31 else protocol.PARSE_ERROR_ID
    assert error.cmd_id == expected_id
    assert parsed[1] == SubscriptionCmd(CmdType.TIMESERIES, 8, "DEVICE", "y")


@pytest.mark.parametrize("text", [b"{", b"[]", b"42", b'{"cmds": {}}', b'{"tsSubCmds": 3}', b'{"authCmd": 1}'])
def test_a_message_that_cannot_be_read_fails_as_a_whole(text: bytes) -> None:
    with pytest.raises(PayloadError):
        protocol.parse_general_message(text, 10) if b"tsSub" not in text else protocol.parse_plugin_message(text, 10)


def test_too_many_commands_in_one_message_are_refused_together() -> None:
    cmds = [{"type": "TIMESERIES", "cmdId": n, "entityType": "DEVICE", "entityId": "x"} for n in range(5, 10)]
    parsed = protocol.parse_general_message(orjson.dumps({"cmds": cmds}), max_cmds=4).cmds
    assert len(parsed) == 1 and isinstance(parsed[0], CmdError)
    assert (parsed[0].cmd_id, parsed[0].code) == (5, ErrorCode.BAD_REQUEST)
    assert "at most 4" in parsed[0].message


# --- shapes --------------------------------------------------------------------------------------
def test_updates_have_thingsboards_shape_with_nulls_written() -> None:
    update = protocol.data_update(3, {"b": [[2, "x"], [5, None]], "a": [[1, "1.5"]]})
    assert protocol.encode(update) == (
        '{"subscriptionId":3,"errorCode":0,"errorMsg":null,"data":{"a":[[1,"1.5"]],"b":[[2,"x"],[5,null]]},'
        '"latestValues":{"a":1,"b":5}}')
    assert protocol.encode(protocol.error_update(4, ErrorCode.UNAUTHORIZED)) == (
        '{"subscriptionId":4,"errorCode":3,"errorMsg":"Unauthorized","data":null,"latestValues":{}}')


@pytest.mark.parametrize(("value", "text"), [
    (25.0, "25.0"), (1e7, "1.0E7"), (42, "42"), (True, "true"), (False, "false"), ("on", "on"), (None, None),
    ({"a": [1, 2]}, '{"a":[1,2]}'), (JsonValue('{"k":1}'), '{"k":1}'),
])
def test_values_are_written_as_thingsboard_strings(value: Any, text: str | None) -> None:
    assert protocol.value_text(value) == text


def test_a_subscription_sends_only_what_it_watches() -> None:
    entity = uuid.uuid4()
    ts = Subscription(SubscriptionCmd(CmdType.TIMESERIES, 1, "DEVICE", str(entity), ("t",)), entity, frozenset({"t"}))
    assert ts.render(LiveUpdate(entity, "TIMESERIES", None, {"t": [(1, 20.5), (2, 21)], "h": [(1, 3)]})) == \
        protocol.data_update(1, {"t": [[1, "20.5"], [2, "21"]]})
    assert ts.render(LiveUpdate(entity, "TIMESERIES", None, {"h": [(1, 3)]})) is None
    assert ts.render(LiveUpdate(entity, "ATTRIBUTES", "SHARED_SCOPE", {"t": [(1, 3)]})) is None
    shared = Subscription(SubscriptionCmd(CmdType.ATTRIBUTES, 2, "DEVICE", str(entity), None, "SHARED_SCOPE"),
                          entity, None)
    assert shared.render(LiveUpdate(entity, "ATTRIBUTES", "SERVER_SCOPE", {"a": [(1, 1)]})) is None
    assert shared.render(LiveUpdate(entity, "ATTRIBUTES", "SHARED_SCOPE", {"a": [(7, "x")]}, ("gone",))) == \
        protocol.data_update(2, {"a": [[7, "x"]], "gone": [[0, ""]]})


# --- a session over a fake socket ----------------------------------------------------------------
class FakeSocket:
    def __init__(self, *, stuck: bool = False) -> None:
        self.inbox: asyncio.Queue[str | None] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed: tuple[int, str] | None = None
        self.stuck = stuck
        self.arrived = asyncio.Event()

    async def receive(self) -> str | None:
        return await self.inbox.get()

    async def send_text(self, text: str) -> None:
        if self.stuck:  # a client that never reads: its TCP window stays full
            await asyncio.Event().wait()
        self.sent.append(orjson.loads(text))
        self.arrived.set()

    async def close(self, code: int, reason: str) -> None:
        self.closed = (code, reason)
        await self.inbox.put(None)

    async def next(self) -> dict[str, Any]:
        while not self.sent:
            self.arrived.clear()
            await self.arrived.wait()
        return self.sent.pop(0)


class FakeLive:
    def __init__(self) -> None:
        self.sinks: dict[uuid.UUID, list[Callable[[LiveUpdate], None]]] = {}
        self.subscribed = asyncio.Event()

    async def subscribe(self, entity_id: uuid.UUID, sink: Callable[[LiveUpdate], None]
                        ) -> Callable[[], Awaitable[None]]:
        self.sinks.setdefault(entity_id, []).append(sink)
        self.subscribed.set()

        async def unsubscribe() -> None:
            self.sinks[entity_id].remove(sink)

        return unsubscribe

    def publish(self, update: LiveUpdate) -> None:
        for sink in list(self.sinks.get(update.entity_id, ())):
            sink(update)

    @property
    def count(self) -> int:
        return sum(len(s) for s in self.sinks.values())


@pytest.fixture(scope="module")
async def services(platform: Platform) -> AsyncIterator[Services]:
    assert platform.database_url is not None
    started = await Services.start(platform.settings, platform.database_url)
    try:
        yield started
    finally:
        await started.close()


def _token(client: httpx.Client) -> str:
    return client.headers["X-Authorization"].split()[1]


@pytest.fixture
def device_id(tenant: httpx.Client) -> str:
    created = tenant.post("/api/device", json={"name": f"ws unit {uuid.uuid4().hex[:8]}"})
    assert created.status_code == 200, created.text
    return created.json()["id"]["id"]


def _ts_cmd(cmd_id: int, device_id: str) -> str:
    return orjson.dumps({"cmds": [{"type": "TIMESERIES", "cmdId": cmd_id, "entityType": "DEVICE",
                                   "entityId": device_id, "keys": "t"}]}).decode()


async def _start(services: Services, socket: FakeSocket, live: FakeLive, limits: Limits,
                 token: str | None = None) -> asyncio.Task[None]:
    session = WsSession(services, socket, Endpoint.GENERAL, token=token, live=live, limits=limits)
    return asyncio.create_task(session.run())


async def test_a_client_that_does_not_read_is_closed_and_its_subscriptions_removed(
        services: Services, tenant: httpx.Client, device_id: str) -> None:
    socket, live = FakeSocket(stuck=True), FakeLive()
    run = await _start(services, socket, live, Limits(send_queue=5), _token(tenant))
    await socket.inbox.put(_ts_cmd(1, device_id))
    entity = uuid.UUID(device_id)
    await live.subscribed.wait()
    for n in range(10):
        live.publish(LiveUpdate(entity, "TIMESERIES", None, {"t": [(n, n)]}))
    await run
    assert socket.closed == (1008, "Max pending updates limit reached!")
    assert live.count == 0


async def test_subscriptions_beyond_the_limit_are_refused_and_the_socket_stays(
        services: Services, tenant: httpx.Client, device_id: str) -> None:
    socket, live = FakeSocket(), FakeLive()
    run = await _start(services, socket, live, Limits(max_subscriptions=2), _token(tenant))
    for cmd_id in (1, 2, 3):
        await socket.inbox.put(_ts_cmd(cmd_id, device_id))
    answers = [await socket.next() for _ in range(3)]
    assert [(a["subscriptionId"], a["errorCode"]) for a in answers] == [(1, 0), (2, 0), (3, 2)]
    assert answers[2]["errorMsg"] == "Max subscriptions per session limit reached: 2"
    await socket.inbox.put(orjson.dumps({"cmds": [{"type": "TIMESERIES", "cmdId": 1, "entityType": "DEVICE",
                                                   "entityId": device_id, "unsubscribe": True}]}).decode())
    await socket.inbox.put(_ts_cmd(3, device_id))
    assert (await socket.next())["subscriptionId"] == 3
    live.publish(LiveUpdate(uuid.UUID(device_id), "TIMESERIES", None, {"t": [(5, 1.5)]}))
    got = sorted([await socket.next(), await socket.next()], key=lambda u: u["subscriptionId"])
    assert [(u["subscriptionId"], u["data"]) for u in got] == [(2, {"t": [[5, "1.5"]]}), (3, {"t": [[5, "1.5"]]})]
    assert socket.closed is None
    await socket.inbox.put(None)  # the client goes away
    await run
    assert live.count == 0


async def test_values_committed_while_the_first_update_is_read_follow_it(
        services: Services, tenant: httpx.Client, device_id: str) -> None:
    socket, live = FakeSocket(), FakeLive()
    entity = uuid.UUID(device_id)

    class PublishingLive(FakeLive):
        async def subscribe(self, entity_id: uuid.UUID, sink: Callable[[LiveUpdate], None]
                            ) -> Callable[[], Awaitable[None]]:
            undo = await super().subscribe(entity_id, sink)
            self.publish(LiveUpdate(entity, "TIMESERIES", None, {"t": [(9, 9)]}))  # before the read ends
            return undo

    live = PublishingLive()
    run = await _start(services, socket, live, Limits(), _token(tenant))
    await socket.inbox.put(_ts_cmd(1, device_id))
    first, second = await socket.next(), await socket.next()
    assert first["data"]["t"][0][1] is None  # no value yet: ThingsBoard answers the key with null
    assert second["data"] == {"t": [[9, "9"]]}
    await socket.inbox.put(None)
    await run


@pytest.mark.parametrize(("first", "closed"), [
    ('{"cmds": []}', (1008, "Auth cmd is missing")),
    ('{"authCmd": {"cmdId": 0, "token": "not-a-jwt"}}', (1007, "Invalid JWT token")),
    ("{", None),
])
async def test_a_socket_without_a_valid_auth_cmd_is_closed(services: Services, first: str,
                                                           closed: tuple[int, str] | None) -> None:
    socket, live = FakeSocket(), FakeLive()
    run = await _start(services, socket, live, Limits())
    await socket.inbox.put(first)
    await run
    assert socket.sent == []
    if closed is None:
        assert socket.closed is not None and socket.closed[0] == 1007
    else:
        assert socket.closed == closed


async def test_no_auth_cmd_in_time_closes_with_policy_violation(services: Services) -> None:
    socket = FakeSocket()
    await (await _start(services, socket, FakeLive(), Limits(auth_timeout=0.1)))
    assert socket.closed == (1008, "")


async def test_a_token_that_expires_closes_the_socket(services: Services, tenant: httpx.Client) -> None:
    from thingsray.serve_app.security import TokenService

    user = (await asyncio.to_thread(tenant.get, "/api/auth/user")).json()
    short = TokenService(services.tokens._secret, 1, 60).issue(user).token
    socket = FakeSocket()
    await (await _start(services, socket, FakeLive(), Limits(), short))
    assert socket.closed == (1011, "Token has expired")
