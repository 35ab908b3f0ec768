"""The SNMP poller against real agents (snmpsim) behind an in-memory platform: telemetry and client
attributes typed per mapping, shared attributes set, RPC answered, and agents that are dead, refuse,
or answer the wrong thing kept from harming anyone else."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import eventually
from tests.transports.memory_service import MemoryService, device
from tests.transports.snmp_agent import DeadAgent, SnmpSimAgent, read_oid
from thingsray.transports.payloads import JsonValue, TelemetryGroup, Value
from thingsray.transports.service import DeviceIdentity, RpcRequest
from thingsray.transports.snmp import (
    SessionState,
    SnmpDevice,
    SnmpDeviceConfig,
    SnmpPoller,
    SnmpProfileConfig,
)

WAIT = 10.0  # a bound on waiting for what should happen at once; never a speed assertion

RECORDS = """
1.3.6.1.2.1.1.1.0|4|Test agent
1.3.6.1.2.1.1.3.0|67|12345
1.3.6.1.4.1.99.1.0|2|42
1.3.6.1.4.1.99.2.0|4|36.6
1.3.6.1.4.1.99.3.0|4|true
1.3.6.1.4.1.99.4.0|65|1234
1.3.6.1.4.1.99.5.0|70|9876543210
1.3.6.1.4.1.99.6.0|4|{"a":1}
1.3.6.1.4.1.99.7.0|64|10.0.0.1
1.3.6.1.4.1.99.9.0|4|not a number
1.3.6.1.4.1.99.20.0|4:writecache|value=initial
1.3.6.1.4.1.99.21.0|2:writecache|value=1
1.3.6.1.4.1.99.22.0|2:error|op=set,status=notwritable,value=7
1.3.6.1.4.1.99.23.0|4:writecache|value=off
"""


class Running:
    """A poller on an event loop of its own thread, behind an in-memory platform."""

    def __init__(self, service: MemoryService | None = None) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.service = service or MemoryService()
        self.poller: SnmpPoller = self.run(self._make())

    async def _make(self) -> SnmpPoller:
        return SnmpPoller(self.service)

    def run(self, coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(WAIT * 3)

    def sync(self, *devices: SnmpDevice) -> None:
        self.run(self.poller.sync(devices))

    def telemetry(self, name: str) -> list[dict[str, Value]]:
        return [dict(group.values) for who, group in list(self.service.telemetry) if who == name]

    def stop(self) -> None:
        self.run(self.poller.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(WAIT)
        self.loop.close()


@pytest.fixture(scope="module")
def agent() -> Iterator[SnmpSimAgent]:
    with SnmpSimAgent({"public": RECORDS}) as running:
        yield running


@pytest.fixture
def running() -> Iterator[Running]:
    poller = Running()
    yield poller
    poller.stop()


def profile(*configs: dict[str, Any], timeout_ms: int = 2000, retries: int = 1) -> SnmpProfileConfig:
    return SnmpProfileConfig.from_json({"type": "SNMP", "timeoutMs": timeout_ms, "retries": retries,
                                        "communicationConfigs": list(configs)})


def querying(spec: str, frequency_ms: int, **mappings: tuple[str, str]) -> dict[str, Any]:
    return {"spec": spec, "queryingFrequencyMs": frequency_ms,
            "mappings": [{"oid": oid, "key": key, "dataType": kind} for key, (oid, kind) in mappings.items()]}


def setting(spec: str, **mappings: tuple[str, str]) -> dict[str, Any]:
    return {"spec": spec, "mappings": [{"oid": oid, "key": key, "dataType": kind}
                                       for key, (oid, kind) in mappings.items()]}


def snmp_device(name: str, port: int, config: SnmpProfileConfig, version: str = "V2C",
                identity: DeviceIdentity | None = None) -> SnmpDevice:
    return SnmpDevice(identity or device(name), config, SnmpDeviceConfig.from_json(
        {"host": "127.0.0.1", "port": port, "protocolVersion": version, "community": "public"}))


TYPED = {"long": ("1.3.6.1.4.1.99.1.0", "LONG"), "counter": ("1.3.6.1.4.1.99.4.0", "LONG"),
         "counter64": ("1.3.6.1.4.1.99.5.0", "LONG"), "uptime": ("1.3.6.1.2.1.1.3.0", "LONG"),
         "double": ("1.3.6.1.4.1.99.2.0", "DOUBLE"), "text": ("1.3.6.1.2.1.1.1.0", "STRING"),
         "flag": ("1.3.6.1.4.1.99.3.0", "BOOLEAN"), "json": ("1.3.6.1.4.1.99.6.0", "JSON")}


@pytest.mark.parametrize("version", ["V1", "V2C"])
def test_each_data_type_is_posted_as_telemetry_and_client_attributes(agent: SnmpSimAgent, running: Running,
                                                                     version: str) -> None:
    config = profile(querying("TELEMETRY_QUERYING", 200, **TYPED),
                     querying("CLIENT_ATTRIBUTES_QUERYING", 200, address=("1.3.6.1.4.1.99.7.0", "STRING"),
                              model=("1.3.6.1.2.1.1.1.0", "STRING")))
    running.sync(snmp_device(f"typed-{version}", agent.port, config, version))
    first = eventually(lambda: running.telemetry(f"typed-{version}"), "telemetry")[0]
    expected: dict[str, Value] = {"long": 42, "counter": 1234, "counter64": 9876543210, "uptime": 12345,
                                  "double": 36.6, "text": "Test agent", "flag": True, "json": JsonValue('{"a":1}')}
    if version == "V1":  # SNMPv1 has no Counter64: the agent answers noSuchName for it, the rest still comes
        del expected["counter64"]
    assert first == expected
    assert [type(first[k]) for k in ("long", "double", "flag")] == [int, float, bool]
    attributes = eventually(lambda: running.service.attributes.get(f"typed-{version}"), "client attributes")
    assert attributes == {"address": "10.0.0.1", "model": "Test agent"}
    assert running.poller.stats.bad_values == 0
    assert (running.poller.stats.missing_values > 0) is (version == "V1")
    # polled again every period, not once
    eventually(lambda: len(running.telemetry(f"typed-{version}")) >= 3, "three polls")


@pytest.mark.parametrize("version", ["V1", "V2C"])
def test_a_missing_oid_and_a_value_of_the_wrong_type_leave_the_others(agent: SnmpSimAgent, running: Running,
                                                                      version: str) -> None:
    config = profile(querying("TELEMETRY_QUERYING", 200, good=("1.3.6.1.4.1.99.1.0", "LONG"),
                              wrong=("1.3.6.1.4.1.99.9.0", "LONG"), missing=("1.3.6.1.4.1.99.77.0", "LONG")))
    running.sync(snmp_device("partial", agent.port, config, version))
    eventually(lambda: len(running.telemetry("partial")) >= 2, "telemetry")
    assert all(values == {"good": 42} for values in running.telemetry("partial"))
    stats = running.poller.stats
    assert stats.bad_values >= 2 and stats.missing_values >= 2 and stats.timeouts == 0


def test_a_dead_agent_times_out_while_another_keeps_delivering(agent: SnmpSimAgent, running: Running) -> None:
    dead = DeadAgent()
    try:
        slow = profile(querying("TELEMETRY_QUERYING", 100, long=("1.3.6.1.4.1.99.1.0", "LONG")), timeout_ms=1000,
                       retries=2)
        fast = profile(querying("TELEMETRY_QUERYING", 100, long=("1.3.6.1.4.1.99.1.0", "LONG")))
        running.sync(snmp_device("dead", dead.port, slow), snmp_device("alive", agent.port, fast))
        eventually(lambda: running.poller.stats.timeouts >= 1, "the dead agent's timeout")
        # the dead agent's three tries of a second each delayed no poll of the live one
        assert len(running.telemetry("alive")) >= 5
        assert running.telemetry("dead") == []
        assert "no answer" in running.poller.failing()["dead"] or "timeout" in running.poller.failing()["dead"]
        assert "alive" not in running.poller.failing()
    finally:
        dead.close()


def read(agent: SnmpSimAgent, running: Running, oid: str) -> str:
    return running.run(read_oid(agent, oid))


def test_a_shared_attribute_update_sets_the_mapped_oids(agent: SnmpSimAgent, running: Running) -> None:
    config = profile(setting("SHARED_ATTRIBUTES_SETTING", label=("1.3.6.1.4.1.99.20.0", "STRING"),
                             level=("1.3.6.1.4.1.99.21.0", "LONG")))
    snmp = snmp_device("settable", agent.port, config)
    running.sync(snmp)
    eventually(lambda: snmp.identity.device_id in running.service.attribute_sinks, "the attribute subscription")
    running.run(running.service.share(snmp.identity, {"label": "on the roof", "level": 7, "unmapped": "x"}))
    eventually(lambda: read(agent, running, "1.3.6.1.4.1.99.20.0") == "on the roof", "the label set")
    assert read(agent, running, "1.3.6.1.4.1.99.21.0") == "7"  # a LONG mapping sets an Integer32
    assert running.poller.stats.sets == 1 and running.poller.stats.set_errors == 0


def test_a_refused_shared_attribute_set_is_counted(agent: SnmpSimAgent, running: Running) -> None:
    config = profile(setting("SHARED_ATTRIBUTES_SETTING", locked=("1.3.6.1.4.1.99.22.0", "LONG")))
    snmp = snmp_device("locked", agent.port, config)
    running.sync(snmp)
    eventually(lambda: snmp.identity.device_id in running.service.attribute_sinks, "the attribute subscription")
    running.run(running.service.share(snmp.identity, {"locked": 5}))
    eventually(lambda: running.poller.stats.set_errors == 1, "the refused SET")
    assert "notWritable" in running.poller.failing()["locked"]


def test_rpc_becomes_a_get_or_a_set_and_is_answered(agent: SnmpSimAgent, running: Running) -> None:
    config = profile(setting("TO_DEVICE_RPC_REQUEST", descr=("1.3.6.1.2.1.1.1.0", "STRING"),
                             switch=("1.3.6.1.4.1.99.23.0", "STRING"), count=("1.3.6.1.4.1.99.1.0", "LONG"),
                             locked=("1.3.6.1.4.1.99.22.0", "LONG")))
    snmp = snmp_device("commanded", agent.port, config)
    running.sync(snmp)
    eventually(lambda: snmp.identity.device_id in running.service.rpc_sinks, "the RPC subscription")
    answers = running.service.rpc_responses
    calls: list[tuple[str, Any, Any]] = [
        ("GET", {"key": "descr"}, {"descr": "Test agent"}),
        ("GET", {"key": "count"}, {"count": 42}),
        ("SET", {"key": "switch", "value": "on"}, {"switch": "on"}),
        ("GET", '{"key": "switch"}', {"switch": "on"}),
        ("PUT", {"key": "descr"}, {"error": "unsupported SNMP method 'PUT': use GET or SET"}),
        ("GET", {"key": "nope"}, {"error": "No SNMP mapping found in the config for specified key"}),
        ("SET", {"key": "switch"}, {"error": "Value must be specified for SNMP method 'SET'"}),
    ]
    for request_id, (method, params, expected) in enumerate(calls, start=1):
        assert running.run(running.service.call(snmp.identity, request_id, method, params)) is True
        eventually(lambda request_id=request_id: request_id in answers, f"the answer of {method} {params}")
        assert answers[request_id] == expected
    assert running.run(running.service.call(snmp.identity, 99, "SET", {"key": "locked", "value": 5})) is True
    eventually(lambda: 99 in answers, "the refused SET's answer")
    assert "notWritable" in answers[99]["error"]


def test_a_one_way_rpc_is_carried_out_without_an_answer(agent: SnmpSimAgent, running: Running) -> None:
    config = profile(setting("TO_DEVICE_RPC_REQUEST", switch=("1.3.6.1.4.1.99.23.0", "STRING")))
    snmp = snmp_device("oneway", agent.port, config)
    running.sync(snmp)
    eventually(lambda: snmp.identity.device_id in running.service.rpc_sinks, "the RPC subscription")
    sink = running.service.rpc_sinks[snmp.identity.device_id]
    assert running.run(sink.push_rpc(RpcRequest(1, "SET", {"key": "switch", "value": "pulse"}, oneway=True)))
    eventually(lambda: read(agent, running, "1.3.6.1.4.1.99.23.0") == "pulse", "the one-way SET")
    assert 1 not in running.service.rpc_responses
    # a one-way call the profile cannot carry is not delivered
    assert running.run(sink.push_rpc(RpcRequest(2, "GET", {"key": "nope"}, oneway=True))) is False


def test_sync_adds_updates_and_removes_devices(agent: SnmpSimAgent, running: Running) -> None:
    identity = device("changing")
    first = snmp_device("changing", agent.port, profile(querying("TELEMETRY_QUERYING", 100,
                                                                 a=("1.3.6.1.4.1.99.1.0", "LONG"))), identity=identity)
    running.sync(first)
    eventually(lambda: running.telemetry("changing"), "telemetry of the first profile")
    second = snmp_device("changing", agent.port, profile(querying("TELEMETRY_QUERYING", 100,
                                                                  b=("1.3.6.1.4.1.99.2.0", "DOUBLE"))),
                         identity=identity)
    running.sync(second)
    eventually(lambda: {"b": 36.6} in running.telemetry("changing"), "telemetry of the new profile")
    assert running.service.events == ["connect changing"]  # the session stayed through the update
    running.sync()
    assert running.service.events == ["connect changing", "disconnect changing"]
    assert running.poller.device_count == 0 and running.poller.device(identity.device_id) is None


def test_a_session_the_platform_closes_is_opened_again_unless_another_took_over(agent: SnmpSimAgent,
                                                                                running: Running) -> None:
    snmp = snmp_device("reopened", agent.port, profile(querying("TELEMETRY_QUERYING", 100,
                                                                a=("1.3.6.1.4.1.99.1.0", "LONG"))))
    running.sync(snmp)
    poller = running.poller.device(snmp.identity.device_id)
    assert poller is not None
    eventually(lambda: poller.session.state is SessionState.OPEN, "the session")
    running.run(poller.session.close("the device's credentials changed"))
    assert poller.session.state is SessionState.CLOSED
    running.sync(snmp)
    eventually(lambda: running.service.events.count("connect reopened") == 2, "the session opened again")
    running.run(poller.session.close("another session of the device connected"))
    running.sync(snmp)
    assert poller.session.state is SessionState.DISPLACED
    polled = len(running.telemetry("reopened"))
    eventually(lambda: len(running.telemetry("reopened")) > polled, "polling going on without a session")
    assert running.service.events.count("connect reopened") == 2


class FailingPlatform(MemoryService):
    """A platform whose first telemetry posts fail (a shard restarting)."""

    failures: int = 2

    async def post_telemetry(self, device: DeviceIdentity, groups: list[TelemetryGroup], msg_id: Any,
                             received_ts: int) -> None:
        if self.failures > 0:
            self.failures -= 1
            raise RuntimeError("the shard is restarting")
        await super().post_telemetry(device, groups, msg_id, received_ts)


def test_a_platform_that_fails_a_post_does_not_stop_the_polls(agent: SnmpSimAgent) -> None:
    running = Running(FailingPlatform())
    try:
        running.sync(snmp_device("retried", agent.port, profile(querying("TELEMETRY_QUERYING", 100,
                                                                         a=("1.3.6.1.4.1.99.1.0", "LONG")))))
        eventually(lambda: running.telemetry("retried"), "telemetry after the failures")
        assert running.poller.stats.delivery_errors == 2
    finally:
        running.stop()
