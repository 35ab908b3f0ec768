"""The Ray actor hosting the MQTT listeners of its node (plain, and TLS when configured).
Several may share a port (SO_REUSEPORT)."""

from __future__ import annotations

import logging
from typing import Any

from thingsray.actors.env import LogTarget, log_to
from thingsray.actors.messages import Downlink
from thingsray.actors.transport_service import PlatformTransportService, connect_credentials, deliver_downlink
from thingsray.runtime import PartitionTable
from thingsray.runtime.cluster import connect_router
from thingsray.transports.mqtt import gateway
from thingsray.transports.mqtt.server import MqttServer
from thingsray.transports.mqtt.session import MqttSession
from thingsray.transports.mqtt.tls import TlsFiles, server_context

log = logging.getLogger(__name__)


class MqttTransportActor:
    """``start()`` binds and answers the ports; ``push`` delivers what device actors send back."""

    def __init__(self, name: str, host: str, port: int, database_url: str, shards: int, table: PartitionTable,
                 redis_url: str | None = None, tls: TlsFiles | None = None, tls_port: int = 8883,
                 log_target: LogTarget | None = None) -> None:
        log_to(log_target)
        self.name = name
        self.host = host
        self.port = port
        self.database_url = database_url
        self.shards = shards
        self.table = table
        self.redis_url = redis_url
        self.tls = tls
        self.tls_port: int | None = tls_port if tls is not None else None
        self.server: MqttServer | None = None
        self.tls_server: MqttServer | None = None
        self._sessions: dict[str, MqttSession] = {}

    async def start(self) -> tuple[int, int | None]:
        """Listen (once: later calls answer the same ports); the bound plain port, and the TLS
        port (None without a certificate). The platform calls it again after Ray restarts a
        transport process that died, which brings its listeners back."""
        if self.server is not None:
            return self.port, self.tls_port
        self.db, self.credentials = await connect_credentials(self.database_url, self.redis_url)
        router = connect_router(self.shards, self.table)
        service = PlatformTransportService(self.name, router, self.credentials, self.db)
        self.server = MqttServer(service, self.host, self.port)
        self.port = await self.server.start()
        if self.tls is not None:
            self.tls_server = MqttServer(service, self.host, self.tls_port or 0, ssl_context=server_context(self.tls))
            self.tls_port = await self.tls_server.start()
        return self.port, self.tls_port

    async def push(self, downlink: Downlink) -> Any:
        assert self.server is not None
        session = self.server.session(downlink.session_id)
        if session is None and self.tls_server is not None:
            session = self.tls_server.session(downlink.session_id)
        return await deliver_downlink(session, downlink)

    def pid(self) -> int:
        import os

        return os.getpid()

    async def stats(self) -> dict[str, Any]:
        servers = [s for s in (self.server, self.tls_server) if s is not None]
        return {"transport": self.name, "port": self.port, "tls_port": self.tls_port,
                "sessions": sum(s.session_count for s in servers), "gateway_refusals": dict(gateway.refusals)}

    async def stop(self) -> None:
        for server in (self.tls_server, self.server):
            if server is not None:
                await server.stop()
        await self.credentials.close()
        await self.db.close()
