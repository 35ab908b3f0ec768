"""The external nodes (REST API call, MQTT, send email) against real servers: an HTTP server and
an SMTP server started here, and the machine's Mosquitto. Each node runs in a chain of the real
engine: what it routes later (by its continuation) is caught by the nodes after it."""

from __future__ import annotations

import asyncio
import base64
import email
import email.policy
import json
import socket
import ssl
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from tests.rules.conftest import EngineHarness
from tests.rules.test_engine_e2e import eventually, make_device, mqtt, node, publish, save_root_chain, series
from tests.transports.test_mqtt_tls import make_pki
from thingsray.rules.engine import ChainRuntime
from thingsray.rules.model import Connection, NodeSpec, RuleChainMetadata
from thingsray.rules.msg import TbMsg
from thingsray.rules.node import NodeConfigError, Outputs, RuleNode

WAIT = 20.0  # a bound on waiting for an answer that should come at once; never a speed assertion
P = "org.thingsboard.rule.engine."
REST = P + "rest.TbRestApiCallNode"
MQTT = P + "mqtt.TbMqttNode"
MAIL = P + "mail.TbSendEmailNode"


# --- running a node in a chain ----------------------------------------------------------------
class Catch(RuleNode):
    """Stands for the nodes after the one under test: hands what reaches it to the test."""

    type = "test.Catch"

    def __init__(self, relation: str, caught: asyncio.Queue[tuple[str, TbMsg]]) -> None:
        self.relation = relation
        self.caught = caught

    async def process(self, ctx: Any, msg: TbMsg) -> Outputs:
        self.caught.put_nowait((self.relation, msg))
        return []


class Chain:
    """The node under test, its Success and Failure caught."""

    def __init__(self, engine: EngineHarness, under_test: RuleNode) -> None:
        self.engine = engine
        self.caught: asyncio.Queue[tuple[str, TbMsg]] = asyncio.Queue()
        meta = RuleChainMetadata(None, 0, nodes=(NodeSpec(under_test.type, "under test", {}),
                                                 NodeSpec(Catch.type, "success", {}),
                                                 NodeSpec(Catch.type, "failure", {})),
                                 connections=(Connection(0, 1, "Success"), Connection(0, 2, "Failure")))
        self.runtime = ChainRuntime(engine.tenant_id, uuid.uuid4(), "external nodes", meta,
                                    [under_test, Catch("Success", self.caught), Catch("Failure", self.caught)])

    async def send(self, msg: TbMsg) -> None:
        """Run the message through the node; returns when the engine is done with it (the
        node's call may still be out)."""
        await (await self.engine.rules.process(msg, start=(self.runtime, 0)))

    async def next(self) -> tuple[str, TbMsg]:
        return await asyncio.wait_for(self.caught.get(), WAIT)

    async def outcome(self, msg: TbMsg) -> tuple[str, TbMsg]:
        await self.send(msg)
        return await self.next()

    async def close(self) -> None:
        await self.runtime.close()


@pytest.fixture
async def chain_of(engine: EngineHarness) -> AsyncIterator[Any]:
    made: list[Chain] = []

    def make(node_type: str, configuration: dict[str, Any]) -> Chain:
        chain = Chain(engine, engine.build(node_type, configuration))
        made.append(chain)
        return chain

    yield make
    for chain in made:
        await chain.close()


async def until(check: Callable[[], bool], what: str) -> None:
    """Wait, without blocking the loop, for what should happen at once."""
    deadline = time.monotonic() + WAIT
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {WAIT} s")
        await asyncio.sleep(0.02)


