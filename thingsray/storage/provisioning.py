"""Device provisioning (ThingsBoard's DeviceProvisionService): a device presents its profile's
provision key and secret and gets credentials, on a new device (ALLOW_CREATE_NEW_DEVICES) or on
one created beforehand (CHECK_PRE_PROVISIONED_DEVICES).

The answer is ThingsBoard's JSON, the same on MQTT, CoAP and HTTP: ``{"credentialsType",
"credentialsValue", "status": "SUCCESS"}`` (the value is the token, the certificate, or the
MQTT_BASIC object), or ``{"errorMsg", "status": "NOT_FOUND" | "FAILURE"}``.
"""

from __future__ import annotations

import enum
import json
import logging
import secrets
import string
from collections.abc import Mapping
from typing import Any

from thingsray.storage.attributes import AttributeScope, find_text, save_attributes
from thingsray.storage.credentials import (
    Credentials,
    CredentialsError,
    CredentialStore,
    CredentialsType,
    generate_access_token,
    normalize,
)
from thingsray.storage.database import Database
from thingsray.storage.devices import DeviceRow, create_device, find_device
from thingsray.storage.entities import now_ms

log = logging.getLogger(__name__)

PROVISION_STATE = "provisionState"
PROVISIONED = "provisioned"
"""The server attribute a provisioned device carries (a pre-provisioned device is provisioned once)."""


class ProvisionStatus(enum.StrEnum):
    SUCCESS = "SUCCESS"
    NOT_FOUND = "NOT_FOUND"
    FAILURE = "FAILURE"


_ERRORS = {ProvisionStatus.NOT_FOUND: "Provision data was not found!",
           ProvisionStatus.FAILURE: "Failed to provision device!"}


class ProvisionFailed(Exception):
    def __init__(self, status: ProvisionStatus, why: str) -> None:
        super().__init__(why)
        self.status = status


def refusal(status: ProvisionStatus) -> dict[str, Any]:
    return {"errorMsg": _ERRORS[status], "status": str(status)}


def answer_of(credentials: Mapping[str, Any]) -> dict[str, Any]:
    """The SUCCESS answer for stored credentials (``credentials_json`` shape)."""
    kind = credentials["credentialsType"]
    if kind == CredentialsType.MQTT_BASIC:
        value: Any = json.loads(credentials["credentialsValue"] or "{}")
    elif kind == CredentialsType.X509_CERTIFICATE:
        value = credentials["credentialsValue"]
    else:
        value = credentials["credentialsId"]
    return {"credentialsType": kind, "credentialsValue": value, "status": str(ProvisionStatus.SUCCESS)}


def requested_credentials(request: Mapping[str, Any]) -> Credentials:
    """The credentials a request asks for (ThingsBoard's ProvisionRequest credentials data): a
    token, MQTT_BASIC clientId/username/password, or an X.509 certificate in ``hash``; a random
    access token when it names none."""
    kind = request.get("credentialsType")
    if kind in (None, "", CredentialsType.ACCESS_TOKEN):
        token = request.get("token")
        if token is not None and not isinstance(token, str):
            raise CredentialsError("'token' must be a string")
        return normalize(CredentialsType.ACCESS_TOKEN, token or generate_access_token(), None)
    if kind == CredentialsType.MQTT_BASIC:
        basic = {"clientId": request.get("clientId"), "userName": request.get("username"),
                 "password": request.get("password")}
        return normalize(CredentialsType.MQTT_BASIC, None, json.dumps({k: v for k, v in basic.items() if v}))
    if kind == CredentialsType.X509_CERTIFICATE:
        return normalize(CredentialsType.X509_CERTIFICATE, None, request.get("hash"))
    raise CredentialsError(f"unsupported credentialsType {kind!r}")


def _random_name() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(20))


