"""The rule engine's message: what flows from node to node (ThingsBoard's TbMsg)."""

from __future__ import annotations

import dataclasses
import time
import uuid
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class EntityId:
    """An entity reference as ThingsBoard writes it: ``{"entityType": "DEVICE", "id": "..."}``."""

    entity_type: str
    id: uuid.UUID

    def to_json(self) -> dict[str, str]:
        return {"entityType": self.entity_type, "id": str(self.id)}

    @classmethod
    def parse(cls, value: Any) -> EntityId:
        """From ``{"entityType", "id"}``; raises ValueError naming what is wrong."""
        if not isinstance(value, dict) or not isinstance(value.get("entityType"), str):
            raise ValueError(f"not an entity id: {value!r}")
        return cls(value["entityType"], uuid.UUID(str(value.get("id"))))


@dataclass(frozen=True, slots=True)
class TbMsg:
    """One rule engine message. ``data`` is the parsed JSON body (ThingsBoard keeps it as text;
    we parse once at the edge and serialise only when a script or a debug event needs it).
    ``metadata`` values are strings, as in ThingsBoard. Messages are immutable: a node that
    changes one returns ``msg.copy(...)``.

    ``ack`` is not part of the message's content: it is the future (or None) that resolves when
    everything the message caused inside the engine is committed; copies share it."""

    type: str
    originator: EntityId
    data: Any
    metadata: dict[str, str]
    ts: int = field(default_factory=lambda: int(time.time() * 1000))
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    customer_id: uuid.UUID | None = None
    correlation: uuid.UUID | None = None
    """The id of the message this one was made from (context: what caused what)."""

    def copy(self, **changes: Any) -> TbMsg:
        return dataclasses.replace(self, **changes)

    def with_metadata(self, **values: str) -> TbMsg:
        return dataclasses.replace(self, metadata={**self.metadata, **values})

    def script_args(self) -> tuple[Any, dict[str, str], str]:
        """``(msg, metadata, msgType)`` as scripts see them."""
        return self.data, dict(self.metadata), self.type


class MsgType:
    """ThingsBoard's message types (the strings scripts and switch nodes see)."""

    POST_TELEMETRY_REQUEST = "POST_TELEMETRY_REQUEST"
    POST_ATTRIBUTES_REQUEST = "POST_ATTRIBUTES_REQUEST"
    TO_SERVER_RPC_REQUEST = "TO_SERVER_RPC_REQUEST"
    RPC_CALL_FROM_SERVER_TO_DEVICE = "RPC_CALL_FROM_SERVER_TO_DEVICE"
    ACTIVITY_EVENT = "ACTIVITY_EVENT"
    INACTIVITY_EVENT = "INACTIVITY_EVENT"
    CONNECT_EVENT = "CONNECT_EVENT"
    DISCONNECT_EVENT = "DISCONNECT_EVENT"
    ENTITY_CREATED = "ENTITY_CREATED"
    ENTITY_UPDATED = "ENTITY_UPDATED"
    ENTITY_DELETED = "ENTITY_DELETED"
    ENTITY_ASSIGNED = "ENTITY_ASSIGNED"
    ENTITY_UNASSIGNED = "ENTITY_UNASSIGNED"
    ATTRIBUTES_UPDATED = "ATTRIBUTES_UPDATED"
    ATTRIBUTES_DELETED = "ATTRIBUTES_DELETED"
    TIMESERIES_UPDATED = "TIMESERIES_UPDATED"
    TIMESERIES_DELETED = "TIMESERIES_DELETED"
    ALARM = "ALARM"
    ALARM_CREATED = "ALARM_CREATED"
    ALARM_UPDATED = "ALARM_UPDATED"
    ALARM_SEVERITY_UPDATED = "ALARM_SEVERITY_UPDATED"
    ALARM_ACK = "ALARM_ACK"
    ALARM_CLEAR = "ALARM_CLEAR"
    ALARM_DELETE = "ALARM_DELETE"
    ALARM_ASSIGNED = "ALARM_ASSIGNED"
    ALARM_UNASSIGNED = "ALARM_UNASSIGNED"
    RPC_QUEUED = "RPC_QUEUED"
    RPC_SENT = "RPC_SENT"
    RPC_DELIVERED = "RPC_DELIVERED"
    RPC_SUCCESSFUL = "RPC_SUCCESSFUL"
    RPC_TIMEOUT = "RPC_TIMEOUT"
    RPC_EXPIRED = "RPC_EXPIRED"
    RPC_FAILED = "RPC_FAILED"
    RPC_DELETED = "RPC_DELETED"
    PROVISION_SUCCESS = "PROVISION_SUCCESS"
    PROVISION_FAILURE = "PROVISION_FAILURE"
    GENERATOR = "GENERATOR"