def closed_port() -> int:
    """A local port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- an HTTP server -------------------------------------------------------------------------------
@dataclass
class HttpEndpoint:
    """A real HTTP server on 127.0.0.1 in a thread of its own (so it also serves while a
    synchronous test waits). ``/echo/...`` answers what it got; ``/status/{code}`` answers that
    status; ``/hold`` answers only once ``release`` is set; ``/big`` answers 300 KB."""

    url: str = ""
    received: list[dict[str, Any]] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    holding: int = 0
    most_at_once: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def _record(self, request: Request) -> dict[str, Any]:
        seen = {"method": request.method, "path": request.url.path, "query": request.url.query,
                "headers": dict(request.headers), "body": (await request.body()).decode()}
        with self.lock:
            self.received.append(seen)
        return seen

    async def echo(self, request: Request) -> Response:
        seen = await self._record(request)
        headers = [(b"x-answer", b"42"), (b"x-multi", b"a"), (b"x-multi", b"b")]
        answer = JSONResponse(seen)
        answer.raw_headers.extend(headers)
        return answer

    async def status(self, request: Request) -> Response:
        await self._record(request)
        code = int(request.path_params["code"])
        return Response(f"nope {code}", status_code=code, media_type="text/plain")

    async def text(self, request: Request) -> Response:
        await self._record(request)
        return Response("plain answer", media_type="text/plain")

    async def big(self, request: Request) -> Response:
        await self._record(request)
        return Response("x" * 300_000, media_type="text/plain")

    async def hold(self, request: Request) -> Response:
        await self._record(request)
        with self.lock:
            self.holding += 1
            self.most_at_once = max(self.most_at_once, self.holding)
        try:
            await asyncio.to_thread(self.release.wait, WAIT)
        finally:
            with self.lock:
                self.holding -= 1
        return JSONResponse({"held": True})

    def app(self) -> Starlette:
        return Starlette(routes=[
            Route("/echo/{rest:path}", self.echo, methods=["GET", "POST", "PUT", "PATCH", "DELETE"]),
            Route("/status/{code:int}", self.status, methods=["GET", "POST"]),
            Route("/text", self.text, methods=["GET", "POST"]),
            Route("/big", self.big, methods=["GET", "POST"]),
            Route("/hold", self.hold, methods=["GET", "POST"]),
        ])


@contextmanager
def serving(endpoint: HttpEndpoint, **tls: Any) -> Iterator[HttpEndpoint]:
    """Run ``endpoint`` on 127.0.0.1 (over TLS with uvicorn's ``ssl_*`` options, when given)."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    endpoint.url = f"{'https' if tls else 'http'}://127.0.0.1:{sock.getsockname()[1]}"
    server = uvicorn.Server(uvicorn.Config(endpoint.app(), log_level="warning", lifespan="off", **tls))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        eventually(lambda: server.started, "the test HTTP server started")
        yield endpoint
    finally:
        endpoint.release.set()
        server.should_exit = True
        thread.join(WAIT)
        sock.close()


@pytest.fixture
def http_endpoint() -> Iterator[HttpEndpoint]:
    with serving(HttpEndpoint()) as endpoint:
        yield endpoint


# --- REST API call --------------------------------------------------------------------------------
async def test_rest_call_sends_the_templated_request_and_routes_the_response(
        engine: EngineHarness, chain_of: Any, http_endpoint: HttpEndpoint) -> None:
    chain = chain_of(REST, {
        "restEndpointUrlPattern": http_endpoint.url + "/echo/${deviceName}/$[room.name]?t=$[temperature]",
        "requestMethod": "POST",
        "headers": {"Content-Type": "application/json", "X-Device": "${deviceName}", "X-${kind}": "$[temperature]"},
        "credentials": {"type": "basic", "username": "bob", "password": "s3cret"}})
    device = engine.device()
    msg = engine.msg(device, {"temperature": 21.5, "room": {"name": "lab"}}, deviceName="thermo", kind="Reading")
    relation, out = await chain.outcome(msg)

    assert relation == "Success", out.metadata
    [seen] = http_endpoint.received
    assert (seen["method"], seen["path"], seen["query"]) == ("POST", "/echo/thermo/lab", "t=21.5")
    assert json.loads(seen["body"]) == {"temperature": 21.5, "room": {"name": "lab"}}
    assert seen["headers"]["x-device"] == "thermo" and seen["headers"]["x-reading"] == "21.5"
    assert seen["headers"]["authorization"] == "Basic " + base64.b64encode(b"bob:s3cret").decode()
    # the response body is the message body now; status and headers are in the metadata
    assert out.data["path"] == "/echo/thermo/lab"
    assert (out.metadata["status"], out.metadata["statusCode"], out.metadata["statusReason"]) == ("OK", "200", "OK")
    assert out.metadata["x-answer"] == "42" and json.loads(out.metadata["x-multi"]) == ["a", "b"]
    assert out.metadata["deviceName"] == "thermo"  # the message's own metadata stays
    assert out.originator == device and out.type == msg.type


async def test_rest_call_error_status_routes_to_failure_with_the_answer(
        engine: EngineHarness, chain_of: Any, http_endpoint: HttpEndpoint) -> None:
    chain = chain_of(REST, {"restEndpointUrlPattern": http_endpoint.url + "/status/404", "requestMethod": "POST",
                            "headers": {}})
    msg = engine.msg(engine.device(), {"t": 1})
    relation, out = await chain.outcome(msg)
    assert relation == "Failure"
    assert out.metadata["statusCode"] == "404" and out.metadata["status"] == "Not Found"
    assert out.metadata["error_body"] == "nope 404"
    assert out.metadata["error"].startswith("404 Not Found from POST ")
    assert out.data == {"t": 1}  # the message as it was


async def test_rest_call_get_sends_no_body_and_text_answers_stay_text(
        engine: EngineHarness, chain_of: Any, http_endpoint: HttpEndpoint) -> None:
    get = chain_of(REST, {"restEndpointUrlPattern": http_endpoint.url + "/text", "requestMethod": "GET",
                          "headers": {}})
    relation, out = await get.outcome(engine.msg(engine.device(), {"t": 1}))
    assert relation == "Success" and out.data == "plain answer"
    assert http_endpoint.received[-1]["body"] == ""

    ignored = chain_of(REST, {"restEndpointUrlPattern": http_endpoint.url + "/echo/x", "requestMethod": "PUT",
                              "ignoreRequestBody": True, "headers": {}})
    relation, out = await ignored.outcome(engine.msg(engine.device(), {"t": 1}))
    assert relation == "Success" and http_endpoint.received[-1]["method"] == "PUT"
    assert http_endpoint.received[-1]["body"] == ""

    plain = chain_of(REST, {"restEndpointUrlPattern": http_endpoint.url + "/echo/x", "requestMethod": "POST",
                            "parseToPlainText": True, "headers": {"Content-Type": "text/plain"}})
    await plain.outcome(engine.msg(engine.device(), "just words"))
    assert http_endpoint.received[-1]["body"] == "just words"  # not the JSON string "\"just words\""


async def test_rest_call_fails_on_an_answer_over_the_buffer_limit(
        engine: EngineHarness, chain_of: Any, http_endpoint: HttpEndpoint) -> None:
    chain = chain_of(REST, {"restEndpointUrlPattern": http_endpoint.url + "/big", "requestMethod": "GET",
                            "maxInMemoryBufferSizeInKb": 256})
    relation, out = await chain.outcome(engine.msg(engine.device(), {}))
    assert relation == "Failure" and "Exceeded limit on max bytes to buffer : 262144" in out.metadata["error"]


async def test_rest_call_to_nothing_listening_fails_after_its_retries(engine: EngineHarness, chain_of: Any) -> None:
    chain = chain_of(REST, {"restEndpointUrlPattern": f"http://127.0.0.1:{closed_port()}/api"})
    relation, out = await chain.outcome(engine.msg(engine.device(), {"t": 1}))
    assert relation == "Failure" and "ConnectError" in out.metadata["error"]


async def test_rest_call_read_timeout_fails_the_message(
        engine: EngineHarness, chain_of: Any, http_endpoint: HttpEndpoint) -> None:
    chain = chain_of(REST, {"restEndpointUrlPattern": http_endpoint.url + "/hold", "readTimeoutMs": 200})
    relation, out = await chain.outcome(engine.msg(engine.device(), {"t": 1}))
    assert relation == "Failure" and "ReadTimeout" in out.metadata["error"]


async def test_rest_call_bounds_its_parallel_requests(
        engine: EngineHarness, chain_of: Any, http_endpoint: HttpEndpoint) -> None:
    chain = chain_of(REST, {"restEndpointUrlPattern": http_endpoint.url + "/hold", "maxParallelRequestsCount": 2})
    device = engine.device()
    for n in range(5):
        await chain.send(engine.msg(device, {"n": n}))  # each returns at once: the calls are dispatched
    await until(lambda: http_endpoint.holding == 2, "two calls held by the server")
    http_endpoint.release.set()
    outcomes = [await chain.next() for _ in range(5)]
    assert [relation for relation, _ in outcomes] == ["Success"] * 5
    assert http_endpoint.most_at_once == 2 and len(http_endpoint.received) == 5


async def test_rest_call_url_that_is_no_url_fails_the_message(engine: EngineHarness, chain_of: Any) -> None:
    chain = chain_of(REST, {"restEndpointUrlPattern": "${target}/api"})
    relation, out = await chain.outcome(engine.msg(engine.device(), {}, target="127.0.0.1"))
    assert relation == "Failure" and "Transport scheme(protocol) must be provided!" in out.metadata["error"]


async def test_rest_call_presents_its_client_certificate(engine: EngineHarness, chain_of: Any,
                                                          tmp_path: Path) -> None:
    pki = make_pki(tmp_path)
    with serving(HttpEndpoint(), ssl_certfile=str(pki.server_cert), ssl_keyfile=str(pki.server_key),
                 ssl_ca_certs=str(pki.ca), ssl_cert_reqs=ssl.CERT_REQUIRED) as endpoint:
        mutual = chain_of(REST, {"restEndpointUrlPattern": endpoint.url + "/echo/tls", "credentials": {
            "type": "cert.PEM", "caCert": pki.ca.read_text(), "cert": pki.client_cert.read_text(),
            "privateKey": pki.client_key.read_text()}})
        relation, out = await mutual.outcome(engine.msg(engine.device(), {"t": 1}))
        assert relation == "Success", out.metadata.get("error")
        assert out.data["path"] == "/echo/tls"

        # no client certificate, and the server's own is of a CA the system does not trust
        anonymous = chain_of(REST, {"restEndpointUrlPattern": endpoint.url + "/echo/tls"})
        relation, out = await anonymous.outcome(engine.msg(engine.device(), {"t": 1}))
        assert relation == "Failure" and "CERTIFICATE_VERIFY_FAILED" in out.metadata["error"]
        assert len(endpoint.received) == 1


@pytest.mark.parametrize("config, error", [
    ({"requestMethod": "FETCH"}, "'requestMethod' must be one of"),
    ({"restEndpointUrlPattern": ""}, "'restEndpointUrlPattern'"),
    ({"useSimpleClientHttpFactory": True, "credentials": {"type": "cert.PEM"}},
     "Simple HTTP Factory does not support CERT PEM credentials!"),
    ({"enableProxy": True, "proxyHost": "", "proxyPort": 3128}, "Proxy host can't be empty"),
    ({"credentials": {"type": "oauth2"}}, "'credentials.type' must be one of"),
    ({"maxInMemoryBufferSizeInKb": 30_000}, "exceeds the system limit"),
])
def test_rest_call_refuses_unusable_configurations(engine: EngineHarness, config: dict[str, Any],
                                                   error: str) -> None:
    with pytest.raises(NodeConfigError, match=error.replace("(", r"\(").replace(")", r"\)")):
        engine.build(REST, {"restEndpointUrlPattern": "http://localhost/api", **config})


def test_a_device_is_acknowledged_while_its_rest_call_is_still_out(
        other_tenant: httpx.Client, mqtt_port: int, http_endpoint: HttpEndpoint) -> None:
    """The chain saves the reading, then calls an endpoint that does not answer yet: the device's
    messages are acknowledged and stored all the same; the answers go on through the chain later."""
    nodes = [
        node("telemetry.TbMsgTimeseriesNode", "save", {"defaultTTL": 0}),
        node("rest.TbRestApiCallNode", "call", {"restEndpointUrlPattern": http_endpoint.url + "/hold",
                                                "requestMethod": "POST", "headers": {}}),
        node("transform.TbTransformMsgNode", "answered", {
            "scriptLang": "TBEL",
            "tbelScript": "return {msg: {answered: metadata.statusCode}, metadata: metadata, msgType: msgType};"}),
        node("telemetry.TbMsgTimeseriesNode", "save answer", {"defaultTTL": 0}),
    ]
    save_root_chain(other_tenant, nodes, [{"fromIndex": 0, "toIndex": 1, "type": "Success"},
                                          {"fromIndex": 1, "toIndex": 2, "type": "Success"},
                                          {"fromIndex": 2, "toIndex": 3, "type": "Success"}])
    device = make_device(other_tenant)
    client = mqtt(mqtt_port, device["token"])
    try:
        publish(client, "v1/devices/me/telemetry", {"temperature": 20})
        publish(client, "v1/devices/me/telemetry", {"temperature": 21})
        # both acknowledged (publish waits for PUBACK) and stored while both calls are held
        assert series(other_tenant, device["id"], "temperature") == ["20", "21"]
        eventually(lambda: http_endpoint.holding == 2, "both calls held by the endpoint")
        assert series(other_tenant, device["id"], "answered") == []
        http_endpoint.release.set()
        eventually(lambda: series(other_tenant, device["id"], "answered") == ["200", "200"],
                   "the answers saved by the rest of the chain")
    finally:
        client.loop_stop()
        client.disconnect()


# --- MQTT ---------------------------------------------------------------------------------------
MOSQUITTO = ("127.0.0.1", 1883)


def mosquitto_reachable() -> bool:
    try:
        with socket.create_connection(MOSQUITTO, timeout=2):
            return True
    except OSError:
        return False


needs_mosquitto = pytest.mark.skipif(not mosquitto_reachable(),
                                     reason="no MQTT broker (Mosquitto) listens on 127.0.0.1:1883")


@dataclass
class Subscriber:
    client: Any
    messages: asyncio.Queue[Any]

    async def next(self) -> Any:
        return await asyncio.wait_for(self.messages.get(), WAIT)


@asynccontextmanager
async def subscribe(topic: str) -> AsyncIterator[Subscriber]:
    import aiomqtt

    async with aiomqtt.Client(*MOSQUITTO, identifier=f"sub-{uuid.uuid4().hex[:10]}") as client:
        await client.subscribe(topic, qos=1)
        messages: asyncio.Queue[Any] = asyncio.Queue()

        async def pump() -> None:
            async for message in client.messages:
                messages.put_nowait(message)

        task = asyncio.get_running_loop().create_task(pump())
        try:
            yield Subscriber(client, messages)
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)