class DeviceProvisioning:
    def __init__(self, db: Database, credentials: CredentialStore) -> None:
        self.db = db
        self.credentials = credentials

    async def provision(self, request: Any) -> dict[str, Any]:
        try:
            device, credentials = await self._provision(request)
        except ProvisionFailed as exc:
            log.info("provisioning refused (%s): %s", exc.status, exc)
            return refusal(exc.status)
        log.info("device %s (%s) provisioned with %s", device.name, device.device_id, credentials["credentialsType"])
        return answer_of(credentials)

    async def _provision(self, request: Any) -> tuple[DeviceRow, dict[str, Any]]:
        if not isinstance(request, Mapping):
            raise ProvisionFailed(ProvisionStatus.NOT_FOUND, "the request is not a JSON object")
        key, secret = request.get("provisionDeviceKey"), request.get("provisionDeviceSecret")
        name = request.get("deviceName")
        if name is not None and not isinstance(name, str):
            raise ProvisionFailed(ProvisionStatus.FAILURE, "'deviceName' must be a string")
        if isinstance(name, str):
            name = name.strip()
            if not name and request.get("deviceName"):
                raise ProvisionFailed(ProvisionStatus.FAILURE, "the device name is blank")
        if not isinstance(key, str) or not key or not isinstance(secret, str) or not secret:
            raise ProvisionFailed(ProvisionStatus.NOT_FOUND, "no provision key or secret")
        profile = await self.db.fetchrow(
            "SELECT id, tenant_id, name, type, transport_type, provision_type, profile_data FROM device_profile"
            " WHERE provision_device_key = $1", key)
        configuration = ((profile["profile_data"] or {}).get("provisionConfiguration") or {}) if profile else {}
        expected = configuration.get("provisionDeviceSecret") if isinstance(configuration, dict) else None
        if profile is None or not expected:
            raise ProvisionFailed(ProvisionStatus.NOT_FOUND, f"no profile has provision key {key!r}")
        if not secrets.compare_digest(str(expected).encode(), secret.encode()):
            raise ProvisionFailed(ProvisionStatus.NOT_FOUND, f"wrong provision secret for key {key!r}")
        existing = await find_device(self.db, profile["tenant_id"], name) if name else None
        match profile["provision_type"]:
            case "ALLOW_CREATE_NEW_DEVICES":
                if existing is not None:
                    raise ProvisionFailed(ProvisionStatus.FAILURE, f"device {name!r} exists and cannot be provisioned "
                                                                   "once more")
                return await self._create(profile, name or _random_name(), request)
            case "CHECK_PRE_PROVISIONED_DEVICES":
                if existing is None or existing.profile_id != profile["id"]:
                    raise ProvisionFailed(ProvisionStatus.FAILURE, f"no pre-provisioned device {name!r} of profile "
                                                                   f"{profile['name']!r}")
                return await self._pre_provisioned(existing)
            case other:
                raise ProvisionFailed(ProvisionStatus.NOT_FOUND, f"the profile's provision type is {other}")

    async def _create(self, profile: Any, name: str, request: Mapping[str, Any]) -> tuple[DeviceRow, dict[str, Any]]:
        try:
            credentials = requested_credentials(request)
        except CredentialsError as exc:
            raise ProvisionFailed(ProvisionStatus.FAILURE, f"bad credentials: {exc}") from None
        try:
            async with self.db.transaction() as conn:
                info = {"gateway": True} if request.get("gateway") is True else None
                device = await create_device(conn, self.credentials, profile["tenant_id"], name, profile, credentials,
                                             additional_info=info)
                if device is None:
                    raise ProvisionFailed(ProvisionStatus.FAILURE, f"device {name!r} exists")
                await _mark_provisioned(conn, device)
        except CredentialsError as exc:  # the credentials belong to another device
            raise ProvisionFailed(ProvisionStatus.FAILURE, str(exc)) from None
        stored = await self.credentials.get_by_device(device.device_id)
        assert stored is not None
        await self.credentials.invalidate(stored["credentialsId"])
        return device, stored

    async def _pre_provisioned(self, device: DeviceRow) -> tuple[DeviceRow, dict[str, Any]]:
        async with self.db.transaction() as conn:
            state = await find_text(conn, device.device_id, AttributeScope.SERVER_SCOPE, PROVISION_STATE, lock=True)
            if state is not None and state != PROVISIONED:
                raise ProvisionFailed(ProvisionStatus.FAILURE,
                                      f"device {device.name!r} is in provision state {state!r}")
            await _mark_provisioned(conn, device)
        stored = await self.credentials.get_by_device(device.device_id)
        if stored is None:
            raise ProvisionFailed(ProvisionStatus.FAILURE, f"device {device.name!r} has no credentials")
        return device, stored


async def _mark_provisioned(conn: Any, device: DeviceRow) -> None:
    await save_attributes(conn, device.device_id, AttributeScope.SERVER_SCOPE, {PROVISION_STATE: PROVISIONED},
                          now_ms())
