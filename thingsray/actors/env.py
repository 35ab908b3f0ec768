"""What the actors of one shard process share: the database pool, the telemetry writer, the way
back to transports, and a way to send themselves messages later (timers)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from thingsray.actors.messages import DEVICE, Downlink, SessionRef
from thingsray.actors.tenant import TenantView
from thingsray.kv import JsonValue, Value
from thingsray.live.replica import LIVE
from thingsray.live.shard import LivePublisher, Watch
from thingsray.runtime import ActorHost, Address, PartitionTable, Router
from thingsray.storage import Database, connect
from thingsray.storage.attributes import AttributeScope
from thingsray.storage.writer import TelemetryWriter

log = logging.getLogger(__name__)


class ShardEnv:
    def __init__(self, db: Database, writer: TelemetryWriter, *, shard: int,
                 engine_options: dict[str, Any] | None = None) -> None:
        from thingsray.rules.runtime_context import EngineServices

        self.db = db
        self.writer = writer
        self.shard = shard
        self.host: ActorHost | None = None
        self.table: PartitionTable | None = None
        self._router: Router | None = None
        self._router_lock = asyncio.Lock()
        self._transports: dict[str, Any] = {}
        self._tenants: dict[uuid.UUID, TenantView] = {}
        self.engine = EngineServices(db, writer, shard=shard, send=self.send, **(engine_options or {}))
        self.live = LivePublisher()
        """Who watches what on this shard; every commit of the writer is published to them."""
        writer.on_commit = self.live.committed
        self.engine.live = self.live
        """The rule engine's services on this shard; each tenant view runs its chains with them."""

    def tenant_view(self, tenant_id: uuid.UUID) -> TenantView:
        """The tenant's state on this shard (created on first use, kept while the shard lives)."""
        view = self._tenants.get(tenant_id)
        if view is None:
            view = self._tenants[tenant_id] = TenantView(tenant_id, self)
        return view

    async def load_device(self, device_id: uuid.UUID) -> Any:
        """The device row a device actor starts from (None for a device that does not exist)."""
        return await self.db.fetchrow(
            "SELECT tenant_id, customer_id, device_profile_id, name, type FROM device WHERE id = $1", device_id)

    def bind(self, host: ActorHost, table: PartitionTable | None = None) -> None:
        self.host = host
        self.table = table
        self.engine.partitions = table  # rule nodes loading state at start keep only this shard's entities
        # generators run from their chain's start, on the shard owning their originator: start them now
        self.engine.background(self.engine.start_sources(self.tenant_view), what="starting the rule chains' generators")
        if self.shard == 0:
            self.engine.start_pruning()

    def adopt_table(self, table: PartitionTable) -> None:
        """Partitions moved (a rebalance): what this shard owns from now on. Replicas watching
        entities that moved away watch them on their new shard (the move holds the watch there
        until it is complete, so no commit there goes unpublished)."""
        self.table = table
        self.engine.partitions = table
        for entity_id in list(self.live.watchers):
            address = Address(LIVE, str(entity_id))
            if table.shard_of(address) == self.shard:
                continue
            for replica in self.live.watchers.pop(entity_id, ()):
                self.send(address, Watch(replica, True)).add_done_callback(_log_future_failure)

    def send(self, address: Address, message: Any) -> asyncio.Future[Any]:
        """Ask an actor anywhere, without waiting: its own shard's host when that is this shard
        (no bound on its mailbox, so an actor may message itself), else through a router to the
        owning shard. The future resolves with the answer."""
        if self.host is not None and (self.table is None or self.table.shard_of(address) == self.shard):
            return self.host.post(address, message)
        return asyncio.ensure_future(self._remote_ask(address, message))

    async def _remote_ask(self, address: Address, message: Any) -> Any:
        if self._router is None:
            async with self._router_lock:
                if self._router is None:
                    from thingsray.runtime.cluster import connect_router

                    assert self.table is not None
                    owners = max(self.table.owners) + 1
                    self._router = await asyncio.to_thread(connect_router, owners, self.table)
        return await self._router.ask(address, message)

    async def push(self, session: SessionRef, downlink: Downlink) -> Any:
        """Hand a downlink to the transport actor holding the session; its answer (an RPC's
        delivery) comes back. A transport that is gone answers None."""
        handle = self._transports.get(session.transport)
        try:
            if handle is None:
                import ray

                handle = self._transports[session.transport] = ray.get_actor(session.transport)
            return await handle.push.remote(downlink)
        except Exception as exc:
            self._transports.pop(session.transport, None)
            log.warning("transport %s did not take a downlink for %s: %r", session.transport,
                        session.session_id, exc)
            return None

    def later(self, delay_s: float, address: Address, message: Any) -> asyncio.TimerHandle:
        """Tell ``address`` (an actor of this shard) ``message`` after ``delay_s``."""
        def fire() -> None:
            if self.host is not None:
                task = asyncio.get_running_loop().create_task(self.host.tell(address, message))
                task.add_done_callback(_log_failure)
        return asyncio.get_running_loop().call_later(delay_s, fire)

    async def load_attributes(self, entity_id: uuid.UUID) -> dict[int, dict[str, tuple[Value, int]]]:
        """scope -> key -> (value, lastUpdateTs) of every attribute of an entity."""
        rows = await self.db.fetch(
            "SELECT a.attribute_type, d.key, a.bool_v, a.str_v, a.long_v, a.dbl_v, a.json_v::text AS json_v,"
            " a.last_update_ts FROM attribute_kv a JOIN key_dictionary d ON d.key_id = a.attribute_key"
            " WHERE a.entity_id = $1", entity_id)
        scopes: dict[int, dict[str, tuple[Value, int]]] = {int(s): {} for s in AttributeScope}
        for r in rows:
            scopes.setdefault(r["attribute_type"], {})[r["key"]] = (row_value(r), r["last_update_ts"])
        return scopes

    async def delete_attributes(self, entity_id: uuid.UUID, scope: int, keys: tuple[str, ...]) -> None:
        await self.db.execute(
            "DELETE FROM attribute_kv a USING key_dictionary d WHERE a.entity_id = $1 AND a.attribute_type = $2"
            " AND d.key_id = a.attribute_key AND d.key = ANY($3::varchar[])", entity_id, scope, list(keys))
        self.live.attributes_deleted(entity_id, scope, keys)

    async def poll(self, topic: str) -> tuple[bool, list[Any]]:
        """A replica's live updates (``ShardActor.poll``): answered once there are some, or empty
        after a while."""
        return await self.live.poll(topic)

    async def close(self) -> None:
        for view in self._tenants.values():
            await view.rules.close()
        await self.engine.close()
        if self._router is not None:
            await self._router.close()
        await self.db.close()


