"""Device provisioning end to end: a device presents its profile's provision key and secret over
MQTT (the official client's ``TBDeviceMqttClient.provision``) or HTTP (``/api/v1/provision``) and
gets credentials it then connects with."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import pytest

from tests.conftest import unique
from tests.transports.test_mqtt_tls import make_pki
from thingsray.storage.credentials import sha3_hex

WAIT = 20.0


def provisioning_profile(tenant: httpx.Client, provision_type: str) -> tuple[str, str, str]:
    """A profile provisioning devices the given way: (profile id, key, secret)."""
    key, secret = f"key-{uuid.uuid4().hex[:10]}", f"secret-{uuid.uuid4().hex[:10]}"
    profile = tenant.post("/api/deviceProfile", json={
        "name": unique("provisioned"), "provisionType": provision_type, "provisionDeviceKey": key,
        "profileData": {"configuration": {"type": "DEFAULT"}, "transportConfiguration": {"type": "DEFAULT"},
                        "provisionConfiguration": {"type": provision_type, "provisionDeviceSecret": secret}}})
    assert profile.status_code == 200, profile.text
    return profile.json()["id"]["id"], key, secret


def device_named(tenant: httpx.Client, name: str) -> dict[str, Any] | None:
    found = tenant.get("/api/tenant/devices", params={"deviceName": name})
    return found.json() if found.status_code == 200 else None


def mqtt_provision(port: int, request: dict[str, Any], *, protocol: int = mqtt.MQTTv311) -> dict[str, Any]:
    """A plain client's provisioning exchange: connect as "provision", subscribe, publish, read the answer."""
    answers: list[dict[str, Any]] = []
    answered = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"prov-{uuid.uuid4().hex[:8]}",
                         protocol=protocol)
    client.username_pw_set("provision")

    def on_connect(c: mqtt.Client, *_: Any) -> None:
        c.subscribe("/provision/response", qos=1)

    def on_subscribe(c: mqtt.Client, *_: Any) -> None:
        c.publish("/provision/request", json.dumps(request), qos=1)

    def on_message(_c: mqtt.Client, _u: Any, message: mqtt.MQTTMessage) -> None:
        answers.append(json.loads(message.payload))
        answered.set()

    client.on_connect, client.on_subscribe, client.on_message = on_connect, on_subscribe, on_message
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert answered.wait(WAIT), "no provisioning answer"
    finally:
        client.disconnect()
        client.loop_stop()
    return answers[0]


def publish_with_token(port: int, token: str, payload: dict[str, Any], **credentials: str) -> None:
    done = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=credentials.get("client_id", ""))
    client.username_pw_set(credentials.get("username", token), credentials.get("password"))
    client.on_publish = lambda *_: done.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish("v1/devices/me/telemetry", json.dumps(payload), qos=1)
        assert done.wait(WAIT), "the telemetry was not acknowledged"
    finally:
        client.disconnect()
        client.loop_stop()


def latest(tenant: httpx.Client, device_id: str, key: str) -> Any:
    values = tenant.get(f"/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries", params={"keys": key})
    assert values.status_code == 200, values.text
    return values.json()[key][0]["value"]


def test_the_official_client_provisions_a_new_device_and_connects_with_its_token(tenant: httpx.Client,
                                                                                 mqtt_port: int) -> None:
    from tb_device_mqtt import TBDeviceMqttClient

    profile_id, key, secret = provisioning_profile(tenant, "ALLOW_CREATE_NEW_DEVICES")
    name = unique("self-provisioned")
    credentials = TBDeviceMqttClient.provision("127.0.0.1", key, secret, port=mqtt_port, device_name=name)
    assert credentials is not None, "provisioning failed"
    assert credentials["status"] == "SUCCESS" and credentials["credentialsType"] == "ACCESS_TOKEN"
    device = device_named(tenant, name)
    assert device is not None and device["deviceProfileId"]["id"] == profile_id
    stored = tenant.get(f"/api/device/{device['id']['id']}/credentials").json()
    assert stored["credentialsId"] == credentials["credentialsValue"]
    state = tenant.get(f"/api/plugins/telemetry/DEVICE/{device['id']['id']}/values/attributes/SERVER_SCOPE",
                       params={"keys": "provisionState"}).json()
    assert [a["value"] for a in state] == ["provisioned"]
    publish_with_token(mqtt_port, credentials["credentialsValue"], {"provisioned": 1})
    assert latest(tenant, device["id"]["id"], "provisioned") == "1"
    again = mqtt_provision(mqtt_port, {"deviceName": name, "provisionDeviceKey": key, "provisionDeviceSecret": secret})
    assert again == {"errorMsg": "Failed to provision device!", "status": "FAILURE"}


