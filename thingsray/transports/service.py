"""The seam between transports and the platform.

A transport turns protocol frames into calls on a ``TransportService`` and pushes what the
platform sends back (shared-attribute updates, RPC) through the ``SessionSink`` it registered.
Transports import nothing of ``ray`` or ``actors``; the platform side implements the service.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol

from thingsray.transports.payloads import AttributeRequest, TelemetryGroup, Value


@dataclass(frozen=True, slots=True)
class DeviceIdentity:
    """Who a session speaks for, as credentials resolved it."""

    device_id: uuid.UUID
    tenant_id: uuid.UUID
    device_name: str
    device_type: str
    profile_id: uuid.UUID
    customer_id: uuid.UUID | None = None
    gateway: bool = False


class AuthFailure(enum.Enum):
    NOT_FOUND = "not_found"
    BAD_PASSWORD = "bad_password"
    UNAVAILABLE = "unavailable"


class AuthError(Exception):
    def __init__(self, failure: AuthFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class RpcRequest:
    """A server-side RPC on its way to a device."""

    request_id: int
    method: str
    params: Any
    oneway: bool = False


@dataclass(frozen=True, slots=True)
class AttributeUpdate:
    """Shared attributes changed (``values``) or deleted (``deleted``)."""

    values: dict[str, Any] = field(default_factory=dict)
    deleted: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SessionLimits:
    max_payload_size: int = 65536
    max_inflight_messages: int = 100
    messages: str | None = None
    telemetry_messages: str | None = None
    telemetry_data_points: str | None = None

    def to_json(self, gateway: bool = False) -> dict[str, Any]:
        limits = {"messages": self.messages, "telemetryMessages": self.telemetry_messages,
                  "telemetryDataPoints": self.telemetry_data_points}
        answer: dict[str, Any] = {"maxPayloadSize": self.max_payload_size,
                                  "maxInflightMessages": self.max_inflight_messages, "rateLimits": limits}
        if gateway:
            answer["gatewayRateLimits"] = dict(limits)
        return answer


class SessionSink(Protocol):
    """What the platform may do to a live device session."""

    @property
    def session_id(self) -> str: ...

    async def push_attributes(self, update: AttributeUpdate) -> None: ...

    async def push_rpc(self, request: RpcRequest) -> bool:
        """Send a server-side RPC; True when the device acknowledged it (QoS 1) or it was sent (QoS 0)."""

    async def close(self, reason: str) -> None:
        """End the session (credentials changed, device deleted, another session took over)."""


class TransportService(Protocol):
    async def authenticate_token(self, token: str) -> DeviceIdentity:
        """Raise ``AuthError`` when no device has this access token."""

    async def authenticate_basic(self, client_id: str, username: str | None, password: str | None) -> DeviceIdentity:
        """MQTT_BASIC credentials, then the username as an access token (spec 1.1)."""

    async def authenticate_x509(self, certificate_pem: str) -> DeviceIdentity:
        """The device whose X509_CERTIFICATE credentials are this client certificate (its PEM body's SHA3-256)."""

    async def provision(self, request: Any) -> dict[str, Any]:
        """A device provisioning request (the JSON body of ``/provision/request``, CoAP or HTTP
        ``/api/v1/provision``), answered with ThingsBoard's JSON: ``{"status": "SUCCESS",
        "credentialsType", "credentialsValue"}`` or ``{"status": "NOT_FOUND" | "FAILURE", "errorMsg"}``.
        Never raises for a bad request: the answer says what was wrong."""

    async def gateway_device(self, gateway: DeviceIdentity, device_name: str,
                             device_type: str | None = None) -> DeviceIdentity:
        """The gateway's child device of that name, created on first use in the gateway's tenant and
        customer with the profile named ``device_type`` (default "default"), related to the gateway
        ("Created"), as ThingsBoard's gateway connect does. Raises ``AuthError`` when the name belongs
        to a device of the tenant that is not this gateway's child and the gateway may not speak for it."""

    async def tenant_device(self, tenant_id: uuid.UUID, device_name: str,
                            device_type: str | None = None) -> DeviceIdentity:
        """The tenant's device of that name, created on first use with the profile named
        ``device_type`` (the tenant's default profile for None), as a bridge creates devices."""

    async def connect(self, device: DeviceIdentity, sink: SessionSink) -> None:
        """The device is online through ``sink``; a session it had before is closed."""

    async def disconnect(self, device: DeviceIdentity, sink: SessionSink) -> None: ...

    async def post_telemetry(self, device: DeviceIdentity, groups: list[TelemetryGroup], msg_id: uuid.UUID,
                             received_ts: int) -> None:
        """Returns once the data is durably processed (the acknowledgement may follow)."""

    async def post_attributes(self, device: DeviceIdentity, values: dict[str, Value], msg_id: uuid.UUID,
                              received_ts: int) -> None: ...

    async def get_attributes(self, device: DeviceIdentity, request: AttributeRequest) -> dict[str, dict[str, Any]]:
        """``{"client": {...}, "shared": {...}}`` with the requested keys that exist."""

    async def subscribe(self, device: DeviceIdentity, sink: SessionSink, *, attributes: bool | None = None,
                        rpc: bool | None = None) -> None:
        """Turn shared-attribute or RPC delivery to the session on (True) or off (False)."""

    async def rpc_response(self, device: DeviceIdentity, request_id: int, payload: Any) -> None: ...

    async def rpc_delivered(self, device: DeviceIdentity, request_id: int) -> None:
        """The device acknowledged the RPC request (MQTT PUBACK)."""

    async def client_rpc(self, device: DeviceIdentity, method: str, params: Any) -> Any:
        """A device-side RPC; the answer goes back to the device."""

    async def claim(self, device: DeviceIdentity, secret_key: str | None, duration_ms: int | None) -> None: ...

    async def wait_rpc(self, device: DeviceIdentity, timeout_ms: int) -> RpcRequest | None:
        """An HTTP long poll for server-side RPC (ThingsBoard's SYNC session: it does not displace the
        device's MQTT or CoAP session): the next RPC for the device, or None after ``timeout_ms``."""

    def session_limits(self, device: DeviceIdentity) -> SessionLimits: ...
