"""The aiocoap server stack under the device API: CoAP over UDP (RFC 7252) on one socket.

aiocoap does the message layer (CON retransmission, ACK, de-duplication of retransmitted
requests, piggybacked and separate responses) and the token layer (a request's pipe, observation
lifetimes). Three things it does not offer through its public interface are done here, and only
here, against its UDP transport and message manager (checked with aiocoap 0.4.17):

- the bound port (to listen on port 0);
- surviving any datagram: aiocoap drops a datagram that does not parse as CoAP with a warning, but
  lets other decoding errors (a Uri-Path that is not UTF-8) escape to the event loop's exception
  handler with a traceback each; both are counted and logged at debug level here instead;
- knowing when a confirmable notification was acknowledged (ThingsBoard marks a one-way RPC
  DELIVERED on its ACK).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any

import aiocoap
from aiocoap import Message
from aiocoap.numbers.types import Type

log = logging.getLogger(__name__)

STACK_LOGGER = "thingsray.transports.coap.aiocoap"
"""The parent of the loggers aiocoap's server contexts write to (one per stack, so each counts its own)."""
_stack_numbers = itertools.count(1)


class _UnparsableDatagrams(logging.Filter):
    """Counts aiocoap's "Ignoring unparsable message" warnings, and lets them through at debug level."""

    def __init__(self, count: Any) -> None:
        super().__init__()
        self._count = count

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Ignoring unparsable message"):
            self._count()
            log.debug("%s", record.getMessage())
            return False
        return True


class CoapStack:
    """``start`` binds the UDP socket; ``watch`` tells whether a sent CON notification was acknowledged."""

    def __init__(self, site: Any, host: str, port: int) -> None:
        self.site = site
        self.host = "::" if host in ("0.0.0.0", "") else host  # one dual-stack socket also takes IPv4
        self.port = port
        self.malformed = 0
        """Datagrams dropped because they are not CoAP or not decodable."""
        self.context: aiocoap.Context | None = None
        self._filter = _UnparsableDatagrams(self._count_malformed)
        self._logger = logging.getLogger(f"{STACK_LOGGER}.{next(_stack_numbers)}")
        self._awaiting_ack: dict[tuple[Any, int], asyncio.Future[bool]] = {}
        self._message_manager: Any = None

    def _count_malformed(self) -> None:
        self.malformed += 1

    async def start(self) -> int:
        """Listen; return the bound port (useful with port 0)."""
        self._logger.addFilter(self._filter)
        self.context = await aiocoap.Context.create_server_context(
            self.site, bind=(self.host, self.port), loggername=self._logger.name, transports=["udp6"])
        token_manager = self.context.request_interfaces[0]
        self._message_manager = token_manager.token_interface
        interface = self._message_manager.message_interface
        self._guard_datagrams(interface)
        self._watch_acknowledgements(self._message_manager)
        sock = interface.transport.get_extra_info("socket")
        _widen_receive_buffer(sock)
        self.port = sock.getsockname()[1]
        return self.port

    def _guard_datagrams(self, interface: Any) -> None:
        receive = interface.datagram_msg_received

        def guarded(data: bytes, ancdata: Any, flags: int, address: Any) -> None:
            try:
                receive(data, ancdata, flags, address)
            except Exception as exc:
                self._count_malformed()
                log.debug("dropped a datagram from %s: %r", address, exc)

        interface.datagram_msg_received = guarded

    def _watch_acknowledgements(self, manager: Any) -> None:
        remove_exchange = manager._remove_exchange

        def removed(message: Message) -> None:
            waiting = self._awaiting_ack.pop((message.remote, message.mid), None)
            remove_exchange(message)
            if waiting is not None and not waiting.done():
                waiting.set_result(message.mtype is Type.ACK)

        manager._remove_exchange = removed

    def watch(self, message: Message) -> asyncio.Future[bool] | None:
        """Called right after ``message`` went out: a future of whether the peer acknowledged (True)
        or reset (False) it; None for a message that is not a pending confirmable one."""
        if message.mtype is not Type.CON or message.mid is None or message.remote is None:
            return None
        key = (message.remote, message.mid)
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._awaiting_ack[key] = future

        def forget(done: asyncio.Future[bool]) -> None:
            if self._awaiting_ack.get(key) is done:
                del self._awaiting_ack[key]

        future.add_done_callback(forget)
        return future

    async def stop(self) -> None:
        if self.context is not None:
            await self.context.shutdown()
            self.context = None
        self._logger.removeFilter(self._filter)


RECEIVE_BUFFER_BYTES = 4 * 1024 * 1024
"""The UDP socket's receive buffer: the kernel's default (about 208 KiB) overflows under a burst of a
few hundred requests, and each dropped confirmable request waits seconds for its retransmission
(bench/PERFORMANCE.md, "CoAP and HTTP device API ingest"). The kernel caps it at net.core.rmem_max."""


def _widen_receive_buffer(sock: Any) -> None:
    import socket

    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, RECEIVE_BUFFER_BYTES)
    except OSError as exc:  # a socket that refuses keeps its default
        logging.getLogger(__name__).warning("the CoAP socket kept its receive buffer: %r", exc)
