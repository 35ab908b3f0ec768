"""MQTT over TLS: the listener with the context built from PEM files, behind the in-memory platform,
driven by paho over TLS and by raw sockets; and how bad TLS settings are reported.

Certificates are made here: a CA signs the server certificate (for 127.0.0.1) and a client
certificate; a second, untrusted CA signs a client certificate of its own.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from paho.mqtt.enums import CallbackAPIVersion

from tests.transports.memory_service import MemoryService
from tests.transports.test_mqtt_server import Running
from thingsray.config import ConfigError, Settings
from thingsray.transports.mqtt import codec
from thingsray.transports.mqtt.tls import TlsFiles, server_context
from thingsray.transports.payloads import TelemetryGroup
from thingsray.transports.service import DeviceIdentity, SessionSink

WAIT = 10.0  # a bound on waiting for something that should happen at once; never a speed assertion
KEY_PASSWORD = "s3cret-pass"
DISCONNECT = b"\xe0\x00"  # a client's MQTT 3.1.1 DISCONNECT


# --- certificates ------------------------------------------------------------------------------
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _certificate(subject: str, key: ec.EllipticCurvePrivateKey, issuer: x509.Certificate | None,
                 issuer_key: ec.EllipticCurvePrivateKey, *, ca: bool = False, server: bool = False) -> x509.Certificate:
    now = datetime.datetime.now(datetime.UTC)
    builder = (x509.CertificateBuilder()
               .subject_name(_name(subject))
               .issuer_name(issuer.subject if issuer is not None else _name(subject))
               .public_key(key.public_key())
               .serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5))
               .not_valid_after(now + datetime.timedelta(days=2))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
                              critical=False))
    if ca:
        builder = builder.add_extension(x509.KeyUsage(
            digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
            key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False),
            critical=True)
    else:
        usage = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
        builder = builder.add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
    if server:
        builder = builder.add_extension(x509.SubjectAlternativeName(
            [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass
class Pki:
    """PEM files in ``directory``."""

    directory: Path
    files: dict[str, Path] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Path:
        try:
            return self.__dict__["files"][name]
        except KeyError:
            raise AttributeError(name) from None

    def write_cert(self, name: str, cert: x509.Certificate) -> None:
        self.files[name] = self.directory / f"{name}.pem"
        self.files[name].write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def write_key(self, name: str, key: ec.EllipticCurvePrivateKey, password: str | None = None) -> None:
        encryption: serialization.KeySerializationEncryption = (
            serialization.BestAvailableEncryption(password.encode()) if password else serialization.NoEncryption())
        self.files[name] = self.directory / f"{name}.key"
        self.files[name].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                       serialization.PrivateFormat.PKCS8, encryption))


def make_pki(directory: Path) -> Pki:
    """ca, server_cert/server_key (and server_key_encrypted with KEY_PASSWORD), client_cert/client_key
    and device_cert/device_key signed by ca; other_ca and other_client_cert/other_client_key that ca does not know."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(directory)
    ca_key, other_ca_key = _key(), _key()
    ca = _certificate("thingsray test CA", ca_key, None, ca_key, ca=True)
    other_ca = _certificate("untrusted CA", other_ca_key, None, other_ca_key, ca=True)
    pki.write_cert("ca", ca)
    pki.write_cert("other_ca", other_ca)
    for name, issuer, issuer_key, server in (("server", ca, ca_key, True), ("client", ca, ca_key, False),
                                             ("device", ca, ca_key, False),
                                             ("other_client", other_ca, other_ca_key, False)):
        key = _key()
        pki.write_cert(f"{name}_cert", _certificate(f"{name}.test", key, issuer, issuer_key, server=server))
        pki.write_key(f"{name}_key", key)
        if server:
            pki.write_key("server_key_encrypted", key, KEY_PASSWORD)
    return pki


# --- a TLS listener behind the in-memory platform ----------------------------------------------
@dataclass
class RecordingService(MemoryService):
    """Also remembers the client certificate each device's session presented."""

    peer_certificates: dict[str, str | None] = field(default_factory=dict)

    async def connect(self, device: DeviceIdentity, sink: SessionSink) -> None:
        self.peer_certificates[device.device_name] = getattr(sink, "peer_certificate_pem", "not exposed")
        await super().connect(device, sink)


