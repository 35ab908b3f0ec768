"""The sending side: messages are batched per shard and answered from the batch's replies.

One ``Router`` lives in each sending process (a transport, a Serve replica, a shard talking to
another). Per shard it keeps a bounded queue and one batch in flight, which keeps the order of
messages per sender and gives backpressure: when a shard is behind, ``tell``/``ask`` wait for
room. A batch whose shard died (the call raised) is sent again, whole and in order, once the
shard is back: delivery is at least once, and receivers recognise repeats by message id.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from thingsray.runtime.address import Address, PartitionTable
from thingsray.runtime.envelope import Batch, Envelope, Reply
from thingsray.runtime.host import ActorError
from thingsray.runtime.shard import WRONG_SHARD

log = logging.getLogger(__name__)


class ShardClient(Protocol):
    """How a router reaches one shard: a Ray actor handle in production, a ShardCore in tests."""

    async def deliver(self, batch: Batch) -> list[Reply]: ...


class ShardUnavailable(ActorError):
    """A shard stayed unreachable through every retry."""


class RemoteError(ActorError):
    """The actor answered with an error; the text is the actor side's."""


@dataclass(frozen=True, slots=True)
class RouterOptions:
    max_batch: int = 1000
    linger_s: float = 0.002
    """How long a partial batch waits for company before it leaves."""
    max_pending: int = 20_000
    """Messages queued per shard before senders wait."""
    retry_delay_s: float = 0.2
    retry_attempts: int = 200
    """Attempts per batch while its shard is down: a process restart takes a few seconds; a lost
    node, the time Ray takes to declare it dead (about 15 s by default) and a new start."""


_SHARD_CACHE = 100_000
"""Addresses whose shard a router remembers (then it starts over)."""


Refresh = Callable[[int], Awaitable[tuple[PartitionTable, Sequence[ShardClient]]]]
"""The current partition table (at least the given epoch) and a client per shard of it."""


class _Lane:
    __slots__ = ("inflight", "items", "room", "sender", "wakeup")

    def __init__(self) -> None:
        self.items: deque[tuple[Envelope, asyncio.Future[Any]]] = deque()
        self.wakeup = asyncio.Event()
        self.room = asyncio.Event()
        self.sender: asyncio.Task[None] | None = None
        self.inflight = 0

    @property
    def busy(self) -> bool:
        return bool(self.items) or self.inflight > 0


