"""One SNMP device's platform session: how shared attributes and server RPC reach the agent.

ThingsBoard keeps an asynchronous session open for every SNMP device it polls, subscribed to
shared-attribute updates and RPC. A shared attribute whose key a SHARED_ATTRIBUTES_SETTING mapping
names becomes a SET of that OID. An RPC's ``method`` is GET or SET and its ``params`` are
``{"key": k, "value": v}``: the TO_DEVICE_RPC_REQUEST mapping of key ``k`` says which OID; the answer
is ``{k: value}`` as the agent returned it, typed by the mapping. ThingsBoard leaves a bad RPC
unanswered until the call times out; here a two-way call gets ``{"error": text}`` at once.
"""

from __future__ import annotations

import enum
import json
import logging
import uuid
from typing import TYPE_CHECKING, Any

from thingsray.kv import to_json_value
from thingsray.transports.service import AttributeUpdate, RpcRequest
from thingsray.transports.snmp.client import SnmpRequestError
from thingsray.transports.snmp.config import CommunicationSpec, SnmpCommunicationConfig, SnmpMethod
from thingsray.transports.snmp.values import ValueTypeError, set_text, snmp_text, to_snmp, typed_value

if TYPE_CHECKING:
    from thingsray.transports.snmp.poller import DevicePoller

log = logging.getLogger(__name__)

DISPLACED_PREFIX = "another session"
"""The start of the reason a device actor gives when a newer session of the device took over."""


class SessionState(enum.Enum):
    OPENING = "opening"
    OPEN = "open"
    CLOSED = "closed"
    """Closed by the platform (credentials changed, ...): opened again at the next sync."""
    DISPLACED = "displaced"
    """Another session of the device took over: left closed, polling goes on."""
    STOPPED = "stopped"


_MOVES = {
    SessionState.OPENING: {SessionState.OPEN, SessionState.CLOSED, SessionState.DISPLACED, SessionState.STOPPED},
    SessionState.OPEN: {SessionState.CLOSED, SessionState.DISPLACED, SessionState.STOPPED},
    SessionState.CLOSED: {SessionState.OPENING, SessionState.STOPPED},
    SessionState.DISPLACED: {SessionState.STOPPED},
    SessionState.STOPPED: set(),
}
_LIVE = (SessionState.OPENING, SessionState.OPEN)
"""States in which the platform may push (a push may come before ``subscribe`` has returned)."""


class RpcRefused(ValueError):
    """An RPC the device's profile cannot carry out; the text says why (ThingsBoard's words)."""


class SnmpSession:
    """The ``SessionSink`` of one SNMP device."""

    def __init__(self, poller: DevicePoller) -> None:
        self._poller = poller
        self._id = f"snmp-{uuid.uuid4().hex}"
        self.state = SessionState.OPENING

    @property
    def session_id(self) -> str:
        return self._id

    def move(self, to: SessionState) -> None:
        """Change state; a change the session cannot make raises ``RuntimeError``."""
        if to not in _MOVES[self.state]:
            raise RuntimeError(f"an SNMP session cannot go from {self.state.value} to {to.value}")
        self.state = to

    async def push_attributes(self, update: AttributeUpdate) -> None:
        if update.values and self.state in _LIVE:
            self._poller.spawn(self._poller.set_shared(update.values))

    async def push_rpc(self, request: RpcRequest) -> bool:
        """True once the request is on its way to the agent; a two-way call's answer follows."""
        if self.state not in _LIVE:
            return False
        try:
            plan = plan_rpc(self._poller.device.profile.first(CommunicationSpec.TO_DEVICE_RPC_REQUEST), request)
        except RpcRefused as exc:
            self._poller.stats.rpc_errors += 1
            log.warning("SNMP device %s: RPC %s refused: %s", self._poller.name, request.request_id, exc)
            if request.oneway:
                return False
            self._poller.spawn(self._poller.answer_rpc(request, {"error": str(exc)}))
            return True
        self._poller.spawn(self._poller.run_rpc(request, *plan))
        return True

    async def close(self, reason: str) -> None:
        if self.state in _LIVE:
            self.move(SessionState.DISPLACED if reason.startswith(DISPLACED_PREFIX) else SessionState.CLOSED)
            log.info("SNMP device %s: the platform closed its session: %s", self._poller.name, reason)


def plan_rpc(config: SnmpCommunicationConfig | None, request: RpcRequest) -> tuple[SnmpMethod, SnmpCommunicationConfig,
                                                                                    str, str | None]:
    """Method, config, key and value text of an RPC, checked as ThingsBoard checks them."""
    try:
        method = SnmpMethod(request.method)
    except ValueError:
        raise RpcRefused(f"unsupported SNMP method '{request.method}': use GET or SET") from None
    params: Any = request.params
    if isinstance(params, str):
        try:
            params = json.loads(params)
        except ValueError:
            raise RpcRefused("RPC params must be a JSON object {\"key\": ..., \"value\": ...}") from None
    if not isinstance(params, dict):
        raise RpcRefused("RPC params must be a JSON object {\"key\": ..., \"value\": ...}")
    key, value = params.get("key"), params.get("value")
    if value is None and method is SnmpMethod.SET:
        raise RpcRefused("Value must be specified for SNMP method 'SET'")
    if config is None:
        raise RpcRefused("No communication config found with RPC spec")
    if not isinstance(key, str) or config.mapping_for_key(key) is None:
        raise RpcRefused("No SNMP mapping found in the config for specified key")
    return method, config, key, None if value is None else set_text(value)


def rpc_answer(config: SnmpCommunicationConfig, values: dict[tuple[int, ...], Any]) -> dict[str, Any]:
    """``{key: value}`` for each answered OID that one of the RPC config's mappings names."""
    answer: dict[str, Any] = {}
    for mapping in config.mappings:
        raw = values.get(mapping.numbers)
        if raw is None:
            continue
        answer[mapping.key] = to_json_value(typed_value(mapping.key, snmp_text(raw), mapping.data_type))
    return answer


async def rpc_exchange(poller: DevicePoller, method: SnmpMethod, config: SnmpCommunicationConfig, key: str,
                       value: str | None) -> dict[str, Any]:
    """Carry out a planned RPC: the answer, or ``{"error": text}``."""
    mapping = config.mapping_for_key(key)
    assert mapping is not None
    try:
        if method is SnmpMethod.GET:
            response = await poller.agent.get([mapping.numbers])
        else:
            assert value is not None
            async with poller.set_lock:
                response = await poller.agent.set([(mapping.numbers, to_snmp(value, mapping.data_type))])
    except SnmpRequestError as exc:
        poller.count_failure(exc)
        return {"error": str(exc)}
    for oid, reason in response.missing.items():
        poller.stats.missing_values += 1
        log.warning("SNMP device %s: RPC %s of %s: %s", poller.name, method.value, ".".join(map(str, oid)), reason)
    try:
        answer = rpc_answer(config, response.values)
    except ValueTypeError as exc:
        poller.stats.bad_values += 1
        return {"error": str(exc)}
    return answer or {"error": "No values in the response"}