@needs_mosquitto
async def test_mqtt_node_publishes_the_body_to_the_templated_topic(engine: EngineHarness, chain_of: Any) -> None:
    base = f"thingsray-test/{uuid.uuid4().hex}"
    chain = chain_of(MQTT, {"topicPattern": base + "/${deviceName}/$[kind]", "host": "127.0.0.1", "port": 1883,
                            "connectTimeoutSec": 10, "cleanSession": True, "credentials": {"type": "anonymous"}})
    device = engine.device()
    async with subscribe(base + "/#") as subscriber:
        for n in range(3):  # one connection, kept
            relation, out = await chain.outcome(engine.msg(device, {"kind": "temp", "n": n}, deviceName="dev-1"))
            assert relation == "Success" and out.data == {"kind": "temp", "n": n}
            got = await subscriber.next()
            assert str(got.topic) == base + "/dev-1/temp"
            assert json.loads(got.payload) == {"kind": "temp", "n": n}


@needs_mosquitto
async def test_mqtt_node_retained_message_reaches_later_subscribers(engine: EngineHarness, chain_of: Any) -> None:
    topic = f"thingsray-test/{uuid.uuid4().hex}/retained"
    chain = chain_of(MQTT, {"topicPattern": topic, "host": "127.0.0.1", "port": 1883, "retainedMessage": True,
                            "parseToPlainText": True})
    relation, _ = await chain.outcome(engine.msg(engine.device(), "on"))
    assert relation == "Success"
    async with subscribe(topic) as subscriber:
        got = await subscriber.next()
        assert got.payload == b"on" and got.retain
        await subscriber.client.publish(topic, b"", qos=1, retain=True)  # leave the broker as it was


