"""ThingsBoard's HTTP device API (/api/v1/{token}/...) end to end: httpx as the device, the Serve
application, device actors in the shards, PostgreSQL; a 200 means stored."""

from __future__ import annotations

import json
import threading
import time
import uuid
from typing import Any

import httpx
import pytest

from tests.conftest import assert_tb_error, eventually, unique
from tests.rules.test_engine_e2e import save_rpc_answering_root_chain
from tests.test_mqtt_device_api import ask
from thingsray.actors.messages import RpcStatus, ToDeviceRpc
from thingsray.live.updates import LiveUpdate
from thingsray.transports.http import DEFAULT_TIMEOUT_MS, MAX_TIMEOUT_MS, long_poll_timeout_ms, shared_attribute_update
from thingsray.transports.payloads import PayloadError

WAIT = 20.0  # a bound on waiting for what should happen at once; never a speed assertion


def make_device(client: httpx.Client) -> dict[str, str]:
    token = f"HTTP-{uuid.uuid4().hex[:12]}"
    created = client.post("/api/device", params={"accessToken": token}, json={"name": unique("http device")})
    assert created.status_code == 200, created.text
    return {"id": created.json()["id"]["id"], "token": token}


@pytest.fixture
def device(tenant: httpx.Client) -> dict[str, str]:
    return make_device(tenant)


def test_posted_telemetry_is_stored_when_answered(tenant: httpx.Client, anonymous: httpx.Client,
                                                  device: dict[str, str]) -> None:
    posted = anonymous.post(f"/api/v1/{device['token']}/telemetry",
                            json=[{"ts": 1_700_000_000_000, "values": {"temperature": 21.5}},
                                  {"ts": 1_700_000_001_000, "values": {"temperature": 22, "on": True}}])
    assert posted.status_code == 200, posted.text
    assert posted.content == b""
    answer = tenant.get(f"/api/plugins/telemetry/DEVICE/{device['id']}/values/timeseries",
                        params={"keys": "temperature,on", "startTs": 0, "endTs": 1_800_000_000_000, "limit": 10})
    assert answer.status_code == 200, answer.text
    assert [p["value"] for p in answer.json()["temperature"]] == ["22", "21.5"]
    assert [p["value"] for p in answer.json()["on"]] == ["true"]


def test_posted_attributes_are_stored_and_requested_back(tenant: httpx.Client, anonymous: httpx.Client,
                                                         device: dict[str, str]) -> None:
    base = f"/api/v1/{device['token']}"
    posted = anonymous.post(f"{base}/attributes", json={"firmware": "1.2", "count": 3, "cfg": {"a": [1]}})
    assert posted.status_code == 200, posted.text
    stored = tenant.get(f"/api/plugins/telemetry/DEVICE/{device['id']}/values/attributes/CLIENT_SCOPE").json()
    assert {a["key"]: a["value"] for a in stored} == {"firmware": 1.2, "count": 3, "cfg": {"a": [1]}}
    shared = tenant.post(f"/api/plugins/telemetry/DEVICE/{device['id']}/attributes/SHARED_SCOPE",
                         json={"target": 21, "mode": "eco"})
    assert shared.status_code == 200, shared.text

    answer = anonymous.get(f"{base}/attributes", params={"clientKeys": "count,missing", "sharedKeys": "target"})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"client": {"count": 3}, "shared": {"target": 21}}
    only_client = anonymous.get(f"{base}/attributes", params={"clientKeys": "firmware", "sharedKeys": "nope"})
    assert only_client.json() == {"client": {"firmware": 1.2}}  # an empty section is left out, as ThingsBoard does
    everything = anonymous.get(f"{base}/attributes")
    assert everything.json() == {"client": {"firmware": 1.2, "count": 3, "cfg": {"a": [1]}},
                                 "shared": {"target": 21, "mode": "eco"}}


