"""ThingsBoard's demo data (what its ``--loadDemo`` install creates), loaded once."""

from __future__ import annotations

import uuid

import asyncpg

from thingsray.install import create_tenant_defaults, create_user, ensure_device_profile
from thingsray.storage.attributes import AttributeScope, save_attributes
from thingsray.storage.entities import new_id, now_ms

TENANT_ADMIN_EMAIL = "tenant@thingsboard.org"
CUSTOMERS = ("Customer A", "Customer B", "Customer C")
CUSTOMER_USERS = (("customer@thingsboard.org", "Customer A"), ("customerA@thingsboard.org", "Customer A"),
                  ("customerB@thingsboard.org", "Customer B"), ("customerC@thingsboard.org", "Customer C"))
DEVICES = (
    ("Test Device A1", "A1_TEST_TOKEN", "Customer A", None),
    ("Test Device A2", "A2_TEST_TOKEN", "Customer A", None),
    ("Test Device A3", "A3_TEST_TOKEN", "Customer A", None),
    ("Test Device B1", "B1_TEST_TOKEN", "Customer B", None),
    ("Test Device C1", "C1_TEST_TOKEN", "Customer C", None),
    ("DHT11 Demo Device", "DHT11_DEMO_TOKEN", None,
     "Demo device that is used in sample applications that upload data from DHT11 temperature and "
     "humidity sensor"),
    ("Raspberry Pi Demo Device", "RASPBERRY_PI_DEMO_TOKEN", None,
     "Demo device that is used in Raspberry Pi GPIO control sample application"),
)
THERMOSTATS = (
    ("Thermostat T1", "T1_TEST_TOKEN", {"latitude": 37.3948, "longitude": -122.1503,
                                        "temperatureAlarmFlag": True, "humidityAlarmFlag": True,
                                        "temperatureAlarmThreshold": 20, "humidityAlarmThreshold": 50}),
    ("Thermostat T2", "T2_TEST_TOKEN", {"latitude": 37.493801, "longitude": -121.948769,
                                        "temperatureAlarmFlag": True, "humidityAlarmFlag": True,
                                        "temperatureAlarmThreshold": 25, "humidityAlarmThreshold": 30}),
)
DASHBOARDS = ("Firmware", "Rule Engine Statistics", "Software", "Thermostats")


async def load_demo(conn: asyncpg.Connection) -> bool:
    """Create the demo tenant and everything in it; False when it is already there."""
    if await conn.fetchval("SELECT 1 FROM tb_user WHERE lower(email) = $1", TENANT_ADMIN_EMAIL):
        return False
    async with conn.transaction():
        tenant_id = new_id()
        await conn.execute("INSERT INTO tenant (id, created_time, title, region, additional_info)"
                           " VALUES ($1, $2, 'Tenant', 'Global', '{}')", tenant_id, now_ms())
        await create_tenant_defaults(conn, tenant_id)
        await create_user(conn, email=TENANT_ADMIN_EMAIL, authority="TENANT_ADMIN", password="tenant",
                          tenant_id=tenant_id)
        customers: dict[str, uuid.UUID] = {}
        for title in CUSTOMERS:
            customers[title] = new_id()
            await conn.execute("INSERT INTO customer (id, created_time, tenant_id, title, additional_info)"
                               " VALUES ($1, $2, $3, $4, '{}')", customers[title], now_ms(), tenant_id, title)
        for email, title in CUSTOMER_USERS:
            await create_user(conn, email=email, authority="CUSTOMER_USER", password="customer",
                              tenant_id=tenant_id, customer_id=customers[title])
        default_profile = await ensure_device_profile(conn, tenant_id, "default", default=True)
        for name, token, customer, description in DEVICES:
            info = {"description": description} if description else {}
            await _device(conn, tenant_id, default_profile, "default", name, token,
                          customers.get(customer or ""), info)
        thermostat = await ensure_device_profile(conn, tenant_id, "thermostat",
                                                 description="Thermostat device profile")
        for name, token, attributes in THERMOSTATS:
            device_id = await _device(conn, tenant_id, thermostat, "thermostat", name, token, None, {})
            await save_attributes(conn, device_id, AttributeScope.SERVER_SCOPE, attributes, now_ms())
        for title in DASHBOARDS:
            await conn.execute(
                "INSERT INTO dashboard (id, created_time, tenant_id, title, configuration)"
                " VALUES ($1, $2, $3, $4, $5)", new_id(), now_ms(), tenant_id, title,
                {"description": f"{title} dashboard", "widgets": {}, "states": {}, "entityAliases": {},
                 "settings": {}})
    return True


async def _device(conn: asyncpg.Connection, tenant_id: uuid.UUID, profile_id: uuid.UUID, profile_name: str,
                  name: str, token: str, customer_id: uuid.UUID | None, info: dict) -> uuid.UUID:
    device_id = new_id()
    await conn.execute(
        "INSERT INTO device (id, created_time, tenant_id, customer_id, device_profile_id, name, type,"
        " device_data, additional_info) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)",
        device_id, now_ms(), tenant_id, customer_id, profile_id, name, profile_name,
        {"configuration": {"type": "DEFAULT"}, "transportConfiguration": {"type": "DEFAULT"}}, info)
    await conn.execute(
        "INSERT INTO device_credentials (id, created_time, device_id, credentials_type, credentials_id)"
        " VALUES ($1, $2, $3, 'ACCESS_TOKEN', $4)", new_id(), now_ms(), device_id, token)
    await save_attributes(conn, device_id, AttributeScope.SERVER_SCOPE, {"active": False}, now_ms())
    return device_id