@needs_mosquitto
async def test_mqtt_node_opens_a_lost_connection_again(engine: EngineHarness, chain_of: Any) -> None:
    import aiomqtt

    client_id = f"tr-{uuid.uuid4().hex[:12]}"
    topic = f"thingsray-test/{uuid.uuid4().hex}/again"
    chain = chain_of(MQTT, {"topicPattern": topic, "host": "127.0.0.1", "port": 1883, "clientId": client_id})
    device = engine.device()
    async with subscribe(topic) as subscriber:
        assert (await chain.outcome(engine.msg(device, {"n": 1})))[0] == "Success"
        await subscriber.next()
        # a second client with the node's id takes the session over: the broker drops the node's connection
        async with aiomqtt.Client(*MOSQUITTO, identifier=client_id):
            pass
        relation, out = await chain.outcome(engine.msg(device, {"n": 2}))
        assert relation == "Success", out.metadata.get("error")
        assert json.loads((await subscriber.next()).payload) == {"n": 2}


async def test_mqtt_node_fails_messages_when_the_broker_is_unreachable(engine: EngineHarness,
                                                                        chain_of: Any) -> None:
    port = closed_port()
    chain = chain_of(MQTT, {"topicPattern": "t", "host": "127.0.0.1", "port": port, "connectTimeoutSec": 2})
    relation, out = await chain.outcome(engine.msg(engine.device(), {"n": 1}))
    assert relation == "Failure"
    assert f"Failed to connect to MQTT broker at 127.0.0.1:{port}." in out.metadata["error"]


