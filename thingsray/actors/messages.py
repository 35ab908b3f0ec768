"""Messages to a device actor, grouped by who sends them. Frozen, slotted, picklable: they cross
process boundaries in batches. The device actor ``match``es over ``DeviceMessage``."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from typing import Any

from thingsray.kv import Value
from thingsray.rules.msg import TbMsg
from thingsray.transports.payloads import TelemetryGroup
from thingsray.transports.service import AttributeUpdate, DeviceIdentity, RpcRequest

DEVICE = "device"
"""The actor kind of devices; the address id is the device id as a string."""
ENTITY = "entity"
"""The actor kind of entities that are not devices; the address id is the entity's uuid."""


@dataclass(frozen=True, slots=True)
class SessionRef:
    """A live device session: the transport actor holding it (its Ray actor name) and its id."""

    transport: str
    session_id: str


# --- from transports -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SessionOpened:
    session: SessionRef
    identity: DeviceIdentity
    ts: int


@dataclass(frozen=True, slots=True)
class SessionClosed:
    session: SessionRef
    ts: int


@dataclass(frozen=True, slots=True)
class SubscriptionChanged:
    session: SessionRef
    attributes: bool | None = None
    rpc: bool | None = None


@dataclass(frozen=True, slots=True)
class PostTelemetry:
    """Answered once the data is committed. ``msg_id`` and ``received_ts`` are stamped once by
    the transport, so a retry of the same message stores the same rows."""

    msg_id: uuid.UUID
    received_ts: int
    groups: tuple[TelemetryGroup, ...]

    def __reduce__(self) -> tuple[Any, ...]:
        # the hottest message: flat tuples pickle without dataclasses.fields per object
        return _post_telemetry, (self.msg_id.int, self.received_ts, [(g.ts, g.values) for g in self.groups])


def _post_telemetry(msg_id: int, received_ts: int,
                    groups: list[tuple[int | None, dict[str, Value]]]) -> PostTelemetry:
    return PostTelemetry(uuid.UUID(int=msg_id), received_ts,
                         tuple([TelemetryGroup(ts, values) for ts, values in groups]))


@dataclass(frozen=True, slots=True)
class PostAttributes:
    msg_id: uuid.UUID
    received_ts: int
    values: dict[str, Value]


@dataclass(frozen=True, slots=True)
class GetAttributes:
    """Answered with ``{"client": {...}, "shared": {...}}``; None keys mean "all of that scope"."""

    client_keys: tuple[str, ...] | None
    shared_keys: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class DeviceRpcResponse:
    """The device answered server-side RPC ``request_id``."""

    request_id: int
    payload: Any


@dataclass(frozen=True, slots=True)
class DeviceRpcDelivered:
    request_id: int


@dataclass(frozen=True, slots=True)
class ClientRpc:
    """A device-side RPC (``v1/devices/me/rpc/request/{id}``); answered with what a rule chain's
    RPC Call Reply node sends back, or None when no chain answers in time."""

    method: str
    params: Any


@dataclass(frozen=True, slots=True)
class ClaimRequest:
    secret_key: str | None
    duration_ms: int | None
    ts: int


@dataclass(frozen=True, slots=True)
class WaitRpc:
    """An HTTP long poll for server-side RPC: answered with the next ``RpcRequest`` for the device,
    or None after ``timeout_ms``. A poll is not a session: it displaces none and none displaces it."""

    timeout_ms: int


# --- from the REST API and the rule engine -----------------------------------------------------
@dataclass(frozen=True, slots=True)
class SaveAttributes:
    """Save attributes of a scope (CLIENT_SCOPE, SERVER_SCOPE, SHARED_SCOPE); answered once committed.
    Shared ones reach a subscribed device at once."""

    scope: str
    values: dict[str, Value]
    ts: int


@dataclass(frozen=True, slots=True)
class DeleteAttributes:
    scope: str
    keys: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class SaveTimeseries:
    groups: tuple[TelemetryGroup, ...]
    ts: int
    """Server time for groups without their own timestamp."""