class Router:
    """``refresh`` fetches the partition table when a shard says it changed (a rebalance); without
    it a changed table fails the messages routed by the old one."""

    def __init__(self, table: PartitionTable, clients: Sequence[ShardClient],
                 options: RouterOptions | None = None, refresh: Refresh | None = None) -> None:
        self._table = table
        self._previous: PartitionTable | None = None
        """The table before the last refresh: an address whose mail is still on its way to its
        old shard keeps going there (and is refused and forwarded in order) until that lane is idle."""
        self._shards: dict[Address, int] = {}
        """shard_of per address (a hash per message otherwise), for the table above."""
        self.clients = list(clients)
        self.options = options or RouterOptions()
        self._refresh = refresh
        self._refreshing = asyncio.Lock()
        self._lanes: dict[int, _Lane] = {}
        self.retried_batches = 0
        self.forwarded = 0
        """Messages a shard refused for a changed table and this router sent to the new owner."""
        self._closed = False

    @property
    def table(self) -> PartitionTable:
        return self._table

    @table.setter
    def table(self, table: PartitionTable) -> None:
        self._table = table
        self._shards = {}

    def _shard_of(self, address: Address) -> int:
        shard = self._shards.get(address)
        if shard is None:
            shard = self._table.shard_of(address)
            if self._previous is not None:
                old = self._previous.shard_of(address)
                lane = self._lanes.get(old) if old != shard else None
                if lane is not None and lane.busy:
                    return old  # behind its earlier mail, which the old shard refuses and this router forwards
            if len(self._shards) >= _SHARD_CACHE:
                self._shards.clear()
            self._shards[address] = shard
        return shard

    async def sync(self) -> bool:
        """Ask for the table in force and take it when it is newer; whether it was."""
        if self._refresh is None:
            return False
        table, _ = await self._refresh(self._table.epoch)
        if table.epoch <= self._table.epoch:
            return False
        await self._adopt(table.epoch)
        return True

    async def _adopt(self, epoch: int) -> None:
        """Move to the table of ``epoch`` (or later) when this router's is older."""
        async with self._refreshing:
            if epoch <= self._table.epoch:
                return
            if self._refresh is None:
                raise ActorError(f"the partition table moved to epoch {epoch} and this router cannot refresh it")
            table, clients = await self._refresh(epoch)
            if table.epoch <= self._table.epoch:
                return
            log.info("partition table: epoch %d -> %d", self._table.epoch, table.epoch)
            previous = self._table
            self.table = table
            self._previous = previous
            self.clients = list(clients)

    async def tell(self, address: Address, message: Any) -> None:
        """Deliver without an answer; returns once the owning shard has queued it."""
        await (await self._submit(Envelope(address, message, ask=False)))

    async def tell_nowait(self, address: Address, message: Any) -> asyncio.Future[Any]:
        """Queue for delivery; the returned future resolves once the shard has queued it."""
        return await self._submit(Envelope(address, message, ask=False))

    async def ask(self, address: Address, message: Any) -> Any:
        """Deliver and wait for the actor's answer (bound the wait with ``asyncio.timeout``)."""
        return await (await self._submit(Envelope(address, message, ask=True)))

    async def ask_alone(self, address: Address, message: Any) -> Any:
        """``ask`` for an answer that may take long (an RPC waiting for a device or a rule chain):
        a batch of its own, sent at once and beside the shard's lane. A lane has one batch in
        flight, answered when every ask in it is, so a long ask in a lane would hold back every
        message after it. Not ordered with the lane's messages."""
        if self._closed:
            raise ActorError("the router is closed")
        envelope = Envelope(address, message, ask=True)
        for _ in range(self.options.retry_attempts):
            shard = self._table.shard_of(address)
            [reply] = await self._deliver_with_retries(shard, Batch((envelope,), self.table.epoch))
            if reply.error != WRONG_SHARD:
                break
            await self._after_refusal(reply.value)
        else:
            raise ShardUnavailable(f"no shard took {address} under a settled partition table")
        if reply.error is not None:
            raise RemoteError(reply.error)
        return reply.value

    async def _after_refusal(self, shard_epoch: int) -> None:
        """A shard refused for its table: learn a newer one, or give a shard that has not adopted
        ours yet a moment."""
        if shard_epoch > self._table.epoch:
            await self._adopt(shard_epoch)
        else:
            await asyncio.sleep(self.options.retry_delay_s / 10)

    def ask_nowait(self, address: Address, message: Any) -> asyncio.Future[Any] | None:
        """``ask`` without a coroutine: the future of the answer, or None when the shard's queue is
        full (then ``ask``, which waits for room)."""
        if self._closed:
            raise ActorError("the router is closed")
        shard = self._shard_of(address)
        lane = self._lanes.get(shard)
        if lane is not None and len(lane.items) >= self.options.max_pending:
            return None
        return self._append(shard, lane, Envelope(address, message, ask=True))

    async def broadcast(self, address: Address, message: Any) -> list[Any]:
        """Ask the actor of ``address`` on every shard (per-shard actors); answers in shard order."""
        futures = [await self._submit(Envelope(address, message, ask=True, local=True), shard)
                   for shard in range(len(self.clients))]
        return list(await asyncio.gather(*futures))

    async def _submit(self, envelope: Envelope, shard: int | None = None) -> asyncio.Future[Any]:
        if self._closed:
            raise ActorError("the router is closed")
        if shard is None:
            shard = self._shard_of(envelope.address)
        lane = self._lanes.get(shard)
        if lane is not None:
            while len(lane.items) >= self.options.max_pending:
                lane.room.clear()
                await lane.room.wait()
        return self._append(shard, lane, envelope)

    def _append(self, shard: int, lane: _Lane | None, envelope: Envelope,
                future: asyncio.Future[Any] | None = None) -> asyncio.Future[Any]:
        """Queue ``envelope`` on the shard's lane (with ``future`` when it is sent again)."""
        if lane is None:
            lane = self._lanes[shard] = _Lane()
        if future is None:
            future = asyncio.get_running_loop().create_future()
        lane.items.append((envelope, future))
        lane.wakeup.set()
        if lane.sender is None or lane.sender.done():
            lane.sender = asyncio.create_task(self._send_loop(shard, lane))
        return future

    async def _send_loop(self, shard: int, lane: _Lane) -> None:
        options = self.options
        while lane.items:
            if len(lane.items) < options.max_batch and options.linger_s > 0:
                await asyncio.sleep(options.linger_s)
            taken = [lane.items.popleft() for _ in range(min(options.max_batch, len(lane.items)))]
            lane.room.set()
            batch = Batch(tuple(envelope for envelope, _ in taken), self.table.epoch)
            lane.inflight = len(taken)
            try:
                replies = await self._deliver_with_retries(shard, batch)
            except Exception as exc:
                lane.inflight = 0
                for _, future in taken:
                    if not future.done():
                        future.set_exception(exc)
                continue
            refused: list[tuple[Envelope, asyncio.Future[Any]]] = []
            newest = 0
            for item, reply in zip(taken, replies, strict=True):
                future = item[1]
                if future.done():
                    continue
                if reply.error == WRONG_SHARD:
                    refused.append(item)
                    newest = max(newest, reply.value or 0)
                elif reply.error is not None:
                    future.set_exception(RemoteError(reply.error))
                else:
                    future.set_result(reply.value)
            if refused:
                await self._forward(shard, lane, refused, newest)
            lane.inflight = 0
        lane.wakeup.clear()

    async def _forward(self, shard: int, lane: _Lane, refused: list[tuple[Envelope, asyncio.Future[Any]]],
                       shard_epoch: int) -> None:
        """Send what ``shard`` refused for its table again, in order: what stays on this shard
        goes back to the front of its lane, the rest to the new owners' lanes."""
        try:
            await self._after_refusal(shard_epoch)
        except Exception as exc:
            for _, future in refused:
                if not future.done():
                    future.set_exception(exc)
            return
        staying = []
        for envelope, future in refused:
            target = shard if envelope.local else self._table.shard_of(envelope.address)
            if target == shard:
                staying.append((envelope, future))
            else:
                self.forwarded += 1
                self._append(target, self._lanes.get(target), envelope, future)
        lane.items.extendleft(reversed(staying))

    async def _deliver_with_retries(self, shard: int, batch: Batch) -> list[Reply]:
        attempts = self.options.retry_attempts
        for attempt in range(1, attempts + 1):
            try:
                return await self.clients[shard].deliver(batch)
            except Exception as exc:
                if not _is_transient(exc) or attempt == attempts:
                    raise ShardUnavailable(
                        f"shard {shard} did not take a batch of {len(batch.envelopes)} after {attempt} "
                        f"attempts: {exc!r}") from exc
                self.retried_batches += 1
                log.warning("shard %d failed a batch (%s); retrying in %.1fs", shard, type(exc).__name__,
                            self.options.retry_delay_s)
                await asyncio.sleep(self.options.retry_delay_s)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        self._closed = True
        senders = [lane.sender for lane in self._lanes.values() if lane.sender is not None]
        if senders:
            await asyncio.gather(*senders, return_exceptions=True)


def _is_transient(exc: Exception) -> bool:
    """A failure of the transport to the shard (it died, restarts, is unreachable), not of an actor."""
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    try:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return isinstance(exc, RayActorError | ActorDiedError | ActorUnavailableError)
