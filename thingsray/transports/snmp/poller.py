"""Polling SNMP devices: one asyncio task per device and repeating communication config.

``SnmpPoller.sync(devices)`` makes the polled set what the platform says it is (adding, updating and
removing devices). Each device gets an agent, a platform session (``SnmpSession``) and a task per
TELEMETRY_QUERYING / CLIENT_ATTRIBUTES_QUERYING config that GETs the config's OIDs every
``queryingFrequencyMs`` (the first GET at once, ThingsBoard waits one period) and posts what came
back. A slow or dead agent only delays its own tasks. Timeouts, agent errors, missing OIDs and values
of the wrong type are logged and counted in ``stats``; they never stop a task.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Coroutine, Iterable
from dataclasses import asdict, dataclass
from typing import Any

from thingsray.transports.payloads import TelemetryGroup, Value
from thingsray.transports.service import DeviceIdentity, RpcRequest, TransportService
from thingsray.transports.snmp.client import SnmpAgent, SnmpClient, SnmpFailure, SnmpRequestError
from thingsray.transports.snmp.config import (
    CommunicationSpec,
    SnmpCommunicationConfig,
    SnmpDeviceConfig,
    SnmpMethod,
    SnmpProfileConfig,
)
from thingsray.transports.snmp.session import SessionState, SnmpSession, rpc_exchange
from thingsray.transports.snmp.values import ValueTypeError, set_text, snmp_text, to_snmp, typed_value

__all__ = ["DevicePoller", "SnmpDevice", "SnmpPoller", "SnmpStats"]

log = logging.getLogger(__name__)

SESSION_RETRY_S = (1.0, 30.0)
"""First and longest wait before opening a device's session again after the platform failed it."""


@dataclass(frozen=True, slots=True)
class SnmpDevice:
    """A device polled over SNMP: who it is, and its profile's and its own transport configuration."""

    identity: DeviceIdentity
    profile: SnmpProfileConfig
    config: SnmpDeviceConfig


