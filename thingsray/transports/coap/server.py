"""The CoAP listener: the aiocoap stack on a UDP port, the device API resource behind it, and the
clients (sessions) its observations opened."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Coroutine
from typing import Any

from aiocoap.pipe import Pipe

from thingsray.transports.coap.resource import CoapCounters, CoapOptions, DeviceApiResource
from thingsray.transports.coap.session import CoapClient, Observation, ObservedFeature
from thingsray.transports.coap.stack import CoapStack
from thingsray.transports.service import DeviceIdentity, TransportService

log = logging.getLogger(__name__)


class CoapServer:
    """``start()`` binds; ``stop()`` ends every observation and closes the socket."""

    def __init__(self, service: TransportService, host: str, port: int, *, options: CoapOptions | None = None) -> None:
        self.service = service
        self.options = options or CoapOptions()
        self.counters = CoapCounters()
        self.resource = DeviceApiResource(service, self, self.options, self.counters)
        self.stack = CoapStack(self.resource, host, port)
        self._clients: dict[tuple[uuid.UUID, str], CoapClient] = {}
        self._by_id: dict[str, CoapClient] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def port(self) -> int:
        return self.stack.port

    async def start(self) -> int:
        """Listen; return the bound port (useful with port 0)."""
        return await self.stack.start()

    # --- clients ---------------------------------------------------------------------------
    async def observe(self, device: DeviceIdentity, pipe: Pipe, feature: ObservedFeature
                      ) -> tuple[CoapClient, Observation]:
        key = (device.device_id, pipe.request.remote.hostinfo)
        while True:
            client = self._clients.get(key)
            if client is None:
                client = CoapClient(key, device, self.service, acks=self.stack, spawn=self._spawn,
                                    on_closed=self._closed, rpc_ack_timeout_s=self.options.rpc_ack_timeout_s)
                self._clients[key] = client
                self._by_id[client.session_id] = client
            observation = await client.observe(feature, pipe)
            if observation is not None:
                return client, observation

    def _closed(self, client: CoapClient) -> None:
        if self._clients.get(client.key) is client:
            del self._clients[client.key]
        self._by_id.pop(client.session_id, None)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def session(self, session_id: str) -> CoapClient | None:
        """The live client with this session id (the platform pushes to it)."""
        return self._by_id.get(session_id)

    @property
    def session_count(self) -> int:
        return len(self._by_id)

    def stats(self) -> dict[str, Any]:
        return {"port": self.port, "sessions": self.session_count, "requests": self.counters.requests,
                "inflight": self.counters.inflight, "answers": dict(self.counters.answers),
                "malformed_datagrams": self.stack.malformed}

    async def stop(self) -> None:
        for client in list(self._by_id.values()):
            await client.close("the server is stopping")
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=5)
        await self.stack.stop()