@pytest.mark.parametrize("config, error", [
    ({"clientId": "a-client-id-that-is-far-too-long"}, "Client ID is too long"),
    ({"host": ""}, "'host' must name the MQTT broker"),
    ({"topicPattern": ""}, "'topicPattern'"),
    ({"protocolVersion": "MQTT_4"}, "'protocolVersion' must be one of"),
    ({"credentials": {"type": "basic"}}, "'credentials.username' must be set"),
])
def test_mqtt_node_refuses_unusable_configurations(engine: EngineHarness, config: dict[str, Any],
                                                   error: str) -> None:
    with pytest.raises(NodeConfigError, match=error):
        engine.build(MQTT, {"topicPattern": "t", "host": "127.0.0.1", "port": 1883, **config})


# --- send email -----------------------------------------------------------------------------------
@dataclass
class Mailbox:
    """What a real SMTP server (aiosmtpd) running in the test received."""

    port: int = 0
    mails: list[dict[str, Any]] = field(default_factory=list)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.mails.append({"from": envelope.mail_from, "to": list(envelope.rcpt_tos),
                           "login": session.auth_data.login.decode() if session.auth_data else None,
                           "message": email.message_from_bytes(envelope.content, policy=email.policy.default)})
        return "250 OK"


def authenticate(server: Any, session: Any, envelope: Any, mechanism: str, auth_data: Any) -> Any:
    from aiosmtpd.smtp import AuthResult

    if auth_data.login == b"mailer" and auth_data.password == b"s3cret":
        return AuthResult(success=True, auth_data=auth_data)
    return AuthResult(success=False, handled=False)  # the server answers 535