def tls_running(context: ssl.SSLContext) -> Running:
    return Running(RecordingService(), ssl_context=context)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_mqtt(pki: Pki) -> Iterator[Running]:
    """Server authentication only, as with --mqtt-tls-cert/--mqtt-tls-key."""
    running = tls_running(server_context(TlsFiles(str(pki.server_cert), str(pki.server_key))))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def mtls_mqtt(pki: Pki) -> Iterator[Running]:
    """With THINGSRAY_MQTT_TLS_CA: client certificates that CA signed are taken (and an encrypted key)."""
    files = TlsFiles(str(pki.server_cert), str(pki.server_key_encrypted), KEY_PASSWORD, str(pki.ca))
    running = tls_running(server_context(files))
    yield running
    running.stop()


def tls_client(port: int, token: str, ca: Path, *, cert: Path | None = None, key: Path | None = None) -> paho.Client:
    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.tls_set(ca_certs=str(ca), certfile=str(cert) if cert else None, keyfile=str(key) if key else None)
    c.username_pw_set(token)
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    return c


def publish_over_tls(port: int, token: str, ca: Path, payload: str, **certs: Path) -> paho.Client:
    """Connect, publish QoS 1 and wait for its PUBACK; the caller disconnects."""
    c = tls_client(port, token, ca, **certs)
    message = c.publish("v1/devices/me/telemetry", payload, qos=1)
    message.wait_for_publish(WAIT)
    assert message.is_published()
    assert isinstance(c.socket(), ssl.SSLSocket)
    return c


def close(c: paho.Client) -> None:
    c.disconnect()
    c.loop_stop()


def tls_exchange(port: int, context: ssl.SSLContext, data: bytes) -> bytes | Exception:
    """What the server answers ``data`` over TLS until it closes: bytes, or the error that ended it."""
    chunks = []
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as raw, \
                context.wrap_socket(raw, server_hostname="127.0.0.1") as s:
            s.sendall(data)
            while chunk := s.recv(4096):
                chunks.append(chunk)
    except (ssl.SSLError, ConnectionError) as exc:
        return exc
    return b"".join(chunks)


def client_context(ca: Path, cert: Path | None = None, key: Path | None = None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca))
    if cert is not None:
        context.load_cert_chain(str(cert), str(key))
    return context


# --- the listener ------------------------------------------------------------------------------
def test_a_device_publishes_qos1_over_tls_with_its_token(tls_mqtt, pki):
    tls_mqtt.service.add_token("TLS-TOKEN-1", "tls-dev1")
    c = publish_over_tls(tls_mqtt.port, "TLS-TOKEN-1", pki.ca, '{"temperature":21.5}')
    close(c)
    assert ("tls-dev1", TelemetryGroup(None, {"temperature": 21.5})) in tls_mqtt.service.telemetry
    assert tls_mqtt.service.peer_certificates["tls-dev1"] is None  # no CA configured: none is asked for


def test_mqtt5_over_tls_refuses_a_wrong_token(tls_mqtt, pki):
    results: list[Any] = []
    c = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    c.tls_set(ca_certs=str(pki.ca))
    c.username_pw_set("NO-SUCH-TLS-TOKEN")
    c.on_connect = lambda _c, _u, _f, reason, _p: results.append(reason)
    ended = threading.Event()
    c.on_disconnect = lambda *_: ended.set()
    c.connect("127.0.0.1", tls_mqtt.port)
    c.loop_start()
    assert ended.wait(WAIT)
    c.loop_stop()
    assert [str(r) for r in results] == ["Not authorized"]


def test_a_client_that_does_not_trust_the_server_fails_the_handshake(tls_mqtt, pki):
    tls_mqtt.service.add_token("TLS-TOKEN-2", "tls-dev2")
    c = paho.Client(CallbackAPIVersion.VERSION2)
    c.tls_set(ca_certs=str(pki.other_ca))
    c.username_pw_set("TLS-TOKEN-2")
    with pytest.raises(ssl.SSLCertVerificationError):
        c.connect("127.0.0.1", tls_mqtt.port)
    assert "connect tls-dev2" not in tls_mqtt.service.events
    close(publish_over_tls(tls_mqtt.port, "TLS-TOKEN-2", pki.ca, '{"after":"refusal"}'))
    assert ("tls-dev2", TelemetryGroup(None, {"after": "refusal"})) in tls_mqtt.service.telemetry