def test_a_shared_attribute_saved_over_rest_answers_a_pending_long_poll(tenant: httpx.Client, base_url: str,
                                                                       device: dict[str, str]) -> None:
    answers: list[httpx.Response] = []

    def poll() -> None:
        with httpx.Client(base_url=base_url, timeout=WAIT + 10) as client:
            answers.append(client.get(f"/api/v1/{device['token']}/attributes/updates",
                                      params={"timeout": int(WAIT * 1000)}))

    poller = threading.Thread(target=poll)
    poller.start()
    # the poll subscribes some time after it is sent: save until the answer comes (a save before
    # the subscription is, as with ThingsBoard, not the poll's business)
    deadline = time.monotonic() + WAIT
    value = 0
    while poller.is_alive() and time.monotonic() < deadline:
        value += 1
        saved = tenant.post(f"/api/plugins/telemetry/DEVICE/{device['id']}/attributes/SHARED_SCOPE",
                            json={"setpoint": value})
        assert saved.status_code == 200, saved.text
        poller.join(0.2)
    poller.join(WAIT)
    assert answers, "the long poll was not answered"
    assert answers[0].status_code == 200, answers[0].text
    body = answers[0].json()
    assert set(body) == {"setpoint"} and 1 <= body["setpoint"] <= value


def test_a_long_poll_without_updates_times_out_with_408(anonymous: httpx.Client, device: dict[str, str]) -> None:
    answer = anonymous.get(f"/api/v1/{device['token']}/attributes/updates", params={"timeout": 300})
    assert answer.status_code == 408
    assert answer.content == b""


def test_a_client_side_rpc_is_answered_by_the_chain(other_tenant: httpx.Client, anonymous: httpx.Client) -> None:
    save_rpc_answering_root_chain(other_tenant)
    device = make_device(other_tenant)
    answer = anonymous.post(f"/api/v1/{device['token']}/rpc", json={"method": "getTime", "params": {}})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"time": 42, "asked": "getTime"}


def test_a_claim_is_accepted(anonymous: httpx.Client, device: dict[str, str]) -> None:
    answer = anonymous.post(f"/api/v1/{device['token']}/claim", json={"secretKey": "s3cret", "durationMs": 60000})
    assert answer.status_code == 200, answer.text
    assert anonymous.post(f"/api/v1/{device['token']}/claim", json={"durationMs": "soon"}).status_code == 400


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "telemetry"), ("POST", "attributes"), ("GET", "attributes"), ("GET", "attributes/updates?timeout=100"),
    ("POST", "rpc"), ("POST", "claim")])
def test_an_unknown_token_is_401_with_an_empty_body(anonymous: httpx.Client, method: str, path: str) -> None:
    body = b'{"method": "m", "params": {}}' if method == "POST" else None
    answer = anonymous.request(method, f"/api/v1/NO-SUCH-{uuid.uuid4().hex}/{path}", content=body)
    assert answer.status_code == 401
    assert answer.content == b""


@pytest.mark.parametrize("path", ["telemetry", "attributes", "rpc", "claim"])
def test_malformed_json_is_400_with_the_error_body(anonymous: httpx.Client, device: dict[str, str],
                                                   path: str) -> None:
    answer = anonymous.post(f"/api/v1/{device['token']}/{path}", content=b'{"temperature": ')
    assert_tb_error(answer, 400, 31)


def test_bad_values_and_shapes_are_400(tenant: httpx.Client, anonymous: httpx.Client,
                                       device: dict[str, str]) -> None:
    base = f"/api/v1/{device['token']}"
    assert_tb_error(anonymous.post(f"{base}/telemetry", content=b'{"big": 123456789012345678901234}'), 400)
    assert_tb_error(anonymous.post(f"{base}/attributes", content=b"[1, 2]"), 400)
    assert_tb_error(anonymous.post(f"{base}/rpc", json={"params": {}}), 400)
    assert_tb_error(anonymous.get(f"{base}/attributes/updates", params={"timeout": "soon"}), 400)
    assert_tb_error(anonymous.get(f"{base}/attributes/updates", params={"timeout": -5}), 400)
    stored = tenant.get(f"/api/plugins/telemetry/DEVICE/{device['id']}/keys/timeseries").json()
    assert "big" not in stored


def test_an_oversized_payload_is_refused_and_not_stored(tenant: httpx.Client, anonymous: httpx.Client,
                                                        device: dict[str, str]) -> None:
    huge = b'{"blob": "' + b"x" * 70_000 + b'"}'
    answer = anonymous.post(f"/api/v1/{device['token']}/telemetry", content=huge)
    assert answer.status_code == 413
    assert "exceeds the limit" in answer.json()
    chunked = anonymous.post(f"/api/v1/{device['token']}/attributes", content=iter([huge[:40_000], huge[40_000:]]))
    assert chunked.status_code == 413
    assert tenant.get(f"/api/plugins/telemetry/DEVICE/{device['id']}/keys/timeseries").json() == []
    assert tenant.get(f"/api/plugins/telemetry/DEVICE/{device['id']}/keys/attributes/CLIENT_SCOPE").json() == []


