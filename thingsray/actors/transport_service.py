"""The platform side of the transports' seam: credentials from the store, everything else as
messages to the device's actor through the router."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from typing import Any

from thingsray.actors.env import device_address
from thingsray.actors.messages import (
    ClaimRequest,
    ClientRpc,
    DeviceRpcDelivered,
    DeviceRpcResponse,
    GetAttributes,
    PostAttributes,
    PostTelemetry,
    SessionClosed,
    SessionOpened,
    SessionRef,
    SubscriptionChanged,
)
from thingsray.kv import Value
from thingsray.runtime import Address, Router
from thingsray.storage import Database
from thingsray.storage.credentials import CredentialStore, CredentialsType, DeviceAuth, sha3_hex
from thingsray.storage.entities import now_ms
from thingsray.transports.payloads import AttributeRequest, TelemetryGroup
from thingsray.transports.service import AuthError, AuthFailure, DeviceIdentity, SessionLimits, SessionSink

log = logging.getLogger(__name__)


class PlatformTransportService:
    """One per transport process. ``transport`` is the Ray actor name device actors push back to."""

    def __init__(self, transport: str, router: Router, credentials: CredentialStore, db: Database,
                 limits: SessionLimits | None = None) -> None:
        self.transport = transport
        self.router = router
        self.credentials = credentials
        self.db = db
        self.limits = limits or SessionLimits()
        self._addresses: dict[uuid.UUID, Address] = {}
        """The actor address of each connected device (formatting one per message showed in profiles)."""

    def _address(self, device: DeviceIdentity) -> Address:
        address = self._addresses.get(device.device_id)
        if address is None:
            address = self._addresses[device.device_id] = device_address(device.device_id)
        return address

    # --- authentication (spec 1.1) -------------------------------------------------------------
    async def authenticate_token(self, token: str) -> DeviceIdentity:
        auth = await self._find(token)
        if auth is None or auth.credentials_type is not CredentialsType.ACCESS_TOKEN:
            raise AuthError(AuthFailure.NOT_FOUND, "no device has this access token")
        return await self._identity(auth)

    async def authenticate_basic(self, client_id: str, username: str | None, password: str | None) -> DeviceIdentity:
        candidates = []
        if client_id and username:
            candidates.append(sha3_hex(f"{client_id}|{username}"))
        elif client_id:
            candidates.append(sha3_hex(client_id))
        if username:
            candidates.append(username)
        for credentials_id in candidates:
            auth = await self._find(credentials_id)
            if auth is None:
                continue
            if auth.credentials_type is CredentialsType.MQTT_BASIC:
                expected = json.loads(auth.credentials_value or "{}").get("password")
                if expected and expected != password:
                    raise AuthError(AuthFailure.BAD_PASSWORD, "the password does not match")
                return await self._identity(auth)
            if auth.credentials_type is CredentialsType.ACCESS_TOKEN and credentials_id == username:
                return await self._identity(auth)
        raise AuthError(AuthFailure.NOT_FOUND, "no device has these credentials")

    async def _find(self, credentials_id: str) -> DeviceAuth | None:
        try:
            return await self.credentials.find_device_by_credentials_id(credentials_id)
        except Exception as exc:
            log.exception("credentials lookup failed")
            raise AuthError(AuthFailure.UNAVAILABLE, f"credentials lookup failed: {exc!r}") from exc

    async def _identity(self, auth: DeviceAuth) -> DeviceIdentity:
        row = await self.db.fetchrow(
            "SELECT d.name, d.type, d.device_profile_id, d.customer_id, d.additional_info FROM device d"
            " WHERE d.id = $1", auth.device_id)
        if row is None:
            raise AuthError(AuthFailure.NOT_FOUND, "the device is gone")
        info = row["additional_info"] or {}
        return DeviceIdentity(device_id=auth.device_id, tenant_id=auth.tenant_id, device_name=row["name"],
                              device_type=row["type"] or "default", profile_id=row["device_profile_id"],
                              customer_id=row["customer_id"],
                              gateway=bool(isinstance(info, dict) and info.get("gateway")))

    # --- sessions ------------------------------------------------------------------------------
    def _ref(self, sink: SessionSink) -> SessionRef:
        return SessionRef(self.transport, sink.session_id)

    async def connect(self, device: DeviceIdentity, sink: SessionSink) -> None:
        await self.router.ask(device_address(device.device_id), SessionOpened(self._ref(sink), device, now_ms()))

    async def disconnect(self, device: DeviceIdentity, sink: SessionSink) -> None:
        self._addresses.pop(device.device_id, None)
        await self.router.tell(device_address(device.device_id), SessionClosed(self._ref(sink), now_ms()))

    async def subscribe(self, device: DeviceIdentity, sink: SessionSink, *, attributes: bool | None = None,
                        rpc: bool | None = None) -> None:
        await self.router.ask(device_address(device.device_id),
                              SubscriptionChanged(self._ref(sink), attributes=attributes, rpc=rpc))

    # --- uplink ---------------------------------------------------------------------------------
    async def post_telemetry(self, device: DeviceIdentity, groups: list[TelemetryGroup], msg_id: uuid.UUID,
                             received_ts: int) -> None:
        await self.router.ask(self._address(device), PostTelemetry(msg_id, received_ts, tuple(groups)))

    def post_telemetry_nowait(self, device: DeviceIdentity, groups: list[TelemetryGroup], msg_id: uuid.UUID,
                              received_ts: int) -> asyncio.Future[Any] | None:
        """``post_telemetry`` without a task per message: the future of the commit, or None when
        the router is full (then ``post_telemetry``, which waits for room)."""
        return self.router.ask_nowait(self._address(device), PostTelemetry(msg_id, received_ts, tuple(groups)))

    async def post_attributes(self, device: DeviceIdentity, values: dict[str, Value], msg_id: uuid.UUID,
                              received_ts: int) -> None:
        await self.router.ask(self._address(device), PostAttributes(msg_id, received_ts, values))

    async def get_attributes(self, device: DeviceIdentity, request: AttributeRequest) -> dict[str, dict[str, Any]]:
        answer: dict[str, dict[str, Any]] = await self.router.ask(
            device_address(device.device_id), GetAttributes(request.client_keys, request.shared_keys))
        return answer

    async def rpc_response(self, device: DeviceIdentity, request_id: int, payload: Any) -> None:
        await self.router.tell(device_address(device.device_id), DeviceRpcResponse(request_id, payload))

    async def rpc_delivered(self, device: DeviceIdentity, request_id: int) -> None:
        await self.router.tell(device_address(device.device_id), DeviceRpcDelivered(request_id))

    async def client_rpc(self, device: DeviceIdentity, method: str, params: Any) -> Any:
        """Answered by the device's rule chain (RPC Call Reply); None when no chain answers."""
        return await self.router.ask_alone(device_address(device.device_id), ClientRpc(method, params))

    async def claim(self, device: DeviceIdentity, secret_key: str | None, duration_ms: int | None) -> None:
        await self.router.tell(device_address(device.device_id), ClaimRequest(secret_key, duration_ms, now_ms()))

    def session_limits(self, device: DeviceIdentity) -> SessionLimits:
        return self.limits
