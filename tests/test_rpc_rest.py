"""Server-side RPC over REST (/api/plugins/rpc v1, /api/rpc v2) to a device connected over MQTT,
to an offline device, and persistent RPC. Calls to a device need ``services.live`` (the shards)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator

import paho.mqtt.client as mqtt
import pytest

from tests.conftest import assert_tb_error


def new_device(tenant) -> tuple[str, str]:
    token = f"RPC_{uuid.uuid4().hex}"
    response = tenant.post("/api/device", params={"accessToken": token},
                           json={"name": f"RPC device {uuid.uuid4().hex[:8]}"})
    assert response.status_code == 200, response.text
    return response.json()["id"]["id"], token


@pytest.fixture
def offline(tenant) -> Iterator[str]:
    device, _ = new_device(tenant)
    yield device
    tenant.delete(f"/api/device/{device}")


@pytest.fixture
def online(tenant, platform) -> Iterator[tuple[str, list]]:
    """A device connected over MQTT that answers every RPC with ``{"echo": params}``."""
    device, token = new_device(tenant)
    received: list = []
    subscribed = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rpc-{uuid.uuid4().hex[:8]}")
    client.username_pw_set(token)

    def on_connect(c, userdata, flags, reason, properties):
        c.subscribe("v1/devices/me/rpc/request/+", qos=1)

    def on_message(c, userdata, message):
        request = json.loads(message.payload)
        received.append(request)
        request_id = message.topic.rsplit("/", 1)[1]
        c.publish(f"v1/devices/me/rpc/response/{request_id}", json.dumps({"echo": request["params"]}), qos=1)

    client.on_connect = on_connect
    client.on_subscribe = lambda *args: subscribed.set()
    client.on_message = on_message
    client.connect("127.0.0.1", platform.mqtt_port)
    client.loop_start()
    try:
        assert subscribed.wait(15), "the device did not get its RPC subscription"
        yield device, received
    finally:
        client.disconnect()
        client.loop_stop()
        tenant.delete(f"/api/device/{device}")


@pytest.mark.parametrize("prefix", ["/api/plugins/rpc", "/api/rpc"])
def test_two_way_rpc_answers_the_devices_response(tenant, online, prefix):
    device, received = online
    answer = tenant.post(f"{prefix}/twoway/{device}", json={"method": "getTemp", "params": {"unit": "C"}})
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"echo": {"unit": "C"}}
    assert received[-1] == {"method": "getTemp", "params": {"unit": "C"}}
    one_way = tenant.post(f"{prefix}/oneway/{device}", json={"method": "blink", "params": 3})
    assert one_way.status_code == 200, one_way.text


def test_customer_calls_its_devices_only(tenant, customer_a, customer_b, online):
    device, _ = online
    customer_a_id = customer_a.get("/api/auth/user").json()["customerId"]["id"]
    assert tenant.post(f"/api/customer/{customer_a_id}/device/{device}").status_code == 200
    assert customer_a.post(f"/api/plugins/rpc/twoway/{device}", json={"method": "m", "params": 1}).json() == {
        "echo": 1}
    assert_tb_error(customer_b.post(f"/api/plugins/rpc/twoway/{device}", json={"method": "m", "params": 1}), 403, 20)


def test_offline_device_is_409_on_v1_and_504_on_v2(tenant, offline):
    assert_tb_error(tenant.post(f"/api/plugins/rpc/twoway/{offline}", json={"method": "m", "params": {}}), 409)
    assert_tb_error(tenant.post(f"/api/rpc/twoway/{offline}", json={"method": "m", "params": {}}), 504)
    assert_tb_error(tenant.post(f"/api/plugins/rpc/oneway/{offline}", json={"method": "m", "params": {}}), 409)


def test_bad_requests_and_unknown_devices(tenant, anonymous, offline):
    assert_tb_error(tenant.post(f"/api/plugins/rpc/twoway/{offline}", json={"params": {}}), 400)
    assert_tb_error(tenant.post(f"/api/plugins/rpc/twoway/{offline}", json={"method": 5}), 400)
    assert_tb_error(tenant.post(f"/api/plugins/rpc/twoway/{offline}", json={"method": "m", "timeout": -1}), 400)
    assert_tb_error(tenant.post(f"/api/plugins/rpc/twoway/{offline}", content=b"{nope",
                                headers={"Content-Type": "application/json"}), 400)
    assert_tb_error(tenant.post("/api/plugins/rpc/twoway/not-a-uuid", json={"method": "m"}), 400)
    assert_tb_error(tenant.post(f"/api/rpc/twoway/{uuid.uuid4()}", json={"method": "m"}), 404, 32)
    assert_tb_error(anonymous.post(f"/api/rpc/twoway/{offline}", json={"method": "m"}), 401, 10)


def test_persistent_rpc_is_stored_listed_and_deleted(tenant, customer_b, offline):
    created = tenant.post(f"/api/rpc/twoway/{offline}", json={"method": "reboot", "params": {"in": 5},
                                                              "persistent": True, "timeout": 60_000,
                                                              "additionalInfo": {"why": "test"}})
    assert created.status_code == 200, created.text
    rpc_id = created.json()["rpcId"]
    rpc = tenant.get(f"/api/rpc/persistent/{rpc_id}").json()
    assert rpc["id"] == {"entityType": "RPC", "id": rpc_id}
    assert rpc["deviceId"] == {"entityType": "DEVICE", "id": offline}
    assert rpc["status"] == "QUEUED"  # the device is offline: it waits for it
    assert rpc["request"]["body"]["method"] == "reboot" and rpc["additionalInfo"] == {"why": "test"}
    page = tenant.get(f"/api/rpc/persistent/device/{offline}", params={"pageSize": 10, "page": 0}).json()
    assert [r["id"]["id"] for r in page["data"]] == [rpc_id] and page["totalElements"] == 1
    queued = tenant.get(f"/api/rpc/persistent/device/{offline}",
                        params={"pageSize": 10, "page": 0, "rpcStatus": "SUCCESSFUL"}).json()
    assert queued["data"] == []
    assert_tb_error(tenant.get(f"/api/rpc/persistent/device/{offline}",
                               params={"pageSize": 10, "page": 0, "rpcStatus": "LOST"}), 400)
    assert_tb_error(customer_b.get(f"/api/rpc/persistent/{rpc_id}"), 403, 20)
    assert tenant.delete(f"/api/rpc/persistent/{rpc_id}").status_code == 200
    assert_tb_error(tenant.get(f"/api/rpc/persistent/{rpc_id}"), 404, 32)
