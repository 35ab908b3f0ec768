"""The Ray actor hosting the CoAP listener (UDP) of its node."""

from __future__ import annotations

import logging
import os
from typing import Any

from thingsray.actors.env import LogTarget, log_to
from thingsray.actors.messages import Downlink
from thingsray.actors.transport_service import PlatformTransportService, connect_credentials, deliver_downlink
from thingsray.runtime import PartitionTable
from thingsray.runtime.cluster import connect_router
from thingsray.transports.coap import CoapServer

log = logging.getLogger(__name__)


class CoapTransportActor:
    """``start()`` binds and answers the port; ``push`` delivers what device actors send back to
    the client (session) a downlink names."""

    def __init__(self, name: str, host: str, port: int, database_url: str, shards: int, table: PartitionTable,
                 redis_url: str | None = None, log_target: LogTarget | None = None) -> None:
        log_to(log_target)
        self.name = name
        self.host = host
        self.port = port
        self.database_url = database_url
        self.shards = shards
        self.table = table
        self.redis_url = redis_url
        self.server: CoapServer | None = None

    async def start(self) -> int:
        """Listen (once: later calls answer the same port); the bound port. The platform calls it
        again after Ray restarts a transport process that died, which brings the listener back."""
        if self.server is not None:
            return self.port
        self.db, self.credentials = await connect_credentials(self.database_url, self.redis_url)
        router = connect_router(self.shards, self.table)
        service = PlatformTransportService(self.name, router, self.credentials, self.db)
        server = CoapServer(service, self.host, self.port)
        self.port = await server.start()
        self.server = server
        return self.port

    async def push(self, downlink: Downlink) -> Any:
        return await deliver_downlink(self.server.session(downlink.session_id) if self.server is not None else None,
                                      downlink)

    def pid(self) -> int:
        return os.getpid()

    async def stats(self) -> dict[str, Any]:
        answer: dict[str, Any] = {"transport": self.name, "port": self.port, "sessions": 0}
        if self.server is not None:
            answer.update(self.server.stats())
        return answer

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
            self.server = None
            await self.credentials.close()
            await self.db.close()
