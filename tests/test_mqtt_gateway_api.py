"""ThingsBoard's MQTT gateway API end to end: the official ``TBGatewayMqttClient`` against the
running platform (transport actor, device actors in shards, PostgreSQL), checked over REST."""

from __future__ import annotations

import threading
import uuid
from typing import Any

from tests.conftest import eventually, unique


def test_official_gateway_client_end_to_end(tenant, platform, mqtt_port):
    from tb_gateway_mqtt import TBGatewayMqttClient

    token = f"GW-{uuid.uuid4().hex[:12]}"
    created = tenant.post("/api/device", params={"accessToken": token},
                          json={"name": unique("gateway"), "additionalInfo": {"gateway": True}})
    assert created.status_code == 200, created.text
    gateway_id = created.json()["id"]["id"]
    child_name, profile_name = unique("gateway child"), unique("gateway profile")

    gw = TBGatewayMqttClient("127.0.0.1", port=mqtt_port, username=token)
    rpcs: list[Any] = []
    updates: list[Any] = []

    def on_rpc(client: Any, body: Any) -> None:
        rpcs.append(body)
        client.gw_send_rpc_reply(body["device"], body["data"]["id"], {"doubled": body["data"]["params"]["x"] * 2})

    gw.gw_set_server_side_rpc_request_handler(on_rpc)
    gw.connect()
    try:
        eventually(gw.is_connected, "the gateway connected")
        gw.gw_connect_device(child_name, profile_name)

        def child() -> dict[str, Any] | None:
            found = tenant.get("/api/tenant/devices", params={"deviceName": child_name})
            return found.json() if found.status_code == 200 else None

        device = eventually(child, "the child device created by the gateway")
        child_id = device["id"]["id"]
        assert device["type"] == profile_name
        profile = tenant.get(f"/api/deviceProfile/{device['deviceProfileId']['id']}")
        assert profile.status_code == 200 and profile.json()["name"] == profile_name
        relations = tenant.get("/api/relations", params={"fromId": gateway_id, "fromType": "DEVICE"}).json()
        assert [(r["to"]["id"], r["type"]) for r in relations] == [(child_id, "Created")]

        gw.gw_send_telemetry(child_name, {"ts": 1700000000000, "values": {"temperature": 21.5}})
        gw.gw_send_telemetry(child_name, {"humidity": 40})
        gw.gw_send_attributes(child_name, {"firmware": "1.2"})

        def telemetry() -> dict[str, Any] | None:
            values = tenant.get(f"/api/plugins/telemetry/DEVICE/{child_id}/values/timeseries",
                                params={"keys": "temperature,humidity"}).json()
            stored = all(values.get(key, [{}])[0].get("value") is not None for key in ("temperature", "humidity"))
            return values if stored else None  # a key without data is answered with value null

        values = eventually(telemetry, "the child's telemetry readable over REST")
        assert values["temperature"][0]["ts"] == 1700000000000 and float(values["temperature"][0]["value"]) == 21.5
        assert float(values["humidity"][0]["value"]) == 40

        def client_attributes() -> list[Any]:
            return tenant.get(f"/api/plugins/telemetry/DEVICE/{child_id}/values/attributes/CLIENT_SCOPE").json()

        assert any(a["key"] == "firmware" for a in eventually(client_attributes, "the child's client attribute"))

        # a shared attribute set over REST reaches the gateway's callback
        gw.gw_subscribe_to_all_attributes(updates.append)
        saved = tenant.post(f"/api/plugins/telemetry/DEVICE/{child_id}/attributes/SHARED_SCOPE", json={"target": 23})
        assert saved.status_code == 200, saved.text
        eventually(lambda: {"device": child_name, "data": {"target": 23}} in updates, "the shared attribute update")

        answers: list[Any] = []
        gw.gw_request_shared_attributes(child_name, ["target"], lambda body, _e: answers.append(body))
        gw.gw_request_client_attributes(child_name, ["firmware"], lambda body, _e: answers.append(body))
        eventually(lambda: len(answers) == 2, "the attribute responses")
        assert all(a["device"] == child_name for a in answers)
        assert sorted(a["value"] for a in answers) == [1.2, 23]  # "1.2" was stored as a number

        # a server RPC to the child, answered by the gateway, returns to the REST caller
        answer = tenant.post(f"/api/plugins/rpc/twoway/{child_id}", json={"method": "double", "params": {"x": 21},
                                                                         "timeout": 10000})
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"doubled": 42}
        assert rpcs[0]["device"] == child_name and rpcs[0]["data"]["method"] == "double"
    finally:
        gw.disconnect()

    def disconnected() -> bool:
        attributes = tenant.get(f"/api/plugins/telemetry/DEVICE/{child_id}/values/attributes/SERVER_SCOPE").json()
        return any(a["key"] == "lastDisconnectTime" for a in attributes)

    eventually(disconnected, "the child disconnected with its gateway")


def test_a_device_that_is_not_a_gateway_cannot_create_devices(tenant, platform, mqtt_port):
    import paho.mqtt.client as paho

    token = f"NOGW-{uuid.uuid4().hex[:12]}"
    assert tenant.post("/api/device", params={"accessToken": token},
                       json={"name": unique("plain device")}).status_code == 200
    name = unique("would-be child")
    acked: dict[int, Any] = {}
    done = threading.Event()
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.username_pw_set(token)

    def on_publish(_c: Any, _u: Any, mid: int, reason: Any, _p: Any) -> None:
        acked[mid] = reason
        done.set()

    c.on_publish = on_publish
    c.connect("127.0.0.1", mqtt_port)
    c.loop_start()
    try:
        info = c.publish("v1/gateway/connect", f'{{"device":"{name}"}}', qos=1)
        assert done.wait(20)
        assert str(acked[info.mid]) == "Topic name invalid"
        assert tenant.get("/api/tenant/devices", params={"deviceName": name}).status_code == 404
    finally:
        c.disconnect()
        c.loop_stop()
