"""The Ray actor polling SNMP devices (one per node; each polls its share of the devices).

ThingsBoard polls every device whose profile's transport type is SNMP, by configuration: the
device's credentials play no part. The actor reads those devices and their profiles from
PostgreSQL at start and every ``rescan_s`` seconds after, and hands the set to the poller, which
starts the new devices, restarts the changed ones and stops the deleted ones.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from thingsray.actors.env import LogTarget, log_to
from thingsray.actors.messages import Downlink
from thingsray.actors.transport_service import PlatformTransportService, deliver_downlink
from thingsray.runtime import PartitionTable
from thingsray.runtime.cluster import connect_router
from thingsray.storage import Database, connect
from thingsray.storage.credentials import CredentialStore, InProcessCredentialsCache
from thingsray.transports.service import DeviceIdentity
from thingsray.transports.snmp import SnmpConfigError, SnmpDevice, SnmpDeviceConfig, SnmpPoller, SnmpProfileConfig

log = logging.getLogger(__name__)

SNMP_DEVICES_SQL = """
SELECT d.id, d.tenant_id, d.name, d.type, d.device_profile_id, d.customer_id, d.additional_info,
       d.device_data -> 'transportConfiguration' AS device_transport,
       p.profile_data -> 'transportConfiguration' AS profile_transport
FROM device d JOIN device_profile p ON p.id = d.device_profile_id
WHERE p.transport_type = 'SNMP'
"""


def snmp_transport_name(index: int) -> str:
    """The Ray actor name of a node's SNMP transport; device actors push to its sessions through it."""
    return f"thingsray-snmp-{index}"


def owner_of(device_id: uuid.UUID, count: int) -> int:
    """Which of ``count`` SNMP transports polls the device (a stable spread, as ThingsBoard's
    SnmpTransportBalancingService spreads devices over its SNMP transports)."""
    return device_id.int % count


async def load_snmp_devices(db: Database, index: int = 0, count: int = 1) -> tuple[list[SnmpDevice], dict[str, str]]:
    """This transport's SNMP devices, and the devices left out because a configuration is invalid
    (by id, with why: rows written before configurations were checked, or by hand)."""
    devices: list[SnmpDevice] = []
    invalid: dict[str, str] = {}
    profiles: dict[uuid.UUID, SnmpProfileConfig | str] = {}
    for row in await db.fetch(SNMP_DEVICES_SQL):
        if owner_of(row["id"], count) != index:
            continue
        profile = profiles.get(row["device_profile_id"])
        if profile is None:
            try:
                profile = SnmpProfileConfig.from_json(row["profile_transport"])
            except SnmpConfigError as exc:
                profile = f"its profile's SNMP transport configuration is not valid: {exc}"
            profiles[row["device_profile_id"]] = profile
        if isinstance(profile, str):
            invalid[str(row["id"])] = profile
            continue
        try:
            config = SnmpDeviceConfig.from_json(row["device_transport"] or {"type": "SNMP"})
        except SnmpConfigError as exc:
            invalid[str(row["id"])] = f"its SNMP transport configuration is not valid: {exc}"
            continue
        info = row["additional_info"] or {}
        identity = DeviceIdentity(device_id=row["id"], tenant_id=row["tenant_id"], device_name=row["name"],
                                  device_type=row["type"] or "default", profile_id=row["device_profile_id"],
                                  customer_id=row["customer_id"],
                                  gateway=bool(isinstance(info, dict) and info.get("gateway")))
        devices.append(SnmpDevice(identity, profile, config))
    return devices, invalid


class SnmpTransportActor:
    """``start()`` loads the devices and starts polling; ``push`` delivers what device actors send back."""

    def __init__(self, name: str, database_url: str, shards: int, table: PartitionTable, index: int = 0,
                 count: int = 1, rescan_s: float = 5.0, log_target: LogTarget | None = None) -> None:
        log_to(log_target)
        self.name = name
        self.database_url = database_url
        self.shards = shards
        self.table = table
        self.index = index
        self.count = count
        self.rescan_s = rescan_s
        self.poller: SnmpPoller | None = None
        self.invalid: dict[str, str] = {}
        self.rescans = 0
        self._scanner: asyncio.Task[None] | None = None
        self._starting = asyncio.Lock()

    async def start(self) -> int:
        """Start polling (once: later calls answer at once); how many devices are polled. The
        platform calls it again after Ray restarts the process, which brings the polls back."""
        async with self._starting:
            if self.poller is None:
                await self._start()
            assert self.poller is not None
            return self.poller.device_count

    async def _start(self) -> None:
        self.db = await connect(self.database_url, min_size=1, max_size=2)
        poller = None
        try:
            router = connect_router(self.shards, self.table)
            # SNMP devices are polled by configuration; the credential store only completes the service
            credentials = CredentialStore(self.db, InProcessCredentialsCache())
            poller = SnmpPoller(PlatformTransportService(self.name, router, credentials, self.db))
            await self._rescan(poller)
        except BaseException:  # the next start() begins afresh
            if poller is not None:
                await poller.stop()
            await self.db.close()
            raise
        self.poller = poller
        self._scanner = asyncio.create_task(self._rescan_forever())

    async def _rescan(self, poller: SnmpPoller) -> None:
        devices, invalid = await load_snmp_devices(self.db, self.index, self.count)
        for device_id, why in invalid.items():
            if self.invalid.get(device_id) != why:
                log.warning("SNMP device %s is not polled: %s", device_id, why)
        self.invalid = invalid
        await poller.sync(devices)
        self.rescans += 1

    async def _rescan_forever(self) -> None:
        while True:
            await asyncio.sleep(self.rescan_s)
            try:
                assert self.poller is not None
                await self._rescan(self.poller)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a while: the next rescan tries again
                log.exception("reading the SNMP devices failed")

    async def rescan(self) -> int:
        """Read the devices now rather than at the next period; how many are polled."""
        assert self.poller is not None
        await self._rescan(self.poller)
        return self.poller.device_count

    async def push(self, downlink: Downlink) -> Any:
        return await deliver_downlink(self.poller.session(downlink.session_id) if self.poller is not None else None,
                                      downlink)

    def pid(self) -> int:
        import os

        return os.getpid()

    async def stats(self) -> dict[str, Any]:
        poller = self.poller
        return {"transport": self.name, "devices": poller.device_count if poller else 0, "rescans": self.rescans,
                "invalid": dict(self.invalid), "failing": poller.failing() if poller else {},
                **(poller.stats.as_dict() if poller else {})}

    async def stop(self) -> None:
        if self._scanner is not None:
            self._scanner.cancel()
            await asyncio.gather(self._scanner, return_exceptions=True)
            self._scanner = None
        if self.poller is not None:
            await self.poller.stop()
            self.poller = None
            await self.db.close()