def test_plain_mqtt_to_the_tls_port_is_closed_and_the_listener_lives(tls_mqtt, pki):
    tls_mqtt.service.add_token("TLS-TOKEN-3", "tls-dev3")
    connect = codec.connect_packet("plain", username="TLS-TOKEN-3")
    for _ in range(3):
        with socket.create_connection(("127.0.0.1", tls_mqtt.port), timeout=WAIT) as s:
            s.sendall(connect)
            answer = b""
            try:
                while chunk := s.recv(4096):
                    answer += chunk
            except ConnectionResetError:
                pass
        assert not answer.startswith(b"\x20"), answer  # never a CONNACK: at most a TLS alert, then the close
    assert "connect tls-dev3" not in tls_mqtt.service.events
    close(publish_over_tls(tls_mqtt.port, "TLS-TOKEN-3", pki.ca, '{"after":"plain"}'))
    assert ("tls-dev3", TelemetryGroup(None, {"after": "plain"})) in tls_mqtt.service.telemetry


def test_without_a_ca_a_client_certificate_is_not_asked_for(tls_mqtt, pki):
    tls_mqtt.service.add_token("TLS-TOKEN-4", "tls-dev4")
    close(publish_over_tls(tls_mqtt.port, "TLS-TOKEN-4", pki.ca, '{"a":1}', cert=pki.client_cert,
                           key=pki.client_key))
    assert tls_mqtt.service.peer_certificates["tls-dev4"] is None


def test_a_client_certificate_signed_by_the_ca_reaches_the_session(mtls_mqtt, pki):
    mtls_mqtt.service.add_token("MTLS-TOKEN-1", "mtls-dev1")
    close(publish_over_tls(mtls_mqtt.port, "MTLS-TOKEN-1", pki.ca, '{"x509":true}', cert=pki.client_cert,
                           key=pki.client_key))
    assert ("mtls-dev1", TelemetryGroup(None, {"x509": True})) in mtls_mqtt.service.telemetry
    seen = mtls_mqtt.service.peer_certificates["mtls-dev1"]
    assert seen is not None and seen.startswith("-----BEGIN CERTIFICATE-----")
    expected = x509.load_pem_x509_certificate(pki.client_cert.read_bytes())
    assert x509.load_pem_x509_certificate(seen.encode()) == expected


def test_with_a_ca_a_client_certificate_stays_optional(mtls_mqtt, pki):
    mtls_mqtt.service.add_token("MTLS-TOKEN-2", "mtls-dev2")
    close(publish_over_tls(mtls_mqtt.port, "MTLS-TOKEN-2", pki.ca, '{"token_only":1}'))
    assert ("mtls-dev2", TelemetryGroup(None, {"token_only": 1})) in mtls_mqtt.service.telemetry
    assert mtls_mqtt.service.peer_certificates["mtls-dev2"] is None


def test_a_client_certificate_from_another_ca_is_refused(mtls_mqtt, pki):
    mtls_mqtt.service.add_token("MTLS-TOKEN-3", "mtls-dev3")
    context = client_context(pki.ca, pki.other_client_cert, pki.other_client_key)
    answer = tls_exchange(mtls_mqtt.port, context, codec.connect_packet("x", username="MTLS-TOKEN-3"))
    # TLS 1.3 reports the refusal after the client's side of the handshake: as an alert or a close
    assert isinstance(answer, Exception) or answer == b"", answer
    assert "connect mtls-dev3" not in mtls_mqtt.service.events
    good = tls_exchange(mtls_mqtt.port, client_context(pki.ca, pki.client_cert, pki.client_key),
                        codec.connect_packet("y", username="MTLS-TOKEN-3") + DISCONNECT)
    assert good == b"\x20\x02\x00\x00"  # CONNACK accepted, then our DISCONNECT ends it


# --- the context from files --------------------------------------------------------------------
def test_an_encrypted_key_needs_its_password(pki):
    with pytest.raises(ConfigError, match=r"is encrypted: set \w+ \(THINGSRAY_MQTT_TLS_KEY_PASSWORD\)"):
        server_context(TlsFiles(str(pki.server_cert), str(pki.server_key_encrypted)))
    with pytest.raises(ConfigError, match=r"THINGSRAY_MQTT_TLS_KEY_PASSWORD\) does not decrypt"):
        server_context(TlsFiles(str(pki.server_cert), str(pki.server_key_encrypted), "wrong"))


