"""Devices that transports create themselves: provisioned devices, a gateway's children, a bridge's
devices. The REST API creates devices with authorization and the audit log around the same rows."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import asyncpg

from thingsray.install import ensure_default_device_profile, ensure_device_profile
from thingsray.storage.credentials import Credentials, CredentialStore
from thingsray.storage.database import Database
from thingsray.storage.entities import new_id, now_ms


@dataclass(frozen=True, slots=True)
class DeviceRow:
    """What a transport needs of a device to speak for it."""

    device_id: uuid.UUID
    tenant_id: uuid.UUID
    name: str
    type: str
    profile_id: uuid.UUID
    customer_id: uuid.UUID | None
    additional_info: dict[str, Any]

    @classmethod
    def of(cls, row: asyncpg.Record) -> DeviceRow:
        info = row["additional_info"]
        return cls(row["id"], row["tenant_id"], row["name"], row["type"] or "default", row["device_profile_id"],
                   row["customer_id"], info if isinstance(info, dict) else {})


_COLUMNS = "id, tenant_id, name, type, device_profile_id, customer_id, additional_info"


async def find_device(db: Database | asyncpg.Connection, tenant_id: uuid.UUID, name: str) -> DeviceRow | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM device WHERE tenant_id = $1 AND name = $2", tenant_id, name)
    return None if row is None else DeviceRow.of(row)


async def profile_for(conn: asyncpg.Connection, tenant_id: uuid.UUID, profile_name: str | None) -> asyncpg.Record:
    """The tenant's profile of that name (created with defaults when missing, as ThingsBoard's
    gateway and device creation by type do); the default profile for no name."""
    if profile_name:
        profile_id = await ensure_device_profile(conn, tenant_id, profile_name)
    else:
        profile_id = await ensure_default_device_profile(conn, tenant_id)
    row = await conn.fetchrow("SELECT id, name, type, transport_type FROM device_profile WHERE id = $1", profile_id)
    assert row is not None
    return row


def device_data(profile: Mapping[str, Any], data: Any) -> dict[str, Any]:
    """deviceData kept in step with the profile's type and transport type, as ThingsBoard does; an
    SNMP device's transport configuration gets ThingsBoard's defaults (``SnmpConfigError`` when
    what it has is not valid)."""
    out = dict(data) if isinstance(data, dict) else {}
    configuration = out.get("configuration")
    if not isinstance(configuration, dict) or configuration.get("type") != profile["type"]:
        out["configuration"] = {"type": profile["type"]}
    transport = out.get("transportConfiguration")
    if not isinstance(transport, dict) or transport.get("type") != profile["transport_type"]:
        out["transportConfiguration"] = {"type": profile["transport_type"]}
    if profile["transport_type"] == "SNMP":
        from thingsray.transports.snmp.config import SnmpDeviceConfig

        out["transportConfiguration"] = SnmpDeviceConfig.from_json(out["transportConfiguration"]).to_json()
    return out


async def create_device(conn: asyncpg.Connection, credentials_store: CredentialStore, tenant_id: uuid.UUID,
                        name: str, profile: asyncpg.Record, credentials: Credentials, *,
                        customer_id: uuid.UUID | None = None,
                        additional_info: dict[str, Any] | None = None) -> DeviceRow | None:
    """Insert a device with its credentials in the caller's transaction; None when the tenant
    already has a device of that name (the caller decides what that means)."""
    device_id = new_id()
    row = await conn.fetchrow(
        "INSERT INTO device (id, created_time, tenant_id, customer_id, name, type, device_profile_id, device_data,"
        f" additional_info) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (tenant_id, name) DO NOTHING"
        f" RETURNING {_COLUMNS}",
        device_id, now_ms(), tenant_id, customer_id, name, profile["name"], profile["id"], device_data(profile, None),
        additional_info or {})
    if row is None:
        return None
    await credentials_store.create(conn, device_id, credentials)
    return DeviceRow.of(row)
