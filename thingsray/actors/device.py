"""The device actor: one per device, in the shard that owns the device's partition.

``DeviceActor`` dispatches; ``DeviceState`` holds what a device is right now (sessions,
attributes, RPCs in flight, activity) and does the work. Writes are handed to the shard's
writer and answered when committed (``Deferred``), so the actor goes on with the next message
while the commit happens, and the device's acknowledgement still waits for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from thingsray.actors.device_rpc import ServerRpcs, background, log_write_failure
from thingsray.actors.env import ShardEnv
from thingsray.actors.messages import (
    ClaimRequest,
    ClientRpc,
    ClientRpcReply,
    CloseSession,
    DeleteAttributes,
    DeviceChanged,
    DeviceRpcDelivered,
    DeviceRpcResponse,
    DeviceStateEvent,
    GetAttributes,
    GetDeviceState,
    PostAttributes,
    PostTelemetry,
    PushAttributes,
    RpcOutcome,
    RpcStatus,
    SaveAttributes,
    SaveTimeseries,
    ServerRpc,
    SessionClosed,
    SessionOpened,
    SessionRef,
    SubscriptionChanged,
    ToDeviceRpc,
    ToRuleEngine,
    WaitRpc,
)
from thingsray.actors.processing import DeviceEvent, save_timeseries
from thingsray.actors.tenant import TenantView
from thingsray.kv import Value, to_json_value
from thingsray.rules.msg import EntityId, MsgType, TbMsg
from thingsray.runtime import Actor, Address, Deferred
from thingsray.storage.attributes import AttributeScope
from thingsray.storage.entities import now_ms
from thingsray.storage.writer import AttributeRow, WriteRequest
from thingsray.transports.service import AttributeUpdate, RpcRequest

log = logging.getLogger(__name__)

POST_TELEMETRY_REQUEST = MsgType.POST_TELEMETRY_REQUEST
POST_ATTRIBUTES_REQUEST = MsgType.POST_ATTRIBUTES_REQUEST
TO_SERVER_RPC_REQUEST = MsgType.TO_SERVER_RPC_REQUEST
CLIENT_RPC_TIMEOUT_S = 60.0
"""How long a device-side RPC waits for a chain's answer (ThingsBoard's clientSideRpc timeout)."""
DEFAULT_INACTIVITY_TIMEOUT_MS = 600_000
CLAIM_DURATION_MS = 86_400_000
"""How long a device's claim offer stands when it names no duration (ThingsBoard's security.claim.duration)."""
CLAIMING_DATA = "claimingData"
"""The server attribute holding a claim offer: ``{"secretKey", "expirationTime"}`` as JSON text."""
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


class DeviceActor(Actor):
    __slots__ = ("address", "state")

    def __init__(self, address: Address, env: ShardEnv) -> None:
        self.address = address
        self.state = DeviceState(uuid.UUID(address.id), address, env)

    async def activate(self) -> None:
        await self.state.load()

    def can_passivate(self) -> bool:
        return (not self.state.sessions and not self.state.pending_rpc and not self.state.client_rpcs
                and not self.state.rest_rpcs and not self.state.rpc_polls)

    async def passivate(self) -> None:
        self.state.stop_timer()

    def export(self) -> Any:
        """The live sessions, for the device's next shard when its partition moves (the rest is
        in storage; RPCs waiting for an answer time out)."""
        sessions = self.state.sessions
        if not sessions:
            return None
        return [(s.ref.transport, s.ref.session_id, s.attributes, s.rpc) for s in sessions.values()]

    def resume(self, state: Any) -> None:
        for transport, session_id, attributes, rpc in state:
            ref = SessionRef(transport, session_id)
            self.state._own("sessions")[session_id] = Session(ref, attributes, rpc)

    async def receive(self, message: Any) -> Any:
        s = self.state
        match message:
            case PostTelemetry():
                return await s.post_telemetry(message)
            case PostAttributes():
                return await s.post_attributes(message)
            case ClientRpc(method=method, params=params):
                return await s.client_rpc(method, params)
            case ClientRpcReply(request_id=request_id, body=body):
                s.client_rpc_reply(request_id, body)
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
            case WaitRpc(timeout_ms=timeout_ms):
                return s.wait_rpc(timeout_ms)
            case ServerRpc():
                return await s.server_rpc(message)
            case ToRuleEngine():
                return await s.rule_engine_msg(message)
            case DeviceStateEvent(event=event, ts=ts):
                s.state_event(event, ts)
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
                await s.register_claim(message)
            case CheckInactivity():
                s.check_inactivity()
            case _:
                raise TypeError(f"a device actor does not handle {type(message).__name__}")
        return None


class DeviceState(ServerRpcs):
    """Slotted, with collections created on first use: a million of them live in one shard (see
    bench/actor_memory.py). A new attribute needs its name in ``__slots__``."""

    __slots__ = ("_activity_persisted", "_last_rpc_id", "_poll_seq", "_timer_armed", "active", "address", "client",
                 "client_rpcs", "device_id", "env", "last_activity", "name", "pending_rpc", "profile_id", "rest_rpcs",
                 "rpc_polls", "server", "sessions", "shared", "tenant")

    def __init__(self, device_id: uuid.UUID, address: Address, env: ShardEnv) -> None:
        self.device_id = device_id
        self.address = address
        self.env = env
        self.name = ""
        self.client_rpcs: Mapping[int, asyncio.Future[Any]] = _NOTHING
        """Device-side RPCs waiting for a rule chain's RPC Call Reply, by request id."""
        self.sessions: Mapping[str, Session] = _NOTHING
        self.client: Mapping[str, tuple[Value, int]] = _NOTHING
        self.shared: Mapping[str, tuple[Value, int]] = _NOTHING
        self.server: Mapping[str, tuple[Value, int]] = _NOTHING
        """Server attributes but ``active`` and ``lastActivityTime``, which are fields."""
        self.pending_rpc: Mapping[int, tuple[asyncio.Future[RpcOutcome], bool]] = _NOTHING
        self.rest_rpcs: Mapping[str, asyncio.Future[RpcOutcome]] = _NOTHING
        """REST calls waiting for their RPC's outcome while it goes through the chain, by requestUUID."""
        self.rpc_polls: Mapping[int, asyncio.Future[RpcRequest | None]] = _NOTHING
        """HTTP long polls waiting for an RPC, oldest first."""
        self._last_rpc_id = 0
        self._poll_seq = 0
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
            self.name = row["name"]

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

    # --- into the rule engine -----------------------------------------------------------------
    async def _chain(self) -> tuple[uuid.UUID | None, str]:
        """(the device profile's default rule chain or None for the tenant's root, the profile's name)."""
        assert self.tenant is not None
        profile = await self.tenant.profile(self.profile_id) if self.profile_id is not None else None
        return (None, "default") if profile is None else (profile.default_rule_chain_id, profile.name)

    async def default_rule_chain(self) -> uuid.UUID | None:
        return (await self._chain())[0] if self.tenant is not None else None

    def _tenant(self) -> TenantView:
        if self.tenant is None:
            raise LookupError(f"device {self.device_id} does not exist")
        return self.tenant

    async def _process(self, msg_type: str, data: Any, ts: int, msg_id: uuid.UUID | None = None,
                       **metadata: str) -> asyncio.Future[None]:
        """Run a message of this device through its chain (awaited: the device's messages run in
        order); the future of its durability comes back."""
        tenant = self._tenant()
        chain_id, device_type = await self._chain()
        msg = TbMsg(msg_type, EntityId("DEVICE", self.device_id), data,
                    {"deviceName": self.name, "deviceType": device_type, "ts": str(ts), **metadata},
                    ts, msg_id or uuid.uuid4())
        return await tenant.rules.process(msg, chain_id, device=self)

    def _event(self, event: DeviceEvent, ts: int) -> None:
        """Device events enter the chain in the background (ThingsBoard's CONNECT_EVENT, ...)."""
        if self.tenant is None:
            return
        data = {"active": self.active, "lastConnectTime": self._server_value("lastConnectTime", 0),
                "lastActivityTime": self.last_activity,
                "lastDisconnectTime": self._server_value("lastDisconnectTime", 0),
                "lastInactivityAlarmTime": self._server_value("inactivityAlarmTime", 0),
                "inactivityTimeout": self.inactivity_timeout_ms}

        async def run() -> None:
            await (await self._process(str(event), data, ts))

        background(run())

    # --- from the device ---------------------------------------------------------------------
    async def post_telemetry(self, message: PostTelemetry) -> Deferred:
        self._activity(message.received_ts)
        tenant = self._tenant()
        tenant.usage.messages += 1
        tenant.usage.data_points += sum(len(g.values) for g in message.groups)
        done = []
        for i, group in enumerate(message.groups):
            ts = group.ts if group.ts is not None else message.received_ts
            msg_id = message.msg_id if i == 0 else uuid.UUID(int=(message.msg_id.int + i) % (1 << 128))
            done.append(await self._process(POST_TELEMETRY_REQUEST, group.values, ts, msg_id))
        return Deferred(done[0] if len(done) == 1 else asyncio.gather(*done))

    async def post_attributes(self, message: PostAttributes) -> Deferred:
        self._activity(message.received_ts)
        tenant = self._tenant()
        tenant.usage.messages += 1
        tenant.usage.attribute_writes += len(message.values)
        # the chain's Save Attributes node stores them (and updates this cache); a chain that
        # does not save client attributes leaves them unsaved, as in ThingsBoard
        return Deferred(await self._process(POST_ATTRIBUTES_REQUEST, message.values, message.received_ts,
                                            message.msg_id))

    async def client_rpc(self, method: str, params: Any) -> Deferred:
        """A device-side RPC: answered by a chain's RPC Call Reply node, or with None after
        ``CLIENT_RPC_TIMEOUT_S`` (the device then gets no answer, as from ThingsBoard)."""
        self._last_rpc_id += 1
        request_id = self._last_rpc_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._own("client_rpcs")[request_id] = future
        asyncio.get_running_loop().call_later(CLIENT_RPC_TIMEOUT_S, self.client_rpc_reply, request_id, None)
        try:
            done = await self._process(TO_SERVER_RPC_REQUEST, {"method": method, "params": params}, now_ms(),
                                       requestId=str(request_id))
        except Exception:
            self._forget("client_rpcs", request_id)
            raise
        done.add_done_callback(log_write_failure)
        return Deferred(future)

    def client_rpc_reply(self, request_id: int, body: Any) -> None:
        future = self._forget("client_rpcs", request_id)
        if future is not None and not future.done():
            future.set_result(body)

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
        self._event(DeviceEvent.CONNECT, message.ts)

    def session_closed(self, message: SessionClosed) -> None:
        if self._forget("sessions", message.session.session_id) is None:
            return  # an older session we already replaced
        self._write_server({"lastDisconnectTime": message.ts}, message.ts)
        self._event(DeviceEvent.DISCONNECT, message.ts)
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
            self._event(DeviceEvent.ACTIVITY, ts)
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
            self._event(DeviceEvent.INACTIVITY, now)
        else:
            self._arm_timer()

    def _write_server(self, values: dict[str, Value], ts: int) -> None:
        for key, value in values.items():
            if key not in _ACTIVITY_KEYS:
                self._own("server")[key] = (value, ts)
        future = self.env.writer.submit(WriteRequest(attributes=[
            AttributeRow(self.device_id, AttributeScope.SERVER_SCOPE, k, v, ts) for k, v in values.items()]))
        future.add_done_callback(log_write_failure)

    # --- claiming ---------------------------------------------------------------------------------
    async def register_claim(self, message: ClaimRequest) -> None:
        """The device offers itself to a customer (ThingsBoard's registerClaimingInfo, claiming
        allowed by default): ``claimingData`` (secret key, expiration) becomes a server attribute,
        unless the device has a customer or an unexpired offer already stands. Answered once stored."""
        customer = await self.env.db.fetchval("SELECT customer_id FROM device WHERE id = $1", self.device_id)
        if customer is not None:
            log.warning("device %s asked to be claimed but is already claimed", self.device_id)
            return
        standing = claim_offer(self._server_value(CLAIMING_DATA, None))
        if standing is not None and standing[1] >= message.ts:
            return
        duration = message.duration_ms if message.duration_ms and message.duration_ms > 0 else CLAIM_DURATION_MS
        offer = json.dumps({"secretKey": message.secret_key or "", "expirationTime": message.ts + duration})
        await self.save_attributes_now("SERVER_SCOPE", {CLAIMING_DATA: offer}, message.ts, notify=True)

    # --- from the REST API and rule chains ------------------------------------------------------
    def save_attributes(self, scope: str, values: dict[str, Value], ts: int) -> Deferred:
        return Deferred(self.save_attributes_now(scope, values, ts, notify=True))

    def attribute_cache(self, scope: str) -> Mapping[str, tuple[Value, int]] | None:
        """The cached attributes of a scope (None for SERVER_SCOPE: its cache leaves out the
        activity keys, which are fields)."""
        return {"CLIENT_SCOPE": self.client, "SHARED_SCOPE": self.shared}.get(scope)

    def save_attributes_now(self, scope: str, values: dict[str, Value], ts: int, *,
                            notify: bool = True) -> asyncio.Future[None]:
        """Cache, write and (shared ones, when ``notify``) push to subscribed sessions once
        committed; the future of the commit."""
        field = _SCOPE_FIELDS[scope]
        for key, value in values.items():
            self._own(field)[key] = (value, ts)
        committed = self.env.writer.submit(WriteRequest(attributes=[
            AttributeRow(self.device_id, AttributeScope[scope], k, v, ts) for k, v in values.items()]))
        if scope == "SHARED_SCOPE" and notify:
            update = AttributeUpdate({k: to_json_value(v) for k, v in values.items()})

            def push_once_committed(result: asyncio.Future[None]) -> None:
                if not result.cancelled() and result.exception() is None:
                    self._push_attributes(update)

            committed.add_done_callback(push_once_committed)
        return committed

    async def delete_attributes(self, scope: str, keys: tuple[str, ...]) -> None:
        field = _SCOPE_FIELDS[scope]
        await self.env.delete_attributes(self.device_id, AttributeScope[scope], keys)
        removed = tuple(k for k in keys if self._forget(field, k) is not None)
        if scope == "SHARED_SCOPE" and removed:
            self._push_attributes(AttributeUpdate({}, removed))

    def save_timeseries(self, message: SaveTimeseries) -> Deferred:
        return Deferred(save_timeseries(self.env, self.device_id, message))

    def _push_attributes(self, update: AttributeUpdate) -> None:
        for session in self.sessions.values():
            if session.attributes:
                background(self.env.push(session.ref, PushAttributes(session.ref.session_id, update)))

    async def rule_engine_msg(self, message: ToRuleEngine) -> Deferred:
        tenant = self._tenant()
        if tenant.tenant_id != message.tenant_id:
            raise LookupError(f"device {self.device_id} is not a device of tenant {message.tenant_id}")
        chain_id, _ = await self._chain()
        return Deferred(await tenant.rules.process(message.msg, chain_id, device=self))

    def state_event(self, event: str, ts: int) -> None:
        """A rule chain's Device State node reports an event (ThingsBoard's device state service)."""
        if self.tenant is None:
            return
        if event == DeviceEvent.CONNECT:
            self._write_server({"lastConnectTime": ts}, ts)
            self._event(DeviceEvent.CONNECT, ts)
        elif event == DeviceEvent.DISCONNECT:
            self._write_server({"lastDisconnectTime": ts}, ts)
            self._event(DeviceEvent.DISCONNECT, ts)
        elif event == DeviceEvent.ACTIVITY:
            self._activity(ts)
        elif event == DeviceEvent.INACTIVITY:
            self.active = False
            self._write_server({"active": False, "inactivityAlarmTime": ts, "lastActivityTime": self.last_activity}, ts)
            self._event(DeviceEvent.INACTIVITY, ts)
        else:
            raise ValueError(f"unknown device state event {event!r}")

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
                "pendingRpc": len(self.pending_rpc), "rpcPolls": len(self.rpc_polls)}


def claim_offer(value: Any) -> tuple[str, int] | None:
    """(secret key, expiration time) of a ``claimingData`` attribute value; None when absent or unreadable."""
    try:
        data = json.loads(value) if isinstance(value, str) else value
        return str(data.get("secretKey") or ""), int(data["expirationTime"])
    except (ValueError, TypeError, KeyError, AttributeError):
        return None
