"""The broker bridge on its own, behind an in-memory platform, against a Mosquitto this module
starts on a port of its own, fed by paho: devices named from the topic and from the message,
typed values, attributes, what is counted and dropped, reconnecting after the broker went away,
and acknowledging a message only once the platform has stored it."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.conftest import eventually, free_port
from tests.transports.memory_service import MemoryService
from thingsray.transports.bridge import Backoff, MqttBridge, parse_bridge
from thingsray.transports.payloads import JsonValue, TelemetryGroup

WAIT = 20.0  # a bound on waiting for what should happen at once; never a speed assertion
MOSQUITTO = shutil.which("mosquitto") or next(
    (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if Path(p).is_file()), None)
pytestmark = pytest.mark.skipif(MOSQUITTO is None, reason="the mosquitto broker binary is not installed")
TENANT = uuid.uuid4()
FAST = Backoff(first_s=0.05, cap_s=0.5)


class Broker:
    """A Mosquitto of our own on 127.0.0.1; ``stop``/``start`` simulate losing the broker."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.config = directory / "mosquitto.conf"
        self.config.write_text(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
        self.log = directory / "mosquitto.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        assert MOSQUITTO is not None
        with self.log.open("ab") as log:
            self.process = subprocess.Popen([MOSQUITTO, "-c", str(self.config)], stdout=log, stderr=log)
        eventually(self._accepts, "mosquitto accepting connections")

    def _accepts(self) -> bool:
        probe = paho.Client(CallbackAPIVersion.VERSION2)
        try:
            probe.connect("127.0.0.1", self.port)
        except OSError:
            return False
        probe.disconnect()
        return True

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(WAIT)
            self.process = None


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    running = Broker(tmp_path_factory.mktemp("mosquitto"))
    running.start()
    try:
        yield running
    finally:
        running.stop()


class Hosted:
    """A bridge running in an event loop of its own thread, as it runs in its Ray actor."""

    def __init__(self, config: dict[str, Any], service: MemoryService | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.service = service or MemoryService()
        self.bridge = self.run(self._make(config))
        self.run(self.bridge.start())

    async def _make(self, config: dict[str, Any]) -> MqttBridge:
        return MqttBridge(parse_bridge(config), self.service, backoff=FAST)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT)

    def stats(self) -> dict[str, Any]:
        """The bridge's figures (its last ones once stopped)."""
        if self.loop.is_closed():
            return self.bridge.stats()

        async def read() -> dict[str, Any]:
            return self.bridge.stats()

        return self.run(read())

    def wait_connected(self) -> None:
        eventually(lambda: self.stats()["connected"], "the bridge connected")

    def telemetry(self, device: str) -> list[TelemetryGroup]:
        async def read() -> list[TelemetryGroup]:
            return [group for name, group in self.service.telemetry if name == device]

        return self.run(read())

    def stop(self) -> None:
        self.run(self.bridge.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


def bridge_config(port: int, prefix: str, mapping: list[dict[str, Any]], **broker: Any) -> dict[str, Any]:
    return {"name": prefix, "tenantId": str(TENANT),
            "broker": {"host": "127.0.0.1", "port": port, "clientId": f"bridge-{prefix}", **broker},
            "mapping": mapping}


def publish(port: int, topic: str, payload: str | bytes, qos: int = 1) -> None:
    """Published and acknowledged by the broker (QoS 1) before returning."""
    client = paho.Client(CallbackAPIVersion.VERSION2)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=qos).wait_for_publish(WAIT)
    finally:
        client.disconnect()
        client.loop_stop()


def sensors_mapping(prefix: str) -> list[dict[str, Any]]:
    """The IoT Gateway documentation's two examples: name from the message, and from the topic."""
    return [
        {"topicFilter": f"{prefix}/sensor/data", "subscriptionQos": 1, "converter": {
            "type": "json",
            "deviceInfo": {"deviceNameExpressionSource": "message", "deviceNameExpression": "${serialNumber}",
                           "deviceProfileExpressionSource": "message", "deviceProfileExpression": "${sensorType}"},
            "attributes": [{"type": "string", "key": "model", "value": "${sensorModel}"},
                           {"type": "string", "key": "where", "value": "${location.building}/${location.floor}"}],
            "timeseries": [{"type": "double", "key": "temperature", "value": "${temp}"},
                           {"type": "integer", "key": "humidity", "value": "${hum}"},
                           {"type": "boolean", "key": "alarm", "value": "${state.alarm}"},
                           {"type": "json", "key": "raw", "value": "${state}"},
                           {"type": "string", "key": "firmware", "value": "${fw}"}]}},
        {"topicFilter": f"{prefix}/sensor/+/data", "converter": {
            "type": "json",
            "deviceInfo": {"deviceNameExpressionSource": "topic",
                           "deviceNameExpression": f"(?<={prefix}/sensor/)(.*?)(?=/data)",
                           "deviceProfileExpressionSource": "constant", "deviceProfileExpression": "Thermometer"},
            "timeseries": [{"type": "double", "key": "temperature", "value": "${temp}"}]}},
    ]


@pytest.fixture
def prefix() -> str:
    return f"bridge-{uuid.uuid4().hex[:8]}"


def test_devices_are_named_from_the_message_and_the_topic_with_typed_values(broker: Broker, prefix: str):
    hosted = Hosted(bridge_config(broker.port, prefix, sensors_mapping(prefix)))
    try:
        hosted.wait_connected()
        publish(broker.port, f"{prefix}/sensor/data", json.dumps({
            "serialNumber": "SN-001", "sensorType": "Thermometer", "sensorModel": "T1000", "temp": "42.5",
            "hum": 61.9, "state": {"alarm": "true", "code": 7}, "fw": 3,
            "location": {"building": "B2", "floor": 4}}))
        publish(broker.port, f"{prefix}/sensor/SN-002/data", json.dumps({"temp": 21, "ts": 1_700_000_000_123}))

        eventually(lambda: hosted.stats()["delivered"] == 2, "both messages delivered")
        [first] = hosted.telemetry("SN-001")
        assert first.ts is None  # server time: the message has no ts
        assert first.values == {"temperature": 42.5, "humidity": 61, "alarm": True,
                                "raw": JsonValue('{"alarm":"true","code":7}'), "firmware": "3"}
        assert hosted.service.attributes["SN-001"] == {"model": "T1000", "where": "B2/4"}
        assert hosted.telemetry("SN-002") == [TelemetryGroup(1_700_000_000_123, {"temperature": 21.0})]
        devices = hosted.service.tenant_devices
        assert devices[(TENANT, "SN-001")].device_type == "Thermometer"
        assert devices[(TENANT, "SN-002")].device_type == "Thermometer"
        stats = hosted.stats()
        assert (stats["received"], stats["failed"], stats["unmapped"], stats["devices"]) == (2, 0, 0, 2)
    finally:
        hosted.stop()


def test_a_json_array_is_one_message_per_element_and_bytes_are_sliced(broker: Broker, prefix: str):
    mapping = [
        {"topicFilter": f"{prefix}/batch", "converter": {
            "deviceInfo": {"deviceNameExpressionSource": "message", "deviceNameExpression": "meter-${id}"},
            "timeseries": [{"type": "long", "key": "energy", "value": "${kwh}"}]}},
        {"topicFilter": f"{prefix}/raw/#", "converter": {
            "type": "bytes",
            "deviceInfo": {"deviceNameExpressionSource": "message", "deviceNameExpression": "[0:4]"},
            "timeseries": [{"type": "double", "key": "level", "value": "[4:]"}],
            "attributes": [{"type": "string", "key": "kind", "value": "tank [0:1]"}]}},
    ]
    hosted = Hosted(bridge_config(broker.port, prefix, mapping))
    try:
        hosted.wait_connected()
        publish(broker.port, f"{prefix}/batch", json.dumps([{"id": 1, "kwh": "17"}, {"id": 2, "kwh": 3.9}]))
        publish(broker.port, f"{prefix}/raw/tank", b"TK0773.25")
        eventually(lambda: hosted.stats()["delivered"] == 2, "the array and the bytes delivered")
        assert [g.values for g in hosted.telemetry("meter-1")] == [{"energy": 17}]
        assert [g.values for g in hosted.telemetry("meter-2")] == [{"energy": 3}]  # the gateway's int(float(x))
        assert [g.values for g in hosted.telemetry("TK07")] == [{"level": 73.25}]
        assert hosted.service.attributes["TK07"] == {"kind": "tank T"}
    finally:
        hosted.stop()


def test_malformed_and_unnamed_messages_are_counted_and_nothing_else_happens(broker: Broker, prefix: str):
    hosted = Hosted(bridge_config(broker.port, prefix, sensors_mapping(prefix)))
    try:
        hosted.wait_connected()
        publish(broker.port, f"{prefix}/sensor/data", b"{not json")
        publish(broker.port, f"{prefix}/sensor/data", json.dumps({"temp": 20}))  # no serialNumber
        publish(broker.port, f"{prefix}/sensor/data", json.dumps({"serialNumber": "SN-9", "temp": "warm"}))
        publish(broker.port, f"{prefix}/sensor/data", json.dumps(["not an object"]))
        publish(broker.port, f"{prefix}/sensor/data", json.dumps({"serialNumber": "SN-3", "temp": 5, "hum": "x"}))
        eventually(lambda: hosted.stats()["received"] == 5, "every message received")
        eventually(lambda: hosted.stats()["delivered"] == 1, "the one good message delivered")
        stats = hosted.stats()
        assert stats["failed"] == 4 and stats["unmapped"] == 0
        assert stats["skipped_values"] == 1  # "x" left out of SN-3's message; "warm" left SN-9's with nothing
        assert [g.values for g in hosted.telemetry("SN-3")] == [{"temperature": 5.0}]
        assert set(hosted.service.tenant_devices) == {(TENANT, "SN-3")}  # nothing was created for the others
        assert stats["connected"]  # and the bridge goes on
    finally:
        hosted.stop()


def test_a_topic_no_mapping_matches_is_counted_unmapped(broker: Broker, prefix: str):
    """A persistent session keeps the subscriptions of an earlier configuration: their messages
    still arrive, match no mapping, and are acknowledged and dropped."""
    old = [{"topicFilter": f"{prefix}/old/#", "converter": {
        "deviceInfo": {"deviceNameExpressionSource": "constant", "deviceNameExpression": "old"},
        "timeseries": [{"type": "double", "key": "t", "value": "${t}"}]}}]
    first = Hosted(bridge_config(broker.port, prefix, old))
    first.wait_connected()
    first.stop()
    hosted = Hosted(bridge_config(broker.port, prefix, sensors_mapping(prefix)))
    try:
        hosted.wait_connected()
        publish(broker.port, f"{prefix}/old/x", json.dumps({"t": 1}))
        publish(broker.port, f"{prefix}/sensor/A/data", json.dumps({"temp": 1}))
        eventually(lambda: hosted.stats()["delivered"] == 1, "the mapped message delivered")
        eventually(lambda: hosted.stats()["unmapped"] == 1, "the old topic's message counted")
        assert set(hosted.service.tenant_devices) == {(TENANT, "A")}
    finally:
        hosted.stop()


def test_the_bridge_reconnects_when_the_broker_comes_back(broker: Broker, prefix: str):
    hosted = Hosted(bridge_config(broker.port, prefix, sensors_mapping(prefix)))
    try:
        hosted.wait_connected()
        publish(broker.port, f"{prefix}/sensor/R1/data", json.dumps({"temp": 1}))
        eventually(lambda: hosted.stats()["delivered"] == 1, "delivered before the broker went away")
        broker.stop()
        eventually(lambda: not hosted.stats()["connected"], "the bridge noticed the broker is gone")
        broker.start()  # no persistence: the bridge must subscribe again by itself
        eventually(lambda: hosted.stats()["connected"], "the bridge reconnected")
        publish(broker.port, f"{prefix}/sensor/R1/data", json.dumps({"temp": 2}))
        eventually(lambda: hosted.stats()["delivered"] == 2, "delivered after the broker came back")
        assert [g.values["temperature"] for g in hosted.telemetry("R1")] == [1.0, 2.0]
        assert hosted.stats()["reconnects"] >= 1
    finally:
        if broker.process is None:
            broker.start()
        hosted.stop()


class SlowService(MemoryService):
    """Never returns when ``hold``, as a platform that has not committed; fails the first
    ``failures`` attempts, as a restarting shard does."""

    def __init__(self, failures: int = 0, hold: bool = False) -> None:
        super().__init__()
        self.hold = hold
        self.failures = failures
        self.attempts = 0
        self.ids: list[uuid.UUID] = []

    async def post_telemetry(self, device, groups, msg_id, received_ts) -> None:  # type: ignore[no-untyped-def]
        self.attempts += 1
        self.ids.append(msg_id)
        if self.hold:
            await asyncio.Event().wait()  # until the bridge is stopped
        if self.failures:
            self.failures -= 1
            raise RuntimeError("shard restarting")
        await super().post_telemetry(device, groups, msg_id, received_ts)


def test_a_message_is_acknowledged_only_after_the_platform_stored_it(broker: Broker, prefix: str):
    """The platform never returns for the first message: the bridge stops without acknowledging
    it, and the broker delivers it again to the next bridge of the same persistent session."""
    held = SlowService(hold=True)
    first = Hosted(bridge_config(broker.port, prefix, sensors_mapping(prefix)), held)
    first.wait_connected()
    publish(broker.port, f"{prefix}/sensor/D1/data", json.dumps({"temp": 7}))
    eventually(lambda: held.attempts == 1, "the platform was asked to store it")
    first.stop()
    assert first.stats()["delivered"] == 0 and held.telemetry == []

    second = Hosted(bridge_config(broker.port, prefix, sensors_mapping(prefix)))
    try:
        eventually(lambda: second.stats()["delivered"] == 1, "the unacknowledged message delivered again")
        assert [g.values for g in second.telemetry("D1")] == [{"temperature": 7.0}]
    finally:
        second.stop()
    third = Hosted(bridge_config(broker.port, prefix, sensors_mapping(prefix)))
    try:  # the second bridge acknowledged it: nothing more comes
        third.wait_connected()
        publish(broker.port, f"{prefix}/sensor/D2/data", json.dumps({"temp": 8}))
        eventually(lambda: third.stats()["delivered"] == 1, "the next message delivered")
        assert third.stats()["received"] == 1 and third.telemetry("D1") == []
    finally:
        third.stop()


def test_a_platform_failure_is_tried_again_with_the_same_message_id(broker: Broker, prefix: str):
    service = SlowService(failures=2)
    hosted = Hosted(bridge_config(broker.port, prefix, sensors_mapping(prefix)), service)
    try:
        hosted.wait_connected()
        publish(broker.port, f"{prefix}/sensor/F1/data", json.dumps({"temp": 3}))
        eventually(lambda: hosted.stats()["delivered"] == 1, "delivered after the failures")
        assert hosted.stats()["retries"] == 2 and hosted.stats()["failed"] == 0
        assert len(set(service.ids)) == 1 and len(service.ids) == 3  # one id: the platform can recognise a retry
        assert [g.values for g in hosted.telemetry("F1")] == [{"temperature": 3.0}]
    finally:
        hosted.stop()


def test_messages_of_one_device_are_stored_in_the_order_they_arrived(broker: Broker, prefix: str):
    hosted = Hosted(bridge_config(broker.port, prefix, sensors_mapping(prefix)))
    try:
        hosted.wait_connected()
        client = paho.Client(CallbackAPIVersion.VERSION2)
        client.connect("127.0.0.1", broker.port)
        client.loop_start()
        try:
            infos = [client.publish(f"{prefix}/sensor/{'AB'[i % 2]}/data", json.dumps({"temp": i}), qos=1)
                     for i in range(60)]
            for info in infos:
                info.wait_for_publish(WAIT)
        finally:
            client.disconnect()
            client.loop_stop()
        eventually(lambda: hosted.stats()["delivered"] == 60, "every message delivered")
        assert [g.values["temperature"] for g in hosted.telemetry("A")] == [float(i) for i in range(0, 60, 2)]
        assert [g.values["temperature"] for g in hosted.telemetry("B")] == [float(i) for i in range(1, 60, 2)]
    finally:
        hosted.stop()


def test_a_broker_that_is_not_there_yet_is_waited_for(tmp_path: Path, prefix: str):
    late = Broker(tmp_path)
    hosted = Hosted(bridge_config(late.port, prefix, sensors_mapping(prefix)))
    try:
        eventually(lambda: hosted.stats()["state"] == "waiting", "the bridge waiting to try again")
        late.start()
        hosted.wait_connected()
        publish(late.port, f"{prefix}/sensor/L1/data", json.dumps({"temp": 4}))
        eventually(lambda: hosted.stats()["delivered"] == 1, "delivered once the broker is there")
        assert hosted.stats()["reconnects"] == 0  # the first connection it made
    finally:
        hosted.stop()
        late.stop()
