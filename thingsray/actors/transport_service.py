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
    CloseSession,
    DeviceRpcDelivered,
    DeviceRpcResponse,
    Downlink,
    GetAttributes,
    PostAttributes,
    PostTelemetry,
    PushAttributes,
    PushRpc,
    SessionClosed,
    SessionOpened,
    SessionRef,
    SubscriptionChanged,
    WaitRpc,
)
from thingsray.kv import Value
from thingsray.runtime import Address, Router
from thingsray.storage import Database, connect
from thingsray.storage.credentials import (
    Credentials,
    CredentialStore,
    CredentialsType,
    DeviceAuth,
    build_cache,
    generate_access_token,
    sha3_hex,
    trim_certificate,
)
from thingsray.storage.devices import DeviceRow, create_device, find_device, profile_for
from thingsray.storage.entities import now_ms
from thingsray.storage.provisioning import DeviceProvisioning
from thingsray.transports.payloads import AttributeRequest, TelemetryGroup
from thingsray.transports.service import (
    AuthError,
    AuthFailure,
    DeviceIdentity,
    RpcRequest,
    SessionLimits,
    SessionSink,
)

log = logging.getLogger(__name__)


async def connect_credentials(database_url: str, redis_url: str | None,
                              pool_size: int = 4) -> tuple[Database, CredentialStore]:
    """A transport process's database pool and credential store, its cache in Redis when there is
    one (else in process, told of changes by the database)."""
    redis = None
    if redis_url:
        import redis.asyncio as aioredis

        redis = aioredis.from_url(redis_url)
    db = await connect(database_url, min_size=1, max_size=pool_size)
    try:
        return db, CredentialStore(db, await build_cache(redis, database_url))
    except BaseException:
        await db.close()
        raise


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

    async def authenticate_x509(self, certificate_pem: str) -> DeviceIdentity:
        """ThingsBoard's X.509 lookup: the SHA3-256 of the certificate's PEM body, without the
        BEGIN/END lines and line breaks, is the credentials id."""
        body = trim_certificate(certificate_pem).strip()
        auth = await self._find(sha3_hex(body)) if body else None
        if auth is None or auth.credentials_type is not CredentialsType.X509_CERTIFICATE:
            raise AuthError(AuthFailure.NOT_FOUND, "no device has this client certificate")
        return await self._identity(auth)

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

    # --- devices transports create ---------------------------------------------------------------
    async def provision(self, request: Any) -> dict[str, Any]:
        try:
            return await DeviceProvisioning(self.db, self.credentials).provision(request)
        except Exception:
            log.exception("provisioning failed")
            return {"errorMsg": "Failed to provision device!", "status": "FAILURE"}

    async def gateway_device(self, gateway: DeviceIdentity, device_name: str,
                             device_type: str | None = None) -> DeviceIdentity:
        """Created with the gateway's customer, related from the gateway ("Created"), and marked with
        ``lastConnectedGateway`` as ThingsBoard's gateway connect does."""
        info = {"lastConnectedGateway": str(gateway.device_id)}
        row = await self.named_device(gateway.tenant_id, device_name, device_type, customer_id=gateway.customer_id,
                                      additional_info=info, created_by=gateway.device_id)
        if row.additional_info.get("lastConnectedGateway") != info["lastConnectedGateway"]:
            await self.db.execute(
                "UPDATE device SET additional_info = COALESCE(additional_info::jsonb, '{}'::jsonb) || $2::jsonb,"
                " version = version + 1 WHERE id = $1", row.device_id, json.dumps(info))
        return device_identity(row)

    async def tenant_device(self, tenant_id: uuid.UUID, device_name: str,
                            device_type: str | None = None) -> DeviceIdentity:
        return device_identity(await self.named_device(tenant_id, device_name, device_type))

    async def named_device(self, tenant_id: uuid.UUID, device_name: str, device_type: str | None = None, *,
                           customer_id: uuid.UUID | None = None, additional_info: dict[str, Any] | None = None,
                           created_by: uuid.UUID | None = None) -> DeviceRow:
        """The tenant's device of that name, created on first use with the profile named
        ``device_type`` (the tenant's default profile for None) and a random access token;
        ``created_by``: the gateway a new device is related from."""
        name = device_name.strip()
        if not name or len(name) > 255:
            raise ValueError(f"a device name must be 1 to 255 characters, got {device_name!r}")
        existing = await find_device(self.db, tenant_id, name)
        if existing is not None:
            return existing
        async with self.db.transaction() as conn:
            profile = await profile_for(conn, tenant_id, (device_type or "").strip() or None)
            created = await create_device(conn, self.credentials, tenant_id, name, profile,
                                          Credentials(CredentialsType.ACCESS_TOKEN, generate_access_token()),
                                          customer_id=customer_id, additional_info=additional_info)
            if created is not None and created_by is not None:
                await conn.execute(
                    "INSERT INTO relation (from_id, from_type, to_id, to_type, relation_type_group, relation_type,"
                    " additional_info, version) VALUES ($1, 'DEVICE', $2, 'DEVICE', 'COMMON', 'Created', NULL, 1)"
                    " ON CONFLICT DO NOTHING", created_by, created.device_id)
        if created is None:  # another session created it meanwhile
            created = await find_device(self.db, tenant_id, name)
            if created is None:
                raise LookupError(f"device {name!r} was created and deleted at once")
        else:
            log.info("device %s (%s) created by a transport", name, created.device_id)
        return created

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
        await self.router.ask(device_address(device.device_id), ClaimRequest(secret_key, duration_ms, now_ms()))

    async def wait_rpc(self, device: DeviceIdentity, timeout_ms: int) -> RpcRequest | None:
        request: RpcRequest | None = await self.router.ask_alone(device_address(device.device_id),
                                                                  WaitRpc(timeout_ms))
        return request

    def session_limits(self, device: DeviceIdentity) -> SessionLimits:
        return self.limits


def device_identity(row: DeviceRow) -> DeviceIdentity:
    return DeviceIdentity(device_id=row.device_id, tenant_id=row.tenant_id, device_name=row.name,
                          device_type=row.type, profile_id=row.profile_id, customer_id=row.customer_id,
                          gateway=bool(row.additional_info.get("gateway")))


async def deliver_downlink(sink: SessionSink | None, downlink: Downlink) -> Any:
    """What a transport actor does with what a device actor pushes: True once attributes are sent
    or the session closed, the RPC's delivery for an RPC, None when the session is gone."""
    if sink is None:
        return None
    match downlink:
        case PushAttributes(update=update):
            await sink.push_attributes(update)
            return True
        case PushRpc(request=request):
            return await sink.push_rpc(request)
        case CloseSession(reason=reason):
            await sink.close(reason)
            return True
    return None