@pytest.fixture
async def mailbox() -> AsyncIterator[Mailbox]:
    from aiosmtpd.smtp import SMTP

    box = Mailbox()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTP(box, hostname="localhost", authenticator=authenticate, auth_require_tls=False),
        "127.0.0.1", 0)
    box.port = server.sockets[0].getsockname()[1]
    try:
        yield box
    finally:
        server.close()
        await server.wait_closed()


def smtp_config(port: int, **extra: Any) -> dict[str, Any]:
    return {"useSystemSmtpSettings": False, "smtpHost": "127.0.0.1", "smtpPort": port, "smtpProtocol": "smtp",
            "timeout": 10000, "enableTls": False, "tlsVersion": "TLSv1.2", **extra}


PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n-a-tiny-image").decode()


async def test_send_email_delivers_the_mail_to_every_recipient(engine: EngineHarness, chain_of: Any,
                                                               mailbox: Mailbox) -> None:
    chain = chain_of(MAIL, smtp_config(mailbox.port, username="mailer", password="s3cret"))
    mail = {"from": "alarms@example.com", "to": "ann@example.com, bob@example.com", "cc": "carl@example.com",
            "bcc": "dora@example.com", "subject": "Temperature alarm", "html": True,
            "body": '<p>Too hot: <b>41</b></p><img src="cid:logo.png">',
            "images": {"logo.png": "data:image/png;base64," + PIXEL}}
    msg = engine.msg(engine.device(), mail, "SEND_EMAIL")
    relation, out = await chain.outcome(msg)

    assert relation == "Success" and out.data == mail
    [got] = mailbox.mails
    assert got["from"] == "alarms@example.com" and got["login"] == "mailer"
    assert sorted(got["to"]) == ["ann@example.com", "bob@example.com", "carl@example.com", "dora@example.com"]
    message = got["message"]
    assert message["Subject"] == "Temperature alarm" and message["Cc"] == "carl@example.com"
    assert message["Bcc"] is None  # bcc recipients are in no header
    assert message.get_body(("html",)).get_content().startswith("<p>Too hot: <b>41</b></p>")
    [image] = [part for part in message.walk() if part.get_content_type() == "image/png"]
    assert image["Content-ID"] == "<logo.png>"
    assert image.get_content() == base64.b64decode(PIXEL)