@dataclass(frozen=True, slots=True)
class ToDeviceRpc:
    """A server-side RPC. Two-way: answered with the device's response; one-way: answered once
    the device has it. Answered with an ``RpcOutcome``."""

    method: str
    params: Any
    oneway: bool
    timeout_ms: int
    request_uuid: str | None = None
    """Set by a rule chain's RPC Call Request node for a REST call's message (``ServerRpc``): the
    outcome answers that call too."""


@dataclass(frozen=True, slots=True)
class ServerRpc:
    """A server-side RPC from the REST API. As in ThingsBoard it enters the device's rule chain as
    RPC_CALL_FROM_SERVER_TO_DEVICE (data ``{"method", "params"}``, metadata ``requestUUID``,
    ``expirationTime``, ``oneway``, ``persistent``) and reaches the device through the chain's
    RPC Call Request node. Answered with the device's ``RpcOutcome``; TIMEOUT when nothing sent
    it on before ``expiration_time`` (ms)."""

    request_uuid: str
    method: str
    params: Any
    oneway: bool
    expiration_time: int
    persistent: bool = False


@dataclass(frozen=True, slots=True)
class DeviceStateEvent:
    """A rule chain's Device State node reports CONNECT_EVENT, ACTIVITY_EVENT, DISCONNECT_EVENT or
    INACTIVITY_EVENT at ``ts``: the actor updates its state as if a transport saw it."""

    event: str
    ts: int


@dataclass(frozen=True, slots=True)
class ToRuleEngine:
    """Run ``msg`` (about this actor's entity: an alarm's change over REST, an alarm node's action
    message) where the entity's own messages start: a device's chain, else the tenant's root
    chain. Answered once the chain has run and its writes are committed."""

    tenant_id: uuid.UUID
    msg: TbMsg


@dataclass(frozen=True, slots=True)
class ClientRpcReply:
    """A rule chain answers device-side RPC ``request_id`` with ``body``."""

    request_id: int
    body: Any


@dataclass(frozen=True, slots=True)
class DeviceChanged:
    """The device's entity changed over REST: sessions close on delete or credentials change,
    and the cached identity is reloaded."""

    kind: str
    """"UPDATED", "DELETED" or "CREDENTIALS_UPDATED"."""


@dataclass(frozen=True, slots=True)
class GetDeviceState:
    """Answered with the live state: active, lastConnectTime, ... and the session count."""


# --- what a device actor sends back to a transport ----------------------------------------------
@dataclass(frozen=True, slots=True)
class PushAttributes:
    session_id: str
    update: AttributeUpdate


@dataclass(frozen=True, slots=True)
class PushRpc:
    session_id: str
    request: RpcRequest


@dataclass(frozen=True, slots=True)
class CloseSession:
    session_id: str
    reason: str


Downlink = PushAttributes | PushRpc | CloseSession

DeviceMessage = (SessionOpened | SessionClosed | SubscriptionChanged | PostTelemetry | PostAttributes
                 | GetAttributes | DeviceRpcResponse | DeviceRpcDelivered | ClaimRequest | WaitRpc | SaveAttributes
                 | DeleteAttributes | SaveTimeseries | ToDeviceRpc | DeviceChanged | GetDeviceState | ClientRpc
                 | ClientRpcReply | ServerRpc | DeviceStateEvent | ToRuleEngine)


class RpcStatus(enum.Enum):
    SUCCESSFUL = "SUCCESSFUL"
    DELIVERED = "DELIVERED"
    NOT_CONNECTED = "NOT_CONNECTED"
    """No session takes RPC: ThingsBoard answers 409 on the plugins API, 504 on /api/rpc."""
    TIMEOUT = "TIMEOUT"
    """No answer in time: 408 on the plugins API, 504 on /api/rpc."""


@dataclass(frozen=True, slots=True)
class RpcOutcome:
    """What ``ToDeviceRpc`` is answered with."""

    status: RpcStatus
    request_id: int
    response: Any = None