def test_a_key_of_another_certificate_is_named(pki):
    with pytest.raises(ConfigError, match=r"THINGSRAY_MQTT_TLS_KEY / --mqtt-tls-key\): .* is not the key of the"):
        server_context(TlsFiles(str(pki.server_cert), str(pki.client_key)))


@pytest.mark.parametrize(("broken", "variable"), [("cert", "THINGSRAY_MQTT_TLS_CERT"),
                                                  ("key", "THINGSRAY_MQTT_TLS_KEY"),
                                                  ("ca", "THINGSRAY_MQTT_TLS_CA")])
def test_a_file_that_is_not_pem_is_named(pki, tmp_path, broken, variable):
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    files = {"cert": str(pki.server_cert), "key": str(pki.server_key), "ca": str(pki.ca), broken: str(garbage)}
    with pytest.raises(ConfigError, match=f"{variable}\\b"):
        server_context(TlsFiles(**files))


# --- the settings ------------------------------------------------------------------------------
def test_tls_is_off_by_default_and_on_with_a_certificate_and_key(pki):
    assert TlsFiles.from_settings(Settings.load(environ={})) is None
    settings = Settings.load({"mqtt_tls_cert": str(pki.server_cert), "mqtt_tls_key": str(pki.server_key_encrypted),
                              "mqtt_tls_port": 18883},
                             environ={"THINGSRAY_MQTT_TLS_KEY_PASSWORD": KEY_PASSWORD,
                                      "THINGSRAY_MQTT_TLS_CA": str(pki.ca)})
    files = TlsFiles.from_settings(settings)
    assert files == TlsFiles(str(pki.server_cert), str(pki.server_key_encrypted), KEY_PASSWORD, str(pki.ca))
    assert settings.mqtt_tls_port == 18883
    assert KEY_PASSWORD not in repr(files)  # Ray and logs print actor arguments
    assert server_context(files).verify_mode == ssl.CERT_OPTIONAL


def test_relative_paths_become_absolute_for_the_transport_process(pki, monkeypatch):
    monkeypatch.chdir(pki.directory)
    files = TlsFiles.from_settings(Settings.load({"mqtt_tls_cert": "server_cert.pem", "mqtt_tls_key": "server_key.key"},
                                                 environ={}))
    assert files is not None and files.cert == str(pki.server_cert) and files.key == str(pki.server_key)


@pytest.mark.parametrize(("overrides", "variable"), [
    ({"mqtt_tls_cert": "server_cert"}, "THINGSRAY_MQTT_TLS_KEY / --mqtt-tls-key"),
    ({"mqtt_tls_key": "server_key"}, "THINGSRAY_MQTT_TLS_CERT / --mqtt-tls-cert"),
    ({"mqtt_tls_ca": "ca"}, "THINGSRAY_MQTT_TLS_CA"),
    ({"mqtt_tls_key_password": "x"}, "THINGSRAY_MQTT_TLS_KEY_PASSWORD"),
    ({"mqtt_tls_cert": "server_cert", "mqtt_tls_key": "missing"}, "THINGSRAY_MQTT_TLS_KEY / --mqtt-tls-key"),
    ({"mqtt_tls_cert": "missing", "mqtt_tls_key": "server_key"}, "THINGSRAY_MQTT_TLS_CERT / --mqtt-tls-cert"),
    ({"mqtt_tls_cert": "server_cert", "mqtt_tls_key": "server_key", "mqtt_tls_ca": "missing"},
     "THINGSRAY_MQTT_TLS_CA"),
    ({"mqtt_tls_cert": "server_cert", "mqtt_tls_key": "server_key", "mqtt_tls_port": 1883},
     "THINGSRAY_MQTT_TLS_PORT / --mqtt-tls-port) and mqtt_port (THINGSRAY_MQTT_PORT"),
])
def test_incomplete_or_missing_tls_settings_name_the_variable(pki, overrides, variable):
    paths = {name: str(getattr(pki, file)) if file != "missing" else str(pki.directory / "missing.pem")
             for name, file in overrides.items() if name in ("mqtt_tls_cert", "mqtt_tls_key", "mqtt_tls_ca")}
    values = {**overrides, **paths}
    with pytest.raises(ConfigError, match=re.escape(variable)):
        Settings.load(values, environ={})