# --- the adaptor's pure parts -------------------------------------------------------------------

def test_long_poll_timeouts_follow_thingsboard() -> None:
    assert long_poll_timeout_ms(None) == long_poll_timeout_ms("0") == DEFAULT_TIMEOUT_MS == 60_000
    assert long_poll_timeout_ms("1500") == 1500
    assert long_poll_timeout_ms("999999999") == MAX_TIMEOUT_MS == 300_000
    for bad in ("-1", "1.5", "soon"):
        with pytest.raises(PayloadError):
            long_poll_timeout_ms(bad)


def test_only_shared_attribute_changes_answer_the_poll() -> None:
    device = uuid.uuid4()
    shared = LiveUpdate(device, "ATTRIBUTES", "SHARED_SCOPE", {"a": [(1, 1), (2, 5)], "b": [(2, "x")]}, ("gone",))
    assert shared_attribute_update(shared) == {"a": 5, "b": "x", "deleted": ["gone"]}
    assert shared_attribute_update(LiveUpdate(device, "ATTRIBUTES", "SERVER_SCOPE", {"a": [(1, 1)]})) is None
    assert shared_attribute_update(LiveUpdate(device, "ATTRIBUTES", "CLIENT_SCOPE", {"a": [(1, 1)]})) is None
    assert shared_attribute_update(LiveUpdate(device, "TIMESERIES", None, {"a": [(1, 1)]})) is None
    only_deleted: dict[str, Any] | None = shared_attribute_update(
        LiveUpdate(device, "ATTRIBUTES", "SHARED_SCOPE", {}, ("k",)))
    assert only_deleted == {"deleted": ["k"]}


