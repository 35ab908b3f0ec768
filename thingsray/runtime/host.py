"""Logical actors inside one process: activation, mailboxes, ordering, supervision, passivation.

An actor is activated on its first message (``activate`` loads its state), handles one message
at a time in arrival order, and is passivated after ``idle_timeout_s`` without mail. An idle
actor costs its own object plus a small cell: no mailbox, no task, until mail arrives.
A mailbox holds at most ``mailbox_size`` messages; a sender waits for room (backpressure)
instead of buffering without limit. An exception in ``receive`` fails that message's future,
is logged, and restarts the actor: the next message finds a fresh instance with reloaded state.

An actor in memory may have one timer (``set_timer``): a message the host tells it later. All
timers of a host share one timer wheel (buckets of ``timer_resolution_s``, one event-loop timer
for the earliest), so a million armed actors cost a list slot each, not an event-loop handle each.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any

from thingsray.runtime.address import Address

log = logging.getLogger(__name__)


class Actor:
    """Base of logical actors. Subclasses override what they need."""

    __slots__ = ()  # a subclass with __slots__ of its own then has no __dict__

    async def activate(self) -> None:
        """Load state; called before the first message after creation or restart."""

    async def receive(self, message: Any) -> Any:
        """Handle one message; the return value answers an ask."""
        raise NotImplementedError

    async def passivate(self) -> None:
        """Flush state before the actor is dropped from memory."""

    def can_passivate(self) -> bool:
        """False keeps an idle actor in memory (it holds a live session, a pending call)."""
        return True

    def export(self) -> Any:
        """What of its live state (not in storage) the actor hands to its next host when its
        partition moves: picklable, or None for nothing. Called after its mailbox drained."""
        return None

    def resume(self, state: Any) -> None:
        """Take what ``export`` gave, on the new host, right after ``activate``."""


ActorFactory = Callable[[Address, Any], Actor]
"""Makes the actor of an address; the second argument is the host's environment (its shared
resources: a database pool, a writer), whatever the application put there."""


class Deferred:
    """Returned by ``receive`` to answer later: the actor goes on with its next message while the
    ask waits for ``future`` (a commit, a device's RPC response)."""

    __slots__ = ("future",)

    def __init__(self, future: asyncio.Future[Any]) -> None:
        self.future = future


class ActorError(Exception):
    """A message could not be handled; the text says which actor and why."""


class UnknownActorKind(ActorError):
    pass


class HostStopped(ActorError):
    pass


class _Cell:
    """An address's place in the host. Idle, it holds the actor and a time only: the mailbox, the
    worker task and the room event exist while there is mail."""

    __slots__ = ("actor", "last_used", "mailbox", "room", "timer_bucket", "timer_message", "worker")

    def __init__(self) -> None:
        self.actor: Actor | None = None
        self.mailbox: deque[tuple[Any, asyncio.Future[Any] | None]] | None = None
        self.worker: asyncio.Task[None] | None = None
        self.room: asyncio.Event | None = None
        self.last_used = time.monotonic()
        self.timer_bucket: list[Address] | None = None
        """The wheel bucket holding the actor's pending timer; None when it has none."""
        self.timer_message: Any = None


class ActorHost:
    def __init__(self, factories: Mapping[str, ActorFactory], *, env: Any = None, mailbox_size: int = 1000,
                 idle_timeout_s: float = 600.0, timer_resolution_s: float = 1.0) -> None:
        self._factories = dict(factories)
        self.env = env
        self._cells: dict[Address, _Cell] = {}
        self.mailbox_size = mailbox_size
        self.idle_timeout_s = idle_timeout_s
        self.timer_resolution_s = timer_resolution_s
        self._wheel: dict[int, list[Address]] = {}
        """Tick (loop time / resolution, rounded up) -> the bucket of addresses whose timer is due
        then; an address whose cell no longer holds that bucket was re-armed, cancelled or
        passivated, and is skipped."""
        self._wheel_handle: asyncio.TimerHandle | None = None
        self._wheel_tick: int | None = None
        self._stopped = False
        self.restarts = 0
        self.processed = 0
        self.handed_in: dict[Address, Any] = {}
        """State exported by the previous host of a moved partition, taken at activation."""

    # --- sending ----------------------------------------------------------------------------
    async def tell(self, address: Address, message: Any) -> None:
        await self._enqueue(address, message, None)

    async def ask(self, address: Address, message: Any) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        await self._enqueue(address, message, future)
        return await future

    async def enqueue(self, address: Address, message: Any, want_reply: bool) -> asyncio.Future[Any] | None:
        """Queue a message in order; return the future of its reply when ``want_reply``."""
        future = asyncio.get_running_loop().create_future() if want_reply else None
        await self._enqueue(address, message, future)
        return future

    def post(self, address: Address, message: Any) -> asyncio.Future[Any]:
        """Queue a message without waiting for room (the mailbox may go past its bound) and
        return the future of its reply. For an actor's follow-ups from inside a receive, where
        waiting for room in a full mailbox (maybe its own) could never end."""
        cell = self._cell(address)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._put(address, cell, message, future)
        return future

    def _cell(self, address: Address) -> _Cell:
        """The address's cell (created on first use); refused when stopped or of an unknown kind."""
        if self._stopped:
            raise HostStopped(f"the actor host is stopped; {address} is not reachable here")
        if address.kind not in self._factories:
            raise UnknownActorKind(f"no actor kind '{address.kind}' is registered (address {address})")
        cell = self._cells.get(address)
        if cell is None:
            cell = self._cells[address] = _Cell()
        return cell

    async def _enqueue(self, address: Address, message: Any, future: asyncio.Future[Any] | None) -> None:
        cell = self._cell(address)
        while cell.mailbox is not None and len(cell.mailbox) >= self.mailbox_size:
            if cell.room is None:
                cell.room = asyncio.Event()
            cell.room.clear()
            await cell.room.wait()
            if self._stopped:
                raise HostStopped(f"the actor host stopped while {address} was full")
        self._put(address, cell, message, future)

    def _put(self, address: Address, cell: _Cell, message: Any, future: asyncio.Future[Any] | None) -> None:
        if cell.mailbox is None:
            cell.mailbox = deque()
        cell.mailbox.append((message, future))
        cell.last_used = time.monotonic()
        if cell.worker is None:
            cell.worker = asyncio.create_task(self._drain(address, cell))

    # --- running ----------------------------------------------------------------------------
    async def _drain(self, address: Address, cell: _Cell) -> None:
        try:
            while cell.mailbox:
                if cell.actor is None and not await self._activate(address, cell):
                    return
                message, future = cell.mailbox.popleft()
                if cell.room is not None:
                    cell.room.set()
                if future is not None and future.cancelled():
                    continue
                assert cell.actor is not None
                try:
                    reply = await cell.actor.receive(message)
                except Exception as exc:
                    log.exception("actor %s failed on %s; restarting it", address, type(message).__name__)
                    self.restarts += 1
                    cell.actor = None  # the next message activates a fresh instance with reloaded state
                    if future is not None and not future.done():
                        future.set_exception(ActorError(f"{address} failed on {type(message).__name__}: {exc!r}"))
                else:
                    if isinstance(reply, Deferred):
                        _chain(reply.future, future)
                    elif future is not None and not future.done():
                        future.set_result(reply)
                self.processed += 1
            cell.last_used = time.monotonic()
        finally:
            cell.worker = None
            if cell.mailbox is not None and not cell.mailbox:
                cell.mailbox = None
            elif cell.mailbox and not self._stopped:  # mail arrived as we were leaving
                cell.worker = asyncio.create_task(self._drain(address, cell))

    async def _activate(self, address: Address, cell: _Cell) -> bool:
        actor = self._factories[address.kind](address, self.env)
        try:
            await actor.activate()
        except Exception as exc:
            log.exception("actor %s failed to activate", address)
            self._fail_mailbox(cell, ActorError(f"{address} could not be activated: {exc!r}"))
            self._cells.pop(address, None)
            return False
        state = self.handed_in.pop(address, None)
        if state is not None:
            try:
                actor.resume(state)
            except Exception:
                log.exception("actor %s failed to resume the state handed to it", address)
        cell.actor = actor
        return True

    @staticmethod
    def _fail_mailbox(cell: _Cell, error: Exception) -> None:
        while cell.mailbox:
            _, future = cell.mailbox.popleft()
            if future is not None and not future.done():
                future.set_exception(error)
        if cell.room is not None:
            cell.room.set()

    # --- timers -----------------------------------------------------------------------------
    def set_timer(self, address: Address, message: Any, delay_s: float) -> None:
        """Tell the actor at ``address`` ``message`` once ``delay_s`` has passed (late by at most
        ``timer_resolution_s``, never early). An actor has at most one timer: this replaces the
        pending one. A timer lives while its actor is in memory; passivation cancels it."""
        cell = self._cells.get(address)
        if cell is None:
            raise ActorError(f"{address} is not in memory here; only an actor in memory sets a timer")
        loop = asyncio.get_running_loop()
        tick = math.ceil((loop.time() + max(0.0, delay_s)) / self.timer_resolution_s)
        bucket = self._wheel.get(tick)
        if bucket is None:
            bucket = self._wheel[tick] = []
        bucket.append(address)
        cell.timer_bucket, cell.timer_message = bucket, message
        if self._wheel_tick is None or tick < self._wheel_tick:
            self._arm_wheel(loop, tick)

    def cancel_timer(self, address: Address) -> None:
        """Drop the pending timer of ``address``, if it has one (its wheel slot is skipped)."""
        cell = self._cells.get(address)
        if cell is not None:
            cell.timer_bucket = cell.timer_message = None

    def _arm_wheel(self, loop: asyncio.AbstractEventLoop, tick: int) -> None:
        if self._wheel_handle is not None:
            self._wheel_handle.cancel()
        self._wheel_tick = tick
        self._wheel_handle = loop.call_at(tick * self.timer_resolution_s, self._turn_wheel, loop)

    def _turn_wheel(self, loop: asyncio.AbstractEventLoop) -> None:
        """Tell every actor whose timer is due its message; re-arm for the next bucket."""
        self._wheel_handle = self._wheel_tick = None
        if self._stopped:
            return
        now = math.floor(loop.time() / self.timer_resolution_s + 1e-6)  # call_at may run a hair early
        for tick in sorted(t for t in self._wheel if t <= now):
            bucket = self._wheel.pop(tick)
            for address in bucket:
                cell = self._cells.get(address)
                if cell is None or cell.timer_bucket is not bucket:
                    continue
                message, cell.timer_bucket, cell.timer_message = cell.timer_message, None, None
                if cell.mailbox is not None and len(cell.mailbox) >= self.mailbox_size:
                    task = loop.create_task(self.tell(address, message))  # waits for room like any sender
                    task.add_done_callback(_log_timer_failure)
                else:
                    self._put(address, cell, message, None)
        if self._wheel:
            self._arm_wheel(loop, min(self._wheel))

    # --- lifecycle --------------------------------------------------------------------------
    async def passivate_idle(self, now: float | None = None) -> int:
        """Drop actors idle for longer than ``idle_timeout_s``; return how many."""
        now = time.monotonic() if now is None else now
        idle = [(a, c) for a, c in self._cells.items()
                if c.worker is None and not c.mailbox and now - c.last_used >= self.idle_timeout_s
                and (c.actor is None or c.actor.can_passivate())]
        for address, cell in idle:
            if cell.actor is not None:
                try:
                    await cell.actor.passivate()
                except Exception:
                    log.exception("actor %s failed to passivate", address)
            if cell.worker is None and not cell.mailbox:  # no mail arrived while passivating
                self._cells.pop(address, None)
        return len(idle)

    async def stop(self) -> None:
        """Finish queued work, passivate everyone, and refuse what comes after."""
        workers = [c.worker for c in self._cells.values() if c.worker is not None]
        if workers:
            await asyncio.gather(*workers, return_exceptions=True)
        self._stopped = True
        if self._wheel_handle is not None:
            self._wheel_handle.cancel()
        self._wheel.clear()
        for address, cell in list(self._cells.items()):
            self._fail_mailbox(cell, HostStopped(f"the actor host stopped before {address} ran"))
            if cell.actor is not None:
                try:
                    await cell.actor.passivate()
                except Exception:
                    log.exception("actor %s failed to passivate", address)
        self._cells.clear()

    async def hand_off(self, leaving: Callable[[Address], bool], poll_s: float = 0.005) -> dict[Address, Any]:
        """Let the actors of addresses that are ``leaving`` finish their mail, then drop them and
        return what they export. The caller stops new mail for them first (they are routed
        elsewhere); mail they post to themselves meanwhile is finished too."""
        while True:
            busy = [c.worker for a, c in self._cells.items() if leaving(a) and (c.worker is not None or c.mailbox)]
            if not busy:
                break
            workers = [w for w in busy if w is not None]
            if workers:
                await asyncio.wait(workers)
            else:
                await asyncio.sleep(poll_s)
        exported: dict[Address, Any] = {}
        for address in [a for a in self._cells if leaving(a)]:
            cell = self._cells.pop(address)
            if cell.actor is None:  # (a pending timer is skipped: the wheel finds no cell for it)
                continue
            try:
                state = cell.actor.export()
                if state is not None:
                    exported[address] = state
                await cell.actor.passivate()
            except Exception:
                log.exception("actor %s failed to hand off", address)
        return exported

    def is_active(self, address: Address) -> bool:
        cell = self._cells.get(address)
        return cell is not None and cell.actor is not None

    @property
    def active_count(self) -> int:
        return len(self._cells)


def _log_timer_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a timer message was not delivered: %r", task.exception())


def _chain(source: asyncio.Future[Any], target: asyncio.Future[Any] | None) -> None:
    """Answer ``target`` with ``source``'s outcome when it comes; a tell's outcome is only logged."""

    def done(src: asyncio.Future[Any]) -> None:
        if target is None:
            if not src.cancelled() and src.exception() is not None:
                log.warning("a deferred answer to a tell failed: %r", src.exception())
            return
        if target.done():
            return
        if src.cancelled():
            target.set_exception(ActorError("the answer was cancelled"))
        elif src.exception() is not None:
            target.set_exception(ActorError(str(src.exception()) or type(src.exception()).__name__))
        else:
            target.set_result(src.result())

    source.add_done_callback(done)
