"""MQTT over TLS in ``thingsray up``: the flags turn the listener on beside the plain one, a demo
device's acknowledged telemetry is stored, and a bad key stops ``up`` before anything starts.

One ``up`` (embedded database, private Ray, ephemeral ports) serves the slow tests; as in
test_up.py every wait is bounded and teardown kills whatever the process left.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import TENANT_ADMIN, free_port
from tests.test_up import REPO, UpProcess, child_env, listening_sockets
from tests.transports.test_mqtt_tls import KEY_PASSWORD, Pki, make_pki

WAIT = 30.0  # a bound on waiting for an acknowledgement; never a speed assertion
slow = pytest.mark.slow


@dataclass
class TlsUp:
    up: UpProcess
    url: str
    mqtt_port: int
    tls_port: int
    pki: Pki


@pytest.fixture(scope="module")
def tls_up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsUp]:
    """``up --demo`` with an encrypted server key (its password and a client CA from the environment)."""
    data_dir = tmp_path_factory.mktemp("up-tls")
    pki = make_pki(tmp_path_factory.mktemp("up-tls-pki"))
    http_port, mqtt_port, tls_port = free_port(), free_port(), free_port()
    env = child_env(THINGSRAY_MQTT_TLS_KEY_PASSWORD=KEY_PASSWORD, THINGSRAY_MQTT_TLS_CA=str(pki.ca))
    up = UpProcess(data_dir, data_dir.parent / f"{data_dir.name}.log",
                   ["--host", "127.0.0.1", "--http-port", str(http_port), "--mqtt-port", str(mqtt_port),
                    "--coap-port", str(free_port()), "--mqtt-tls-port", str(tls_port),
                    "--mqtt-tls-cert", str(pki.server_cert), "--mqtt-tls-key", str(pki.server_key_encrypted),
                    "--demo"], env)
    try:
        url = f"http://127.0.0.1:{http_port}"
        up.wait_ready(url)
        yield TlsUp(up, url, mqtt_port, tls_port, pki)
    finally:
        up.kill()


def latest(url: str, device_name: str, key: str) -> list[dict]:
    token = httpx.post(f"{url}/api/auth/login",
                       json={"username": TENANT_ADMIN[0], "password": TENANT_ADMIN[1]}).json()["token"]
    with httpx.Client(base_url=url, headers={"X-Authorization": f"Bearer {token}"}, timeout=30) as client:
        device = client.get("/api/tenant/devices", params={"deviceName": device_name})
        assert device.status_code == 200, device.text
        answer = client.get(f"/api/plugins/telemetry/DEVICE/{device.json()['id']['id']}/values/timeseries",
                            params={"keys": key})
        assert answer.status_code == 200, answer.text
        return answer.json()[key]


@slow
def test_up_reports_both_mqtt_listeners_on_loopback(tls_up: TlsUp):
    output = tls_up.up.output()
    assert f"mqtt: listening on 127.0.0.1:{tls_up.mqtt_port}" in output
    assert f"mqtt: TLS listening on 127.0.0.1:{tls_up.tls_port}" in output
    assert f"mqtts://127.0.0.1:{tls_up.tls_port}" in output  # the banner
    sockets = {(ip, port) for _, ip, port in listening_sockets(tls_up.up.processes())}
    assert {("127.0.0.1", tls_up.mqtt_port), ("127.0.0.1", tls_up.tls_port)} <= sockets


@slow
def test_tb_mqtt_client_over_tls_gets_its_telemetry_acknowledged_and_stored(tls_up: TlsUp):
    from tb_device_mqtt import TBDeviceMqttClient

    client = TBDeviceMqttClient("127.0.0.1", port=tls_up.tls_port, username="A1_TEST_TOKEN")
    client.connect(tls=True, ca_certs=str(tls_up.pki.ca))
    try:
        deadline = time.monotonic() + WAIT
        while not client.is_connected():
            assert time.monotonic() < deadline, "no CONNACK over TLS"
            time.sleep(0.05)
        assert client.send_telemetry({"tlsTemperature": 21.5}).get() == 0  # PUBACK: committed
    finally:
        client.disconnect()
    assert latest(tls_up.url, "Test Device A1", "tlsTemperature")[0]["value"] == "21.5"


@slow
def test_a_device_with_a_client_certificate_publishes_over_tls(tls_up: TlsUp):
    pki = tls_up.pki
    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.tls_set(ca_certs=str(pki.ca), certfile=str(pki.client_cert), keyfile=str(pki.client_key))
    c.username_pw_set("A2_TEST_TOKEN")
    acknowledged = threading.Event()
    c.on_publish = lambda *_: acknowledged.set()
    c.connect("127.0.0.1", tls_up.tls_port)
    c.loop_start()
    try:
        c.publish("v1/devices/me/telemetry", '{"withClientCert":1}', qos=1)
        assert acknowledged.wait(WAIT)
    finally:
        c.disconnect()
        c.loop_stop()
    assert latest(tls_up.url, "Test Device A2", "withClientCert")[0]["value"] == "1"


@slow
def test_an_x509_device_connects_with_its_certificate_alone(tls_up: TlsUp):
    """The certificate's PEM body hashed with SHA3-256 is the device's credentials id (spec 1.1): no
    username, no password; a certificate no device has, without a token, is not authorized."""
    pki = tls_up.pki
    token = httpx.post(f"{tls_up.url}/api/auth/login",
                       json={"username": TENANT_ADMIN[0], "password": TENANT_ADMIN[1]}).json()["token"]
    with httpx.Client(base_url=tls_up.url, headers={"X-Authorization": f"Bearer {token}"}, timeout=30) as tenant:
        created = tenant.post("/api/device", json={"name": "X509 Device"})
        assert created.status_code == 200, created.text
        credentials = tenant.get(f"/api/device/{created.json()['id']['id']}/credentials").json()
        saved = tenant.post("/api/device/credentials", json={
            **credentials, "credentialsType": "X509_CERTIFICATE", "credentialsId": None,
            "credentialsValue": pki.device_cert.read_text()})
        assert saved.status_code == 200, saved.text

    def connect(cert: Path, key: Path) -> tuple[int, paho.Client, threading.Event]:
        c = paho.Client(CallbackAPIVersion.VERSION2)
        c.tls_set(ca_certs=str(pki.ca), certfile=str(cert), keyfile=str(key))
        answered, codes, acknowledged = threading.Event(), [], threading.Event()
        c.on_connect = lambda _c, _u, _f, reason, _p: (codes.append(reason.value), answered.set())
        c.on_publish = lambda *_: acknowledged.set()
        c.connect("127.0.0.1", tls_up.tls_port)
        c.loop_start()
        assert answered.wait(WAIT)
        return codes[0], c, acknowledged

    code, client, acknowledged = connect(pki.device_cert, pki.device_key)
    try:
        assert code == 0
        client.publish("v1/devices/me/telemetry", '{"byCertificate":1}', qos=1)
        assert acknowledged.wait(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()
    assert latest(tls_up.url, "X509 Device", "byCertificate")[0]["value"] == "1"
    code, client, _ = connect(pki.client_cert, pki.client_key)  # signed by the CA, but no device's
    client.loop_stop()
    assert code == 135  # not authorized (paho gives 3.1.1's return code 5 as MQTT 5's reason 135)


@slow
def test_sigterm_stops_up_with_both_listeners(tls_up: TlsUp):
    assert tls_up.up.stop(signal.SIGTERM) == 0, tls_up.up.output()
    assert not tls_up.up.leftovers(wait_s=30.0)


def test_a_wrong_key_password_stops_up_before_anything_starts(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    result = subprocess.run(
        [sys.executable, "-m", "thingsray", "up", "--data-dir", str(tmp_path / "data"), "--host", "127.0.0.1",
         "--http-port", str(free_port()), "--mqtt-port", str(free_port()), "--mqtt-tls-port", str(free_port()),
         "--mqtt-tls-cert", str(pki.server_cert), "--mqtt-tls-key", str(pki.server_key_encrypted)],
        cwd=REPO, env=child_env(THINGSRAY_MQTT_TLS_KEY_PASSWORD="wrong"), capture_output=True, text=True,
        timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "THINGSRAY_MQTT_TLS_KEY_PASSWORD) does not decrypt" in result.stdout
    assert "database:" not in result.stdout and "ray:" not in result.stdout
    assert not (tmp_path / "data").exists()


def test_a_certificate_without_its_key_is_refused_at_the_command_line(tmp_path: Path):
    pki = make_pki(tmp_path / "pki")
    result = subprocess.run(
        [sys.executable, "-m", "thingsray", "up", "--data-dir", str(tmp_path / "data"),
         "--mqtt-tls-cert", str(pki.server_cert)],
        cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "THINGSRAY_MQTT_TLS_KEY / --mqtt-tls-key" in result.stderr