@dataclass
class SnmpStats:
    """Counters of one poller since it started."""

    requests: int = 0
    responses: int = 0
    timeouts: int = 0
    agent_errors: int = 0
    transport_errors: int = 0
    missing_values: int = 0
    """OIDs the agent had no value for (noSuchObject, noSuchInstance, endOfMibView, noSuchName)."""
    bad_values: int = 0
    """Values not of their mapping's dataType."""
    telemetry_posts: int = 0
    attribute_posts: int = 0
    delivery_errors: int = 0
    """Posts the platform failed."""
    sets: int = 0
    set_errors: int = 0
    rpcs: int = 0
    rpc_errors: int = 0
    session_errors: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class DevicePoller:
    """What runs for one device: its agent, its session and its polling tasks."""

    def __init__(self, owner: SnmpPoller, device: SnmpDevice) -> None:
        self.owner = owner
        self.device = device
        self.agent: SnmpAgent = owner.client.agent(device.config, device.profile.timeout_ms, device.profile.retries)
        self.session = SnmpSession(self)
        self.set_lock = asyncio.Lock()
        """SETs of one device go one at a time, in the order their updates came."""
        self.last_error: str | None = None
        self._polls: list[asyncio.Task[None]] = []
        self._others: set[asyncio.Task[Any]] = set()

    @property
    def name(self) -> str:
        return self.device.identity.device_name

    @property
    def stats(self) -> SnmpStats:
        return self.owner.stats

    @property
    def service(self) -> TransportService:
        return self.owner.service

    def start(self) -> None:
        self.spawn(self.open_session())
        self._start_polls()

    def _start_polls(self) -> None:
        self._polls = [asyncio.create_task(self._poll(config), name=f"snmp-poll {self.name} {config.spec.value}")
                       for config in self.device.profile.repeating]

    def spawn(self, work: Coroutine[Any, Any, Any]) -> None:
        """Run ``work`` beside the polls; it is cancelled when the device stops."""
        task = asyncio.create_task(work)
        self._others.add(task)
        task.add_done_callback(self._others.discard)

    async def update(self, device: SnmpDevice) -> None:
        """New configurations restart the polls with a new agent; the session stays."""
        old = self.device
        self.device = device
        if old.profile == device.profile and old.config == device.config:
            return
        await _cancel(self._polls)
        await self.agent.close()
        self.agent = self.owner.client.agent(device.config, device.profile.timeout_ms, device.profile.retries)
        self.last_error = None
        self._start_polls()

    async def stop(self) -> None:
        await _cancel([*self._polls, *self._others])
        state = self.session.state
        self.session.move(SessionState.STOPPED)
        if state is SessionState.OPEN:
            try:
                await self.service.disconnect(self.device.identity, self.session)
            except Exception:
                log.exception("SNMP device %s: closing its session failed", self.name)
        await self.agent.close()

    # --- the platform session ------------------------------------------------------------------
    async def open_session(self) -> None:
        wait, longest = SESSION_RETRY_S
        if self.session.state is not SessionState.OPENING:
            self.session.move(SessionState.OPENING)
        while True:
            try:
                await self.service.connect(self.device.identity, self.session)
                await self.service.subscribe(self.device.identity, self.session, attributes=True, rpc=True)
            except Exception as exc:
                self.stats.session_errors += 1
                log.warning("SNMP device %s: opening its session failed, again in %.0f s: %r", self.name, wait, exc)
                await asyncio.sleep(wait)
                wait = min(wait * 2, longest)
                continue
            if self.session.state is SessionState.OPENING:  # the platform may have closed it meanwhile
                self.session.move(SessionState.OPEN)
            return

    # --- polling --------------------------------------------------------------------------------
    async def _poll(self, config: SnmpCommunicationConfig) -> None:
        loop = asyncio.get_running_loop()
        period = (config.querying_frequency_ms or 1000) / 1000
        due = loop.time()
        while True:
            try:
                await self.query(config)
            except asyncio.CancelledError:
                raise
            except Exception:  # a fault of ours: logged, and the next period tries again
                log.exception("SNMP device %s: polling %s failed", self.name, config.spec.value)
            due += period
            delay = due - loop.time()
            if delay < 0:  # the agent took longer than a period: start again now, without a burst
                due, delay = loop.time(), 0
            await asyncio.sleep(delay)

    def count_failure(self, exc: SnmpRequestError) -> None:
        if exc.failure is SnmpFailure.TIMEOUT:
            self.stats.timeouts += 1
        elif exc.failure is SnmpFailure.AGENT_ERROR:
            self.stats.agent_errors += 1
        else:
            self.stats.transport_errors += 1
        text = str(exc)
        if text != self.last_error:  # once per change, not once per period
            log.warning("SNMP device %s: %s", self.name, text)
        self.last_error = text

    async def query(self, config: SnmpCommunicationConfig) -> None:
        """One GET of the config's OIDs, and the post of what came back typed."""
        self.stats.requests += 1
        try:
            response = await self.agent.get([m.numbers for m in config.mappings])
        except SnmpRequestError as exc:
            self.count_failure(exc)
            return
        self.stats.responses += 1
        if self.last_error is not None:
            log.info("SNMP device %s answers again", self.name)
            self.last_error = None
        values: dict[str, Value] = {}
        for mapping in config.mappings:
            raw = response.values.get(mapping.numbers)
            if raw is None:
                reason = response.missing.get(mapping.numbers, "no value")
                self.stats.missing_values += 1
                log.debug("SNMP device %s: %s (%s): %s", self.name, mapping.oid, mapping.key, reason)
                continue
            try:
                values[mapping.key] = typed_value(mapping.key, snmp_text(raw), mapping.data_type)
            except ValueTypeError as exc:
                self.stats.bad_values += 1
                log.warning("SNMP device %s: %s", self.name, exc)
        if values:
            await self._post(config.spec, values)

    async def _post(self, spec: CommunicationSpec, values: dict[str, Value]) -> None:
        identity, received = self.device.identity, int(time.time() * 1000)
        try:
            if spec is CommunicationSpec.TELEMETRY_QUERYING:
                await self.service.post_telemetry(identity, [TelemetryGroup(None, values)], uuid.uuid4(), received)
                self.stats.telemetry_posts += 1
            else:
                await self.service.post_attributes(identity, values, uuid.uuid4(), received)
                self.stats.attribute_posts += 1
        except Exception as exc:
            self.stats.delivery_errors += 1
            log.warning("SNMP device %s: the platform did not take its %s: %r", self.name, spec.value, exc)

    # --- downlink ----------------------------------------------------------------------------------
    async def set_shared(self, values: dict[str, Any]) -> None:
        """SET the OIDs the SHARED_ATTRIBUTES_SETTING config maps to the keys that changed."""
        config = self.device.profile.first(CommunicationSpec.SHARED_ATTRIBUTES_SETTING)
        if config is None:
            return
        bindings = [(m.numbers, to_snmp(set_text(values[m.key]), m.data_type))
                    for m in config.mappings if values.get(m.key) is not None]
        if not bindings:
            return
        self.stats.sets += 1
        async with self.set_lock:
            try:
                await self.agent.set(bindings)
            except SnmpRequestError as exc:
                self.stats.set_errors += 1
                self.count_failure(exc)

    async def run_rpc(self, request: RpcRequest, method: SnmpMethod, config: SnmpCommunicationConfig, key: str,
                      value: str | None) -> None:
        self.stats.rpcs += 1
        answer = await rpc_exchange(self, method, config, key, value)
        if "error" in answer:
            self.stats.rpc_errors += 1
        if not request.oneway:
            await self.answer_rpc(request, answer)

    async def answer_rpc(self, request: RpcRequest, answer: dict[str, Any]) -> None:
        try:
            await self.service.rpc_response(self.device.identity, request.request_id, answer)
        except Exception as exc:
            self.stats.delivery_errors += 1
            log.warning("SNMP device %s: the answer of RPC %s was not taken: %r", self.name, request.request_id, exc)


