"""The device actor: one per device, in the shard that owns the device's partition.

``DeviceActor`` dispatches; ``DeviceState`` holds what a device is right now (sessions,
attributes, RPCs in flight, activity) and does the work. Writes are handed to the shard's
writer and answered when committed (``Deferred``), so the actor goes on with the next message
while the commit happens, and the device's acknowledgement still waits for it.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from thingsray.actors.env import ShardEnv
from thingsray.actors.messages import (
    ClaimRequest,
    CloseSession,
    DeleteAttributes,
    DeviceChanged,
    DeviceRpcDelivered,
    DeviceRpcResponse,
    GetAttributes,
    GetDeviceState,
    PostAttributes,
    PostTelemetry,
    PushAttributes,
    PushRpc,
    RpcOutcome,
    RpcStatus,
    SaveAttributes,
    SaveTimeseries,
    SessionClosed,
    SessionOpened,
    SessionRef,
    SubscriptionChanged,
    ToDeviceRpc,
)
from thingsray.actors.processing import DeviceEvent, Processing, default_processing
from thingsray.actors.tenant import TenantView
from thingsray.kv import Value, to_json_value
from thingsray.runtime import Actor, Address, Deferred
from thingsray.storage.attributes import AttributeScope
from thingsray.storage.entities import now_ms
from thingsray.storage.writer import AttributeRow, WriteRequest
from thingsray.transports.service import AttributeUpdate, RpcRequest

log = logging.getLogger(__name__)

DEFAULT_INACTIVITY_TIMEOUT_MS = 600_000
ACTIVITY_PERSIST_INTERVAL_MS = 10_000
"""lastActivityTime is written at most this often (and on every change of ``active``)."""


@dataclass(slots=True)
class Session:
    ref: SessionRef
    attributes: bool = False
    rpc: bool = False


@dataclass(frozen=True, slots=True)
class CheckInactivity:
    """The actor's own timer (one per device, kept by the host's timer wheel): is the device still active?"""


CHECK_INACTIVITY = CheckInactivity()

_NOTHING: Mapping[Any, Any] = MappingProxyType({})
"""What a state's sessions, RPCs or attribute scope are while empty: shared and read-only, so a
million idle devices hold no empty dicts; ``DeviceState._own`` gives a device its own dict."""
_SCOPE_FIELDS = {"CLIENT_SCOPE": "client", "SERVER_SCOPE": "server", "SHARED_SCOPE": "shared"}
_ACTIVITY_KEYS = frozenset(("active", "lastActivityTime"))
"""Server attributes a state holds as fields (``active``, ``last_activity``), not in ``server``."""


@functools.cache
def _shared_processing() -> Processing:
    """The default processing holds no state: one serves every device of the process."""
    return default_processing()


class DeviceActor(Actor):
    __slots__ = ("address", "state")

    def __init__(self, address: Address, env: ShardEnv, processing: Processing | None = None) -> None:
        self.address = address
        self.state = DeviceState(uuid.UUID(address.id), address, env, processing or _shared_processing())

    async def activate(self) -> None:
        await self.state.load()

    def can_passivate(self) -> bool:
        return not self.state.sessions and not self.state.pending_rpc

    async def passivate(self) -> None:
        self.state.stop_timer()

    async def receive(self, message: Any) -> Any:
        s = self.state
        match message:
            case PostTelemetry():
                return s.post_telemetry(message)
            case PostAttributes():
                return s.post_attributes(message)
            case GetAttributes(client_keys=client_keys, shared_keys=shared_keys):
                return s.get_attributes(client_keys, shared_keys)
            case SessionOpened():
                await s.session_opened(message)
            case SessionClosed():
                s.session_closed(message)
            case SubscriptionChanged():
                s.subscription_changed(message)
            case DeviceRpcResponse(request_id=request_id, payload=payload):
                s.rpc_answered(request_id, payload)
            case DeviceRpcDelivered(request_id=request_id):
                s.rpc_delivered(request_id)
            case ToDeviceRpc():
                return s.rpc(message)
            case SaveAttributes():
                return s.save_attributes(message.scope, message.values, message.ts)
            case DeleteAttributes():
                await s.delete_attributes(message.scope, message.keys)
            case SaveTimeseries():
                return s.save_timeseries(message)
            case DeviceChanged(kind=kind):
                await s.device_changed(kind)
            case GetDeviceState():
                return s.snapshot()
            case ClaimRequest():
                s.claim = message
            case CheckInactivity():
                s.check_inactivity()
            case _:
                raise TypeError(f"a device actor does not handle {type(message).__name__}")
        return None


class DeviceState:
    """Slotted, with collections created on first use: a million of them live in one shard (see
    bench/actor_memory.py). A new attribute needs its name in ``__slots__``."""

    __slots__ = ("_activity_persisted", "_last_rpc_id", "_timer_armed", "active", "address", "claim", "client",
                 "device_id", "env", "last_activity", "pending_rpc", "processing", "profile_id", "server",
                 "sessions", "shared", "tenant")

    def __init__(self, device_id: uuid.UUID, address: Address, env: ShardEnv, processing: Processing) -> None:
        self.device_id = device_id
        self.address = address
        self.env = env
        self.processing = processing
        self.sessions: Mapping[str, Session] = _NOTHING
        self.client: Mapping[str, tuple[Value, int]] = _NOTHING
        self.shared: Mapping[str, tuple[Value, int]] = _NOTHING
        self.server: Mapping[str, tuple[Value, int]] = _NOTHING
        """Server attributes but ``active`` and ``lastActivityTime``, which are fields."""
        self.pending_rpc: Mapping[int, tuple[asyncio.Future[RpcOutcome], bool]] = _NOTHING
        self._last_rpc_id = 0
        self.claim: ClaimRequest | None = None
        self.active = False
        self.last_activity = 0
        self._activity_persisted = 0
        self._timer_armed = False
        self.tenant: TenantView | None = None
        """The tenant's view on this shard: profiles and usage; None for a device that does not exist."""
        self.profile_id: uuid.UUID | None = None

    # --- life --------------------------------------------------------------------------------
    async def load(self) -> None:
        await self._load_entity()
        scopes = await self.env.load_attributes(self.device_id)
        self.client = scopes[AttributeScope.CLIENT_SCOPE] or _NOTHING
        self.shared = scopes[AttributeScope.SHARED_SCOPE] or _NOTHING
        self.server = scopes[AttributeScope.SERVER_SCOPE]
        self.active = bool(self._server_value("active", False))
        self.last_activity = int(self._server_value("lastActivityTime", 0) or 0)
        self.server = {k: v for k, v in self.server.items() if k not in _ACTIVITY_KEYS} or _NOTHING
        self._activity_persisted = self.last_activity
        if self.active:
            self._arm_timer()

    async def _load_entity(self) -> None:
        row = await self.env.load_device(self.device_id)
        if row is not None:
            self.tenant = self.env.tenant_view(row["tenant_id"])
            self.profile_id = row["device_profile_id"]

    def _server_value(self, key: str, default: Any) -> Any:
        entry = self.server.get(key)
        return default if entry is None else entry[0]

    def _own(self, field: str) -> dict[Any, Any]:
        """The collection ``field`` (sessions, pending_rpc, client, shared, server) as this state's
        own dict, created when the first entry goes in."""
        current = getattr(self, field)
        if current is _NOTHING:
            current = {}
            setattr(self, field, current)
        return current

    def _forget(self, field: str, key: Any) -> Any:
        """Remove ``key`` from the collection ``field``; return its entry (None if absent). An
        emptied collection goes back to the shared ``_NOTHING``."""
        current = getattr(self, field)
        entry = current.get(key)
        if entry is not None:
            del current[key]
            if not current:
                setattr(self, field, _NOTHING)
        return entry

    @property
    def inactivity_timeout_ms(self) -> int:
        value = self._server_value("inactivityTimeout", DEFAULT_INACTIVITY_TIMEOUT_MS)
        return value if isinstance(value, int) and value > 0 else DEFAULT_INACTIVITY_TIMEOUT_MS

    def stop_timer(self) -> None:
        if self._timer_armed and self.env.host is not None:
            self.env.host.cancel_timer(self.address)
        self._timer_armed = False

    # --- from the device ---------------------------------------------------------------------
    def post_telemetry(self, message: PostTelemetry) -> Deferred:
        self._activity(message.received_ts)
        if self.tenant is not None:
            self.tenant.usage.messages += 1
            self.tenant.usage.data_points += sum(len(g.values) for g in message.groups)
        return Deferred(self.processing.telemetry(self.env, self.device_id, message))

    def post_attributes(self, message: PostAttributes) -> Deferred:
        self._activity(message.received_ts)
        if self.tenant is not None:
            self.tenant.usage.messages += 1
            self.tenant.usage.attribute_writes += len(message.values)
        for key, value in message.values.items():
            self._own("client")[key] = (value, message.received_ts)
        return Deferred(self.processing.attributes(self.env, self.device_id, message))

    def get_attributes(self, client_keys: tuple[str, ...] | None,
                       shared_keys: tuple[str, ...] | None) -> dict[str, dict[str, Any]]:
        def pick(source: Mapping[str, tuple[Value, int]], keys: tuple[str, ...] | None, all_when_none: bool) -> dict:
            if keys is None:
                return {k: to_json_value(v) for k, (v, _) in source.items()} if all_when_none else {}
            return {k: to_json_value(source[k][0]) for k in keys if k in source}

        everything = client_keys is None and shared_keys is None
        return {"client": pick(self.client, client_keys, everything),
                "shared": pick(self.shared, shared_keys, everything)}

    async def session_opened(self, message: SessionOpened) -> None:
        for other in list(self.sessions.values()):
            if other.ref != message.session:
                # one session per device: the newest wins, as in ThingsBoard
                await self.env.push(other.ref, CloseSession(other.ref.session_id,
                                                            "another session of the device connected"))
                self._forget("sessions", other.ref.session_id)
        self._own("sessions")[message.session.session_id] = Session(message.session)
        updates: dict[str, Value] = {"lastConnectTime": message.ts}
        self._write_server(updates, message.ts)
        self._activity(message.ts)
        self.processing.event(self.env, self.device_id, DeviceEvent.CONNECT, message.ts)

    def session_closed(self, message: SessionClosed) -> None:
        if self._forget("sessions", message.session.session_id) is None:
            return  # an older session we already replaced
        self._write_server({"lastDisconnectTime": message.ts}, message.ts)
        self.processing.event(self.env, self.device_id, DeviceEvent.DISCONNECT, message.ts)
        for request_id, (future, _) in list(self.pending_rpc.items()):
            if not self._rpc_session() and not future.done():
                future.set_result(RpcOutcome(RpcStatus.NOT_CONNECTED, request_id))
                self._forget("pending_rpc", request_id)

    def subscription_changed(self, message: SubscriptionChanged) -> None:
        session = self.sessions.get(message.session.session_id)
        if session is None:
            return
        if message.attributes is not None:
            session.attributes = message.attributes
        if message.rpc is not None:
            session.rpc = message.rpc

    # --- activity (spec section 6) -------------------------------------------------------------
    def _activity(self, ts: int) -> None:
        self.last_activity = max(self.last_activity, ts)
        if not self.active:
            self.active = True
            self._write_server({"active": True, "lastActivityTime": self.last_activity}, ts)
            self._activity_persisted = self.last_activity
            self.processing.event(self.env, self.device_id, DeviceEvent.ACTIVITY, ts)
        elif self.last_activity - self._activity_persisted >= ACTIVITY_PERSIST_INTERVAL_MS:
            self._write_server({"lastActivityTime": self.last_activity}, ts)
            self._activity_persisted = self.last_activity
        if not self._timer_armed:
            self._arm_timer()

    def _arm_timer(self) -> None:
        host = self.env.host
        if host is not None:  # a shard's env is bound to its host before any actor runs
            due = self.last_activity + self.inactivity_timeout_ms
            host.set_timer(self.address, CHECK_INACTIVITY, max(0.0, (due - now_ms()) / 1000))
            self._timer_armed = True

    def check_inactivity(self) -> None:
        self._timer_armed = False
        if not self.active:
            return
        now = now_ms()
        if now - self.last_activity >= self.inactivity_timeout_ms:
            self.active = False
            self._write_server({"active": False, "inactivityAlarmTime": now,
                                "lastActivityTime": self.last_activity}, now)
            self.processing.event(self.env, self.device_id, DeviceEvent.INACTIVITY, now)
        else:
            self._arm_timer()

    def _write_server(self, values: dict[str, Value], ts: int) -> None:
        for key, value in values.items():
            if key not in _ACTIVITY_KEYS:
                self._own("server")[key] = (value, ts)
        future = self.env.writer.submit(WriteRequest(attributes=[
            AttributeRow(self.device_id, AttributeScope.SERVER_SCOPE, k, v, ts) for k, v in values.items()]))
        future.add_done_callback(_log_write_failure)

    # --- from the REST API -------------------------------------------------------------------
    def save_attributes(self, scope: str, values: dict[str, Value], ts: int) -> Deferred:
        field = _SCOPE_FIELDS[scope]
        for key, value in values.items():
            self._own(field)[key] = (value, ts)
        committed = self.env.writer.submit(WriteRequest(attributes=[
            AttributeRow(self.device_id, AttributeScope[scope], k, v, ts) for k, v in values.items()]))
        if scope == "SHARED_SCOPE":
            update = AttributeUpdate({k: to_json_value(v) for k, v in values.items()})

            def push_once_committed(result: asyncio.Future[None]) -> None:
                if not result.cancelled() and result.exception() is None:
                    self._push_attributes(update)

            committed.add_done_callback(push_once_committed)
        return Deferred(committed)

    async def delete_attributes(self, scope: str, keys: tuple[str, ...]) -> None:
        field = _SCOPE_FIELDS[scope]
        await self.env.delete_attributes(self.device_id, AttributeScope[scope], keys)
        removed = tuple(k for k in keys if self._forget(field, k) is not None)
        if scope == "SHARED_SCOPE" and removed:
            self._push_attributes(AttributeUpdate({}, removed))

    def save_timeseries(self, message: SaveTimeseries) -> Deferred:
        return Deferred(self.processing.timeseries(self.env, self.device_id, message))

    def _push_attributes(self, update: AttributeUpdate) -> None:
        for session in self.sessions.values():
            if session.attributes:
                _background(self.env.push(session.ref, PushAttributes(session.ref.session_id, update)))

    # --- server-side RPC -----------------------------------------------------------------------
    def _rpc_session(self) -> Session | None:
        return next((s for s in self.sessions.values() if s.rpc), None)

    def rpc(self, message: ToDeviceRpc) -> RpcOutcome | Deferred:
        self._last_rpc_id += 1
        request_id = self._last_rpc_id
        if self.tenant is not None:
            self.tenant.usage.rpc_requests += 1
        session = self._rpc_session()
        if session is None:
            return RpcOutcome(RpcStatus.NOT_CONNECTED, request_id)
        future: asyncio.Future[RpcOutcome] = asyncio.get_running_loop().create_future()
        self._own("pending_rpc")[request_id] = (future, message.oneway)
        request = RpcRequest(request_id, message.method, message.params, message.oneway)

        async def send() -> None:
            delivered = await self.env.push(session.ref, PushRpc(session.ref.session_id, request))
            if delivered and message.oneway:
                self._finish_rpc(request_id, RpcOutcome(RpcStatus.DELIVERED, request_id))
            elif not delivered and message.oneway:
                self._finish_rpc(request_id, RpcOutcome(RpcStatus.TIMEOUT, request_id))

        _background(send())
        loop = asyncio.get_running_loop()
        loop.call_later(message.timeout_ms / 1000, self._finish_rpc, request_id,
                        RpcOutcome(RpcStatus.TIMEOUT, request_id))
        return Deferred(future)

    def rpc_answered(self, request_id: int, payload: Any) -> None:
        self._finish_rpc(request_id, RpcOutcome(RpcStatus.SUCCESSFUL, request_id, payload))

    def rpc_delivered(self, request_id: int) -> None:
        entry = self.pending_rpc.get(request_id)
        if entry is not None and entry[1]:
            self._finish_rpc(request_id, RpcOutcome(RpcStatus.DELIVERED, request_id))

    def _finish_rpc(self, request_id: int, outcome: RpcOutcome) -> None:
        entry = self._forget("pending_rpc", request_id)
        if entry is not None and not entry[0].done():
            entry[0].set_result(outcome)

    # --- entity changes ----------------------------------------------------------------------
    async def device_changed(self, kind: str) -> None:
        if kind == "UPDATED":
            await self._load_entity()  # a new profile applies from the next message on
        if kind in ("DELETED", "CREDENTIALS_UPDATED"):
            reason = "the device was deleted" if kind == "DELETED" else "the device's credentials changed"
            for session in list(self.sessions.values()):
                await self.env.push(session.ref, CloseSession(session.ref.session_id, reason))
            self.sessions = _NOTHING
            if kind == "DELETED":
                self.stop_timer()
                for request_id in list(self.pending_rpc):
                    self._finish_rpc(request_id, RpcOutcome(RpcStatus.NOT_CONNECTED, request_id))

    def snapshot(self) -> dict[str, Any]:
        return {"active": self.active, "lastActivityTime": self.last_activity,
                "lastConnectTime": self._server_value("lastConnectTime", 0),
                "lastDisconnectTime": self._server_value("lastDisconnectTime", 0),
                "inactivityAlarmTime": self._server_value("inactivityAlarmTime", 0),
                "inactivityTimeout": self.inactivity_timeout_ms, "sessions": len(self.sessions),
                "profileId": None if self.profile_id is None else str(self.profile_id),
                "pendingRpc": len(self.pending_rpc)}


_background_tasks: set[asyncio.Task[Any]] = set()


def _background(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _background_tasks.add(task)
    task.add_done_callback(_background_tasks.discard)


def _log_write_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("a device state write failed: %r", future.exception())
