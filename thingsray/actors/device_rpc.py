"""Server-side RPC of a device actor: to the device's session, or to an HTTP long poll, and back
to the REST call or rule chain that sent it. A mixin of ``DeviceState``, which holds the fields."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from thingsray.actors.messages import PushRpc, RpcOutcome, RpcStatus, ServerRpc, ToDeviceRpc
from thingsray.rules.msg import MsgType
from thingsray.runtime import Deferred
from thingsray.storage.entities import now_ms
from thingsray.transports.service import RpcRequest

if TYPE_CHECKING:
    from thingsray.actors.device import Session
    from thingsray.actors.env import ShardEnv
    from thingsray.actors.tenant import TenantView

log = logging.getLogger(__name__)


class ServerRpcs:
    __slots__ = ()
    if TYPE_CHECKING:
        env: ShardEnv
        tenant: TenantView | None
        sessions: Mapping[str, Session]
        pending_rpc: Mapping[int, tuple[asyncio.Future[RpcOutcome], bool]]
        rest_rpcs: Mapping[str, asyncio.Future[RpcOutcome]]
        rpc_polls: Mapping[int, asyncio.Future[RpcRequest | None]]
        _last_rpc_id: int
        _poll_seq: int

        def _own(self, field: str) -> dict[Any, Any]: ...
        def _forget(self, field: str, key: Any) -> Any: ...
        async def _process(self, msg_type: str, data: Any, ts: int, msg_id: Any = None, **metadata: str) -> Any: ...

    def _rpc_session(self) -> Session | None:
        return next((s for s in self.sessions.values() if s.rpc), None)

    def wait_rpc(self, timeout_ms: int) -> Deferred:
        """An HTTP long poll: the next RPC sent while no session takes RPC goes to the oldest poll."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[RpcRequest | None] = loop.create_future()
        self._poll_seq += 1
        key = self._poll_seq
        self._own("rpc_polls")[key] = waiter

        def expire() -> None:
            if self._forget("rpc_polls", key) is not None and not waiter.done():
                waiter.set_result(None)

        loop.call_later(max(0, timeout_ms) / 1000, expire)
        return Deferred(waiter)

    def _take_poll(self) -> asyncio.Future[RpcRequest | None] | None:
        for key in list(self.rpc_polls):
            waiter = self._forget("rpc_polls", key)
            if waiter is not None and not waiter.done():
                return waiter
        return None

    def rpc(self, message: ToDeviceRpc) -> RpcOutcome | Deferred:
        outcome = self._send_rpc(message)
        waiting = self._forget("rest_rpcs", message.request_uuid) if message.request_uuid else None
        if waiting is not None:  # the chain's RPC Call Request node sends a REST call's RPC
            answer(waiting, outcome)
        return outcome

    async def server_rpc(self, message: ServerRpc) -> RpcOutcome | Deferred:
        """A REST call's RPC enters the chain (ThingsBoard's RPC_CALL_FROM_SERVER_TO_DEVICE); the call
        is answered when the chain's RPC Call Request node has sent it (``rpc``) and the device has
        answered, or with TIMEOUT at its expiration. Never awaits the device inside this message."""
        if self.tenant is None:
            return RpcOutcome(RpcStatus.NOT_CONNECTED, 0)
        loop = asyncio.get_running_loop()
        waiting: asyncio.Future[RpcOutcome] = loop.create_future()
        self._own("rest_rpcs")[message.request_uuid] = waiting

        def expire() -> None:
            if self._forget("rest_rpcs", message.request_uuid) is not None and not waiting.done():
                waiting.set_result(RpcOutcome(RpcStatus.TIMEOUT, 0))

        loop.call_later(max(0, message.expiration_time - now_ms()) / 1000, expire)
        try:
            done = await self._process(MsgType.RPC_CALL_FROM_SERVER_TO_DEVICE,
                                       {"method": message.method, "params": message.params}, now_ms(),
                                       requestUUID=message.request_uuid,
                                       expirationTime=str(message.expiration_time),
                                       oneway=str(message.oneway).lower(),
                                       persistent=str(message.persistent).lower())
        except Exception:
            self._forget("rest_rpcs", message.request_uuid)
            raise
        done.add_done_callback(log_write_failure)
        return Deferred(waiting)

    def _send_rpc(self, message: ToDeviceRpc) -> RpcOutcome | Deferred:
        self._last_rpc_id += 1
        request_id = self._last_rpc_id
        if self.tenant is not None:
            self.tenant.usage.rpc_requests += 1
        session = self._rpc_session()
        poll = self._take_poll() if session is None else None
        if session is None and poll is None:
            return RpcOutcome(RpcStatus.NOT_CONNECTED, request_id)
        future: asyncio.Future[RpcOutcome] = asyncio.get_running_loop().create_future()
        self._own("pending_rpc")[request_id] = (future, message.oneway)
        request = RpcRequest(request_id, message.method, message.params, message.oneway)
        loop = asyncio.get_running_loop()
        loop.call_later(message.timeout_ms / 1000, self._finish_rpc, request_id,
                        RpcOutcome(RpcStatus.TIMEOUT, request_id))
        if poll is not None:  # the HTTP poll's answer carries it: delivered, as ThingsBoard counts it
            poll.set_result(request)
            if message.oneway:
                self._finish_rpc(request_id, RpcOutcome(RpcStatus.DELIVERED, request_id))
            return Deferred(future)
        assert session is not None

        async def send() -> None:
            delivered = await self.env.push(session.ref, PushRpc(session.ref.session_id, request))
            if delivered and message.oneway:
                self._finish_rpc(request_id, RpcOutcome(RpcStatus.DELIVERED, request_id))
            elif not delivered and message.oneway:
                self._finish_rpc(request_id, RpcOutcome(RpcStatus.TIMEOUT, request_id))

        background(send())
        loop = asyncio.get_running_loop()
        loop.call_later(message.timeout_ms / 1000, self._finish_rpc, request_id,
                        RpcOutcome(RpcStatus.TIMEOUT, request_id))
        return Deferred(future)

    def rpc_answered(self, request_id: int, payload: Any) -> None:
        self._finish_rpc(request_id, RpcOutcome(RpcStatus.SUCCESSFUL, request_id, payload))

    def rpc_delivered(self, request_id: int) -> None:
        entry = self.pending_rpc.get(request_id)
        if entry is not None and entry[1]:
            self._finish_rpc(request_id, RpcOutcome(RpcStatus.DELIVERED, request_id))

    def _finish_rpc(self, request_id: int, outcome: RpcOutcome) -> None:
        entry = self._forget("pending_rpc", request_id)
        if entry is not None and not entry[0].done():
            entry[0].set_result(outcome)



_background_tasks: set[asyncio.Task[Any]] = set()


def background(coro: Any) -> None:
    task = asyncio.get_running_loop().create_task(coro)
    _background_tasks.add(task)
    task.add_done_callback(_background_tasks.discard)


def answer(waiting: asyncio.Future[RpcOutcome], outcome: RpcOutcome | Deferred) -> None:
    """Resolve ``waiting`` with ``outcome`` now, or when its future resolves."""
    if isinstance(outcome, RpcOutcome):
        if not waiting.done():
            waiting.set_result(outcome)
        return

    def copy(done: asyncio.Future[Any]) -> None:
        if waiting.done():
            return
        if done.cancelled():
            waiting.cancel()
        elif done.exception() is not None:
            waiting.set_exception(done.exception())  # type: ignore[arg-type]
        else:
            waiting.set_result(done.result())

    outcome.future.add_done_callback(copy)




def log_write_failure(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("a device state write failed: %r", future.exception())