class SnmpPoller:
    """The SNMP devices one transport process polls."""

    def __init__(self, service: TransportService, client: SnmpClient | None = None) -> None:
        self.service = service
        self.client = client or SnmpClient()
        self.stats = SnmpStats()
        self._devices: dict[uuid.UUID, DevicePoller] = {}
        self._sessions: dict[str, DevicePoller] = {}
        self._lock = asyncio.Lock()

    @property
    def device_count(self) -> int:
        return len(self._devices)

    def device(self, device_id: uuid.UUID) -> DevicePoller | None:
        return self._devices.get(device_id)

    def session(self, session_id: str) -> SnmpSession | None:
        running = self._sessions.get(session_id)
        return running.session if running is not None else None

    async def sync(self, devices: Iterable[SnmpDevice]) -> None:
        """Poll exactly ``devices``: start the new, update the changed, stop the gone, and open
        again the sessions the platform closed (unless another session of the device took over)."""
        wanted = {d.identity.device_id: d for d in devices}
        async with self._lock:
            for device_id in [i for i in self._devices if i not in wanted]:
                gone = self._devices.pop(device_id)
                del self._sessions[gone.session.session_id]
                await gone.stop()
            for device_id, device in wanted.items():
                running = self._devices.get(device_id)
                if running is None:
                    running = self._devices[device_id] = DevicePoller(self, device)
                    self._sessions[running.session.session_id] = running
                    running.start()
                    continue
                await running.update(device)
                if running.session.state is SessionState.CLOSED:
                    running.session.move(SessionState.OPENING)
                    running.spawn(running.open_session())

    def failing(self) -> dict[str, str]:
        """The devices whose last request failed, by name, and why."""
        return {d.name: d.last_error for d in self._devices.values() if d.last_error is not None}

    async def stop(self) -> None:
        async with self._lock:
            for running in list(self._devices.values()):
                await running.stop()
            self._devices.clear()
            self._sessions.clear()
        self.client.close()


async def _cancel(tasks: list[asyncio.Task[Any]]) -> None:
    for task in tasks:
        task.cancel()
    for outcome in await asyncio.gather(*tasks, return_exceptions=True):
        if isinstance(outcome, Exception):
            log.error("an SNMP task failed", exc_info=outcome)
