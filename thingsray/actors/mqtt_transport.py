"""The Ray actor hosting an MQTT listener on its node. Several may share a port (SO_REUSEPORT)."""

from __future__ import annotations

import logging
from typing import Any

from thingsray.actors.messages import CloseSession, Downlink, PushAttributes, PushRpc
from thingsray.actors.transport_service import PlatformTransportService
from thingsray.runtime import PartitionTable
from thingsray.runtime.cluster import connect_router
from thingsray.storage import connect
from thingsray.storage.credentials import CredentialStore, build_cache
from thingsray.transports.mqtt.server import MqttServer
from thingsray.transports.mqtt.session import MqttSession

log = logging.getLogger(__name__)


class MqttTransportActor:
    """``start()`` binds and answers the port; ``push`` delivers what device actors send back."""

    def __init__(self, name: str, host: str, port: int, database_url: str, shards: int, table: PartitionTable,
                 redis_url: str | None = None) -> None:
        self.name = name
        self.host = host
        self.port = port
        self.database_url = database_url
        self.shards = shards
        self.table = table
        self.redis_url = redis_url
        self.server: MqttServer | None = None
        self._sessions: dict[str, MqttSession] = {}

    async def start(self) -> int:
        redis = None
        if self.redis_url:
            import redis.asyncio as aioredis

            redis = aioredis.from_url(self.redis_url)
        self.db = await connect(self.database_url, min_size=1, max_size=4)
        self.credentials = CredentialStore(self.db, await build_cache(redis, self.database_url))
        router = connect_router(self.shards, self.table)
        service = PlatformTransportService(self.name, router, self.credentials, self.db)
        self.server = MqttServer(service, self.host, self.port)
        self.port = await self.server.start()
        return self.port

    async def push(self, downlink: Downlink) -> Any:
        assert self.server is not None
        session = self.server.session(downlink.session_id)
        if session is None:
            return None
        match downlink:
            case PushAttributes(update=update):
                await session.push_attributes(update)
                return True
            case PushRpc(request=request):
                return await session.push_rpc(request)
            case CloseSession(reason=reason):
                await session.close(reason)
                return True
        return None

    async def stats(self) -> dict[str, Any]:
        return {"transport": self.name, "port": self.port,
                "sessions": self.server.session_count if self.server else 0}

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await self.credentials.close()
        await self.db.close()
