"""A TransportService kept in memory: the platform side of the seam, for testing transports alone."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

from thingsray.transports.payloads import AttributeRequest, TelemetryGroup, Value, to_json_value
from thingsray.transports.service import (
    AttributeUpdate,
    AuthError,
    AuthFailure,
    DeviceIdentity,
    RpcRequest,
    SessionLimits,
    SessionSink,
)


def device(name: str) -> DeviceIdentity:
    return DeviceIdentity(device_id=uuid.uuid4(), tenant_id=uuid.uuid4(), device_name=name, device_type="default",
                          profile_id=uuid.uuid4())


@dataclass
class MemoryService:
    tokens: dict[str, DeviceIdentity] = field(default_factory=dict)
    basic: dict[str, tuple[DeviceIdentity, str | None]] = field(default_factory=dict)
    telemetry: list[tuple[str, TelemetryGroup]] = field(default_factory=list)
    attributes: dict[str, dict[str, Value]] = field(default_factory=dict)
    shared: dict[str, dict[str, Any]] = field(default_factory=dict)
    sessions: dict[uuid.UUID, SessionSink] = field(default_factory=dict)
    rpc_sinks: dict[uuid.UUID, SessionSink] = field(default_factory=dict)
    attribute_sinks: dict[uuid.UUID, SessionSink] = field(default_factory=dict)
    rpc_responses: dict[int, Any] = field(default_factory=dict)
    delivered: list[int] = field(default_factory=list)
    claims: list[tuple[str, str | None, int | None]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)
    rpc_answered: asyncio.Event = field(default_factory=asyncio.Event)
    tenant_devices: dict[tuple[uuid.UUID, str], DeviceIdentity] = field(default_factory=dict)
    certificates: dict[str, DeviceIdentity] = field(default_factory=dict)
    """PEM (stripped) -> the X.509 device it authenticates."""
    provision_requests: list[Any] = field(default_factory=list)
    children: dict[str, DeviceIdentity] = field(default_factory=dict)
    """Gateway child devices by name, as ``gateway_device`` created them."""
    gateway_lookups: list[str] = field(default_factory=list)
    foreign: set[str] = field(default_factory=set)
    """Names of devices a gateway may not speak for (``gateway_device`` refuses them)."""

    def add_token(self, token: str, name: str) -> DeviceIdentity:
        self.tokens[token] = device(name)
        return self.tokens[token]

    def add_gateway(self, token: str, name: str) -> DeviceIdentity:
        identity = device(name)
        self.tokens[token] = DeviceIdentity(identity.device_id, identity.tenant_id, name, "gateway",
                                           identity.profile_id, gateway=True)
        return self.tokens[token]

    def add_basic(self, client_id: str, username: str | None, password: str | None, name: str) -> DeviceIdentity:
        key = client_id if not username else f"{client_id}|{username}"
        identity = device(name)
        self.basic[hashlib.sha3_256(key.encode()).hexdigest()] = (identity, password)
        return identity

    async def authenticate_token(self, token: str) -> DeviceIdentity:
        if token not in self.tokens:
            raise AuthError(AuthFailure.NOT_FOUND, "unknown token")
        return self.tokens[token]

    async def authenticate_basic(self, client_id: str, username: str | None, password: str | None) -> DeviceIdentity:
        key = client_id if not username else f"{client_id}|{username}"
        found = self.basic.get(hashlib.sha3_256(key.encode()).hexdigest())
        if found is not None:
            identity, expected = found
            if expected is not None and expected != password:
                raise AuthError(AuthFailure.BAD_PASSWORD, "wrong password")
            return identity
        if username:
            return await self.authenticate_token(username)
        raise AuthError(AuthFailure.NOT_FOUND, "no credentials")

    async def authenticate_x509(self, certificate_pem: str) -> DeviceIdentity:
        found = self.certificates.get(certificate_pem.strip())
        if found is None:
            raise AuthError(AuthFailure.NOT_FOUND, "no device has this certificate")
        return found

    async def provision(self, request: Any) -> dict[str, Any]:
        self.provision_requests.append(request)
        if request.get("provisionDeviceKey") != "KEY" or request.get("provisionDeviceSecret") != "SECRET":
            return {"errorMsg": "Provision data was not found!", "status": "NOT_FOUND"}
        token = f"token-of-{request.get('deviceName')}"
        self.add_token(token, str(request.get("deviceName")))
        return {"credentialsType": "ACCESS_TOKEN", "credentialsValue": token, "status": "SUCCESS"}

    async def gateway_device(self, gateway: DeviceIdentity, device_name: str,
                             device_type: str | None = None) -> DeviceIdentity:
        self.gateway_lookups.append(device_name)
        name = device_name.strip()
        if name == gateway.device_name:
            return gateway  # the platform finds the tenant's device of that name
        if name in self.foreign:
            raise AuthError(AuthFailure.NOT_FOUND, f"{name} is not a device this gateway may speak for")
        if name not in self.children:
            self.children[name] = DeviceIdentity(uuid.uuid4(), gateway.tenant_id, name, device_type or "default",
                                                 uuid.uuid4(), gateway.customer_id)
        return self.children[name]

    async def tenant_device(self, tenant_id: uuid.UUID, device_name: str,
                            device_type: str | None = None) -> DeviceIdentity:
        key = (tenant_id, device_name)
        if key not in self.tenant_devices:
            self.tenant_devices[key] = DeviceIdentity(device_id=uuid.uuid4(), tenant_id=tenant_id,
                                                      device_name=device_name, device_type=device_type or "default",
                                                      profile_id=uuid.uuid4())
        return self.tenant_devices[key]

    async def connect(self, device: DeviceIdentity, sink: SessionSink) -> None:
        previous = self.sessions.get(device.device_id)
        self.sessions[device.device_id] = sink
        self.events.append(f"connect {device.device_name}")
        if previous is not None and previous is not sink:
            await previous.close("another session of the device connected")

    async def disconnect(self, device: DeviceIdentity, sink: SessionSink) -> None:
        if self.sessions.get(device.device_id) is sink:
            del self.sessions[device.device_id]
        self.events.append(f"disconnect {device.device_name}")

    async def post_telemetry(self, device: DeviceIdentity, groups: list[TelemetryGroup], msg_id: uuid.UUID,
                             received_ts: int) -> None:
        self.telemetry.extend((device.device_name, g) for g in groups)

    async def post_attributes(self, device: DeviceIdentity, values: dict[str, Value], msg_id: uuid.UUID,
                              received_ts: int) -> None:
        self.attributes.setdefault(device.device_name, {}).update(values)

    async def get_attributes(self, device: DeviceIdentity, request: AttributeRequest) -> dict[str, dict[str, Any]]:
        client = {k: to_json_value(v) for k, v in self.attributes.get(device.device_name, {}).items()}
        shared = dict(self.shared.get(device.device_name, {}))
        if request.client_keys is not None or request.shared_keys is not None:
            client = {k: v for k, v in client.items() if k in (request.client_keys or ())}
            shared = {k: v for k, v in shared.items() if k in (request.shared_keys or ())}
        return {"client": client, "shared": shared}

    async def subscribe(self, device: DeviceIdentity, sink: SessionSink, *, attributes: bool | None = None,
                        rpc: bool | None = None) -> None:
        for flag, sinks in ((attributes, self.attribute_sinks), (rpc, self.rpc_sinks)):
            if flag is True:
                sinks[device.device_id] = sink
            elif flag is False:
                sinks.pop(device.device_id, None)

    async def rpc_response(self, device: DeviceIdentity, request_id: int, payload: Any) -> None:
        self.rpc_responses[request_id] = payload
        self.rpc_answered.set()

    async def rpc_delivered(self, device: DeviceIdentity, request_id: int) -> None:
        self.delivered.append(request_id)

    async def client_rpc(self, device: DeviceIdentity, method: str, params: Any) -> Any:
        if method == "fail":
            raise ValueError("no such method")
        if method == "silent":
            return None  # no rule chain answered
        return {"echo": params, "method": method}

    async def claim(self, device: DeviceIdentity, secret_key: str | None, duration_ms: int | None) -> None:
        self.claims.append((device.device_name, secret_key, duration_ms))

    def session_limits(self, device: DeviceIdentity) -> SessionLimits:
        return SessionLimits()

    # --- what a test does as the platform ---------------------------------------------------
    async def share(self, identity: DeviceIdentity, values: dict[str, Any]) -> None:
        self.shared.setdefault(identity.device_name, {}).update(values)
        sink = self.attribute_sinks.get(identity.device_id)
        if sink is not None:
            await sink.push_attributes(AttributeUpdate(values))

    async def call(self, identity: DeviceIdentity, request_id: int, method: str, params: Any) -> bool:
        sink = self.rpc_sinks[identity.device_id]
        return await sink.push_rpc(RpcRequest(request_id, method, params))