def test_the_device_answers_a_server_rpc_over_http(anonymous: httpx.Client, platform: Any,
                                                   device: dict[str, str]) -> None:
    """The RPC reaches the device over MQTT; its answer comes back by POST /api/v1/{token}/rpc/{id}
    (ThingsBoard keys pending RPCs by device and request id, whatever the transport). The RPC is
    sent from this process's own router: a REST call through the same replica would hold that
    replica's lane to the shard until answered (see the report on head-of-line blocking)."""
    import paho.mqtt.client as mqtt

    requests: list[tuple[str, Any]] = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"http-rpc-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(device["token"])
    client.on_connect = lambda c, *_: c.subscribe("v1/devices/me/rpc/request/+", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, m: requests.append((m.topic.rsplit("/", 1)[1], json.loads(m.payload)))
    client.connect("127.0.0.1", platform.mqtt_port)
    client.loop_start()
    try:
        assert subscribed.wait(WAIT), "the device did not get its RPC subscription"
        outcomes: list[Any] = []
        rpc = ToDeviceRpc("getTemp", {"unit": "C"}, oneway=False, timeout_ms=int(WAIT * 1000))
        call = threading.Thread(target=lambda: outcomes.append(ask(platform, device["id"], rpc)))
        call.start()
        deadline = time.monotonic() + WAIT
        while not requests and time.monotonic() < deadline:
            time.sleep(0.02)
        assert requests, "the RPC did not reach the device"
        request_id, request = requests[0]
        assert request == {"method": "getTemp", "params": {"unit": "C"}}
        replied = anonymous.post(f"/api/v1/{device['token']}/rpc/{request_id}", json={"temp": 36.6})
        assert replied.status_code == 200, replied.text
        call.join(WAIT)
        assert outcomes, "the RPC was not answered"
        assert outcomes[0].status is RpcStatus.SUCCESSFUL and outcomes[0].response == {"temp": 36.6}
        assert_tb_error(anonymous.post(f"/api/v1/{device['token']}/rpc/not-a-number", json={}), 400)
    finally:
        client.disconnect()
        client.loop_stop()


# --- server-side RPC by long poll ------------------------------------------------------------------
def _poll_rpc(base_url: str, token: str, timeout_ms: int, answers: list[httpx.Response]) -> threading.Thread:
    def poll() -> None:
        with httpx.Client(base_url=base_url, timeout=timeout_ms / 1000 + WAIT) as client:
            answers.append(client.get(f"/api/v1/{token}/rpc", params={"timeout": timeout_ms}))

    poller = threading.Thread(target=poll)
    poller.start()
    return poller


def _wait_for_poll(platform: Any, device_id: str) -> None:
    from thingsray.actors.messages import GetDeviceState

    eventually(lambda: ask(platform, device_id, GetDeviceState())["rpcPolls"] == 1, "the RPC poll reaching the device")


def test_a_one_way_rpc_reaches_a_long_polling_device(tenant: httpx.Client, base_url: str, platform: Any,
                                                     device: dict[str, str]) -> None:
    answers: list[httpx.Response] = []
    poller = _poll_rpc(base_url, device["token"], int(WAIT * 1000), answers)
    _wait_for_poll(platform, device["id"])
    sent = tenant.post(f"/api/plugins/rpc/oneway/{device['id']}", json={"method": "setLed", "params": {"on": True}})
    assert sent.status_code == 200, sent.text
    poller.join(WAIT)
    assert answers and answers[0].status_code == 200, answers
    request = answers[0].json()
    assert request["method"] == "setLed" and request["params"] == {"on": True} and isinstance(request["id"], int)


def test_a_two_way_rpc_is_answered_by_the_polling_device(tenant: httpx.Client, base_url: str, platform: Any,
                                                         anonymous: httpx.Client, device: dict[str, str]) -> None:
    answers: list[httpx.Response] = []
    poller = _poll_rpc(base_url, device["token"], int(WAIT * 1000), answers)
    _wait_for_poll(platform, device["id"])
    outcome: list[httpx.Response] = []
    caller = threading.Thread(target=lambda: outcome.append(tenant.post(
        f"/api/plugins/rpc/twoway/{device['id']}", json={"method": "getTemp", "params": {}, "timeout": 15000})))
    caller.start()
    poller.join(WAIT)
    assert answers and answers[0].status_code == 200, answers
    request = answers[0].json()
    replied = anonymous.post(f"/api/v1/{device['token']}/rpc/{request['id']}", json={"temp": 20.5})
    assert replied.status_code == 200, replied.text
    caller.join(WAIT)
    assert outcome and outcome[0].status_code == 200, outcome
    assert outcome[0].json() == {"temp": 20.5}


def test_an_rpc_poll_without_rpc_times_out_with_408(anonymous: httpx.Client, device: dict[str, str]) -> None:
    answer = anonymous.get(f"/api/v1/{device['token']}/rpc", params={"timeout": 300})
    assert answer.status_code == 408 and answer.content == b""
    assert anonymous.get("/api/v1/no-such-token/rpc", params={"timeout": 300}).status_code == 401
    assert_tb_error(anonymous.get(f"/api/v1/{device['token']}/rpc", params={"timeout": "soon"}), 400)


def test_an_rpc_poll_does_not_displace_the_devices_mqtt_session(tenant: httpx.Client, base_url: str,
                                                                platform: Any, device: dict[str, str]) -> None:
    """A poll is ThingsBoard's SYNC session: the MQTT session stays, and RPC goes to it first."""
    import paho.mqtt.client as mqtt

    received: list[Any] = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"poll-mqtt-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(device["token"])
    client.on_connect = lambda c, *_: c.subscribe("v1/devices/me/rpc/request/+", qos=1)
    client.on_subscribe = lambda *_: subscribed.set()
    client.on_message = lambda _c, _u, m: received.append(json.loads(m.payload))
    client.connect("127.0.0.1", platform.mqtt_port)
    client.loop_start()
    try:
        assert subscribed.wait(WAIT)
        answers: list[httpx.Response] = []
        poller = _poll_rpc(base_url, device["token"], 3000, answers)
        _wait_for_poll(platform, device["id"])
        sent = tenant.post(f"/api/plugins/rpc/oneway/{device['id']}", json={"method": "toMqtt", "params": 1})
        assert sent.status_code == 200, sent.text
        eventually(lambda: received, "the RPC over MQTT")
        assert received[0] == {"method": "toMqtt", "params": 1}
        poller.join(WAIT)
        assert answers and answers[0].status_code == 408
        assert client.is_connected()
    finally:
        client.disconnect()
        client.loop_stop()
