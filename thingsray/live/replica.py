"""The watching side, in each Serve replica: the sinks of its sockets by entity, the watches it
holds on the shards, and one long poll per shard that brings their updates."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from thingsray.live.shard import Watch
from thingsray.live.updates import LiveUpdate
from thingsray.runtime import Address, Router

log = logging.getLogger(__name__)

Sink = Callable[[LiveUpdate], None]
LIVE = "live"  # the shards' actor kind of watches (thingsray.actors.live)
RETRY_S = 0.5
SHARDS_CHECK_S = 2.0
"""How often a replica asks whether shards were added."""


class LiveSubscriptions:
    """One per replica. ``shards`` are the shard actor handles (their ``poll``), in index order."""

    def __init__(self, router: Router, shards: list[Any], replica: str | None = None) -> None:
        self.router = router
        self.shards = shards
        self.replica = replica or f"replica-{uuid.uuid4().hex}"
        self._sinks: dict[uuid.UUID, list[Sink]] = {}
        self._pollers: list[asyncio.Task[None]] = []
        self._closed = False
        self.delivered = 0

    async def subscribe(self, entity_id: uuid.UUID, sink: Sink) -> Callable[[], Awaitable[None]]:
        """From now on every committed update of ``entity_id`` reaches ``sink``; the returned
        coroutine function stops it (call it exactly once, also when the socket broke)."""
        self._start()
        sinks = self._sinks.setdefault(entity_id, [])
        sinks.append(sink)
        if len(sinks) == 1:
            try:
                await self.router.ask(Address(LIVE, str(entity_id)), Watch(self.replica, True))
            except BaseException:  # failed or cancelled: leave nothing registered behind
                sinks.remove(sink)
                if not sinks and self._sinks.get(entity_id) is sinks:
                    del self._sinks[entity_id]
                raise

        async def unsubscribe() -> None:
            current = self._sinks.get(entity_id)
            if current is None or sink not in current:
                return
            current.remove(sink)
            if not current:
                del self._sinks[entity_id]
                if not self._closed:
                    try:
                        await self.router.tell(Address(LIVE, str(entity_id)), Watch(self.replica, False))
                    except Exception as exc:  # the shard forgets the watch when this replica stops polling
                        log.debug("unwatching %s failed: %r", entity_id, exc)

        return unsubscribe

    @property
    def watched(self) -> int:
        return len(self._sinks)

    def _start(self) -> None:
        if not self._pollers and not self._closed:
            loop = asyncio.get_running_loop()
            self._pollers = [loop.create_task(self._poll(index, shard)) for index, shard in enumerate(self.shards)]
            self._pollers.append(loop.create_task(self._follow_shards()))

    async def _current_handle(self, index: int, shard: Any) -> Any:
        """The shard's handle now: a shard started anew (its node died) answers under its name."""
        clients = self.router.clients
        lookup = getattr(clients[index], "lookup", None) if index < len(clients) else None
        if lookup is None:
            return shard
        try:
            return await lookup()
        except Exception as exc:
            log.debug("looking up shard %d failed: %r", index, exc)
            return shard

    async def _follow_shards(self) -> None:
        """Poll the shards a rebalance adds too (the watches of entities moved there follow them)."""
        while not self._closed:
            await asyncio.sleep(SHARDS_CHECK_S)
            try:
                await self.router.sync()
            except Exception as exc:
                log.debug("checking for new shards failed: %r", exc)
                continue
            clients = self.router.clients
            for index in range(len(self.shards), len(clients)):
                shard = getattr(clients[index], "handle", None)
                if shard is None:
                    continue
                self.shards.append(shard)
                self._pollers.append(asyncio.get_running_loop().create_task(self._poll(index, shard)))

    async def _poll(self, index: int, shard: Any) -> None:
        lost = False
        while not self._closed:
            try:
                known, updates = await shard.poll.remote(self.replica)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if not lost:
                    log.warning("live updates from shard %d interrupted (%r); watching again", index, exc)
                lost = True
                await asyncio.sleep(RETRY_S)
                shard = await self._current_handle(index, shard)
                continue
            if lost or not known:  # the shard restarted and forgot our watches: renew them all
                lost = False
                if self._sinks:
                    await self._rewatch()
            for update in updates:
                for sink in list(self._sinks.get(update.entity_id, ())):
                    try:
                        sink(update)
                    except Exception:
                        log.exception("a live update sink failed")
                    self.delivered += 1

    async def _rewatch(self) -> None:
        for entity_id in list(self._sinks):
            try:
                await self.router.ask(Address(LIVE, str(entity_id)), Watch(self.replica, True))
            except Exception as exc:
                log.warning("watching %s again failed: %r", entity_id, exc)

    async def close(self) -> None:
        self._closed = True
        for task in self._pollers:
            task.cancel()
        if self._pollers:
            await asyncio.gather(*self._pollers, return_exceptions=True)