async def test_send_email_plain_text_without_login(engine: EngineHarness, chain_of: Any, mailbox: Mailbox) -> None:
    chain = chain_of(MAIL, smtp_config(mailbox.port))
    relation, _ = await chain.outcome(engine.msg(engine.device(), {
        "from": "a@example.com", "to": "b@example.com", "subject": "hi", "body": "plain words"}, "SEND_EMAIL"))
    assert relation == "Success"
    [got] = mailbox.mails
    assert got["login"] is None
    assert got["message"].get_body(("plain",)).get_content().strip() == "plain words"


async def test_send_email_rejected_login_routes_to_failure(engine: EngineHarness, chain_of: Any,
                                                           mailbox: Mailbox) -> None:
    chain = chain_of(MAIL, smtp_config(mailbox.port, username="mailer", password="wrong"))
    relation, out = await chain.outcome(engine.msg(engine.device(), {
        "from": "a@example.com", "to": "b@example.com", "subject": "hi", "body": "x"}, "SEND_EMAIL"))
    assert relation == "Failure" and "SMTPAuthenticationError" in out.metadata["error"]
    assert mailbox.mails == []


async def test_send_email_with_tls_refuses_a_server_without_starttls(engine: EngineHarness, chain_of: Any,
                                                                     mailbox: Mailbox) -> None:
    chain = chain_of(MAIL, smtp_config(mailbox.port, enableTls=True))
    relation, out = await chain.outcome(engine.msg(engine.device(), {
        "from": "a@example.com", "to": "b@example.com", "subject": "hi", "body": "x"}, "SEND_EMAIL"))
    assert relation == "Failure" and "STARTTLS" in out.metadata["error"]
    assert mailbox.mails == []  # never sent in the clear


async def test_send_email_to_nothing_listening_fails(engine: EngineHarness, chain_of: Any) -> None:
    chain = chain_of(MAIL, smtp_config(closed_port(), timeout=2000))
    relation, out = await chain.outcome(engine.msg(engine.device(), {
        "from": "a@example.com", "to": "b@example.com", "subject": "hi", "body": "x"}, "SEND_EMAIL"))
    assert relation == "Failure" and "SMTPConnectError" in out.metadata["error"]


@pytest.mark.parametrize("msg_type, body, error", [
    ("POST_TELEMETRY_REQUEST", {"to": "b@example.com"}, "Not expected msg type POST_TELEMETRY_REQUEST for SendEmail"),
    ("SEND_EMAIL", {"from": "a@example.com", "to": " "}, "Email destination can not be blank"),
    ("SEND_EMAIL", ["not", "an", "email"], "not a JSON object"),
])
async def test_send_email_refuses_what_is_no_email(engine: EngineHarness, chain_of: Any, mailbox: Mailbox,
                                                   msg_type: str, body: Any, error: str) -> None:
    chain = chain_of(MAIL, smtp_config(mailbox.port))
    relation, out = await chain.outcome(engine.msg(engine.device(), body, msg_type))
    assert relation == "Failure" and error in out.metadata["error"]
    assert mailbox.mails == []


def test_send_email_has_no_system_smtp_settings_to_use(engine: EngineHarness) -> None:
    with pytest.raises(NodeConfigError, match="no system SMTP settings"):
        engine.build(MAIL)  # ThingsBoard's default configuration uses the system settings
    with pytest.raises(NodeConfigError, match="'tlsVersion' must be one of"):
        engine.build(MAIL, smtp_config(25, tlsVersion="SSLv3"))
    with pytest.raises(NodeConfigError, match="'smtpProtocol' must be one of"):
        engine.build(MAIL, smtp_config(25, smtpProtocol="pop3"))