def row_value(row: Any) -> Value:
    """The value of a typed row (bool_v, str_v, long_v, dbl_v, json_v as text)."""
    for column in ("bool_v", "long_v", "dbl_v", "str_v"):
        if row[column] is not None:
            return row[column]
    return JsonValue(row["json_v"]) if row["json_v"] is not None else ""


def _log_failure(task: asyncio.Task[Any]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a timer message was not delivered: %r", task.exception())


def configure_logging(level: str, log_file: str | None = None) -> None:
    """thingsray's loggers in a Ray worker process: at the platform's level, to ``log_file``
    (rotated: 10 MiB x 5) and to stderr (the worker's log file in Ray's session directory).
    Without it a worker's root logger drops everything below WARNING, rule chains' Log nodes
    included."""
    logger = logging.getLogger("thingsray")
    logger.setLevel(level.upper())
    if any(getattr(h, "_thingsray", False) for h in logger.handlers):
        return
    handlers: list[logging.Handler] = [logging.StreamHandler()]
    if log_file:
        from logging.handlers import RotatingFileHandler
        from pathlib import Path

        Path(log_file).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(RotatingFileHandler(log_file, maxBytes=10 * 1024 * 1024, backupCount=5))
    for handler in handlers:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        handler._thingsray = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
    logger.propagate = False


@dataclass(frozen=True, slots=True)
class LogTarget:
    """Where a transport process logs: the platform's level, and its file in ``<data dir>/logs``."""

    level: str
    file: str | None = None


def log_to(target: LogTarget | None) -> None:
    """Called first in a transport actor's constructor, so a process Ray restarts logs there again."""
    if target is not None:
        configure_logging(target.level, target.file)


def make_setup(database_url: str, pool_size: int = 4, log_level: str = "INFO",
               log_dir: str | None = None, engine_options: dict[str, Any] | None = None) -> Callable[[int], Any]:
    """The shard setup (runs in the shard process): logging (to ``log_dir/shard-<n>.log`` when
    given), a pool and a writer of its own."""
    async def setup(shard: int) -> ShardEnv:
        configure_logging(log_level, f"{log_dir}/shard-{shard}.log" if log_dir else None)
        db = await connect(database_url, min_size=1, max_size=pool_size)
        env = ShardEnv(db, TelemetryWriter(db), shard=shard, engine_options=engine_options)
        await env.engine.listen(database_url, env._tenants)
        return env

    return setup


def device_address(device_id: uuid.UUID | str) -> Address:
    return Address(DEVICE, str(device_id))


def _log_future_failure(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.warning("moving a watch to its new shard failed: %r", future.exception())