@pytest.mark.parametrize("protocol", [mqtt.MQTTv311, mqtt.MQTTv5])
def test_a_device_asks_for_its_own_token_and_mqtt_basic_credentials(tenant: httpx.Client, mqtt_port: int,
                                                                    protocol: int) -> None:
    _, key, secret = provisioning_profile(tenant, "ALLOW_CREATE_NEW_DEVICES")
    token = f"OWN-{uuid.uuid4().hex[:10]}"
    answer = mqtt_provision(mqtt_port, {"deviceName": unique("own token"), "provisionDeviceKey": key,
                                        "provisionDeviceSecret": secret, "credentialsType": "ACCESS_TOKEN",
                                        "token": token}, protocol=protocol)
    assert answer == {"credentialsType": "ACCESS_TOKEN", "credentialsValue": token, "status": "SUCCESS"}
    name = unique("basic")
    client_id, username, password = f"cid-{uuid.uuid4().hex[:6]}", "user", "pass"
    basic = mqtt_provision(mqtt_port, {"deviceName": name, "provisionDeviceKey": key, "provisionDeviceSecret": secret,
                                       "credentialsType": "MQTT_BASIC", "clientId": client_id, "username": username,
                                       "password": password}, protocol=protocol)
    assert basic == {"credentialsType": "MQTT_BASIC", "status": "SUCCESS",
                     "credentialsValue": {"clientId": client_id, "userName": username, "password": password}}
    publish_with_token(mqtt_port, "", {"basicProvisioned": True}, client_id=client_id, username=username,
                       password=password)
    device = device_named(tenant, name)
    assert device is not None
    assert latest(tenant, device["id"]["id"], "basicProvisioned") == "true"


def test_pre_provisioned_devices_get_their_credentials_once_provisioned(tenant: httpx.Client, mqtt_port: int,
                                                                        anonymous: httpx.Client) -> None:
    profile_id, key, secret = provisioning_profile(tenant, "CHECK_PRE_PROVISIONED_DEVICES")
    name = unique("pre-provisioned")
    token = f"PRE-{uuid.uuid4().hex[:10]}"
    created = tenant.post("/api/device", params={"accessToken": token},
                          json={"name": name, "deviceProfileId": {"entityType": "DEVICE_PROFILE", "id": profile_id}})
    assert created.status_code == 200, created.text
    request = {"deviceName": name, "provisionDeviceKey": key, "provisionDeviceSecret": secret}
    assert mqtt_provision(mqtt_port, request) == {"credentialsType": "ACCESS_TOKEN", "credentialsValue": token,
                                                  "status": "SUCCESS"}
    over_http = anonymous.post("/api/v1/provision", json=request)
    assert over_http.status_code == 200, over_http.text
    assert over_http.json()["credentialsValue"] == token
    unknown = anonymous.post("/api/v1/provision", json={**request, "deviceName": unique("never created")})
    assert unknown.json() == {"errorMsg": "Failed to provision device!", "status": "FAILURE"}


def test_wrong_keys_and_secrets_are_not_found(tenant: httpx.Client, mqtt_port: int, anonymous: httpx.Client) -> None:
    _, key, secret = provisioning_profile(tenant, "ALLOW_CREATE_NEW_DEVICES")
    not_found = {"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"}
    name = unique("intruder")
    assert mqtt_provision(mqtt_port, {"deviceName": name, "provisionDeviceKey": key,
                                      "provisionDeviceSecret": "guess"}) == not_found
    assert anonymous.post("/api/v1/provision", json={"deviceName": name, "provisionDeviceKey": "nope",
                                                     "provisionDeviceSecret": secret}).json() == not_found
    assert anonymous.post("/api/v1/provision", json={"deviceName": name}).json() == not_found
    assert device_named(tenant, name) is None
    disabled = tenant.post("/api/deviceProfile", json={"name": unique("no provisioning")}).json()
    assert disabled["provisionType"] == "DISABLED"


def test_bad_provisioning_requests_are_refused_cleanly(mqtt_port: int, anonymous: httpx.Client) -> None:
    assert anonymous.post("/api/v1/provision", content=b"{not json").status_code == 400
    assert anonymous.post("/api/v1/provision", json=[1, 2]).status_code == 400
    # MQTT 5: the request is refused with "payload format invalid" and the session lives on
    refused: list[int] = []
    acked = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.username_pw_set("provision")
    client.on_publish = lambda _c, _u, _mid, reason, _p: (refused.append(reason.value), acked.set())
    client.connect("127.0.0.1", mqtt_port)
    client.loop_start()
    try:
        client.publish("/provision/request", b"{not json", qos=1)
        assert acked.wait(WAIT)
        assert refused == [0x99]
    finally:
        client.disconnect()
        client.loop_stop()
    # a provisioning session may not publish telemetry: it is closed
    closed = threading.Event()
    other = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    other.username_pw_set("provision")
    other.on_disconnect = lambda *_: closed.set()
    other.on_connect = lambda c, *_: c.publish("v1/devices/me/telemetry", '{"a":1}', qos=1)
    other.connect("127.0.0.1", mqtt_port)
    other.loop_start()
    try:
        assert closed.wait(WAIT), "the provisioning session was not closed"
    finally:
        other.loop_stop()


def test_a_device_provisions_with_its_certificate(tenant: httpx.Client, anonymous: httpx.Client,
                                                  tmp_path: Path) -> None:
    _, key, secret = provisioning_profile(tenant, "ALLOW_CREATE_NEW_DEVICES")
    pem = make_pki(tmp_path).client_cert.read_text()
    name = unique("x509 provisioned")
    answer = anonymous.post("/api/v1/provision", json={"deviceName": name, "provisionDeviceKey": key,
                                                       "provisionDeviceSecret": secret,
                                                       "credentialsType": "X509_CERTIFICATE", "hash": pem})
    assert answer.json()["status"] == "SUCCESS", answer.text
    device = device_named(tenant, name)
    assert device is not None
    stored = tenant.get(f"/api/device/{device['id']['id']}/credentials").json()
    body = "".join(line for line in pem.strip().splitlines() if "CERTIFICATE" not in line)
    assert stored["credentialsType"] == "X509_CERTIFICATE" and stored["credentialsId"] == sha3_hex(body)
