"""The MQTT listener: accepts connections and runs a session for each."""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl

from thingsray.transports.mqtt.gateway import CHILD_SEPARATOR
from thingsray.transports.mqtt.session import MqttOptions, MqttSession
from thingsray.transports.service import SessionSink, TransportService

log = logging.getLogger(__name__)


class MqttServer:
    """``start()`` binds (with SO_REUSEPORT, so several transport processes share a port);
    ``stop()`` closes the listener and every session."""

    def __init__(self, service: TransportService, host: str, port: int, *, options: MqttOptions | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.service = service
        self.host = host
        self.port = port
        self.options = options or MqttOptions()
        self.ssl_context = ssl_context
        self._server: asyncio.Server | None = None
        self._sessions: dict[asyncio.Task[None], MqttSession] = {}
        self._by_id: dict[str, MqttSession] = {}

    async def start(self) -> int:
        """Listen; return the bound port (useful with port 0)."""
        self._server = await asyncio.start_server(
            self._on_connection, self.host, self.port, reuse_port=hasattr(socket, "SO_REUSEPORT"),
            ssl=self.ssl_context, limit=self.options.max_packet_size * 2, backlog=4096,
            ssl_handshake_timeout=self.options.connect_timeout_s if self.ssl_context else None)
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        task = asyncio.current_task()
        assert task is not None
        session = MqttSession(reader, writer, self.service, self.options)
        self._sessions[task] = session
        self._by_id[session.session_id] = session
        try:
            await session.run()
        finally:
            self._sessions.pop(task, None)
            self._by_id.pop(session.session_id, None)

    def session(self, session_id: str) -> SessionSink | None:
        """The live session, or gateway child session, with this id (the platform pushes to it)."""
        found = self._by_id.get(session_id)
        if found is None and CHILD_SEPARATOR in session_id:
            parent = self._by_id.get(session_id.split(CHILD_SEPARATOR, 1)[0])
            if parent is not None and parent.gateway is not None:
                return parent.gateway.child(session_id)
        return found

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for session in list(self._sessions.values()):
            await session.close("the server is stopping")
        if self._sessions:
            _, stuck = await asyncio.wait(list(self._sessions), timeout=5)
            for task in stuck:
                task.cancel()
        if self._server is not None:
            await self._server.wait_closed()
