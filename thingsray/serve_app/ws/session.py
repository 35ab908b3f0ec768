"""One WebSocket's session: who it is, what it watches, and the bounded queue of what it is sent.

Authentication: the ``?token=`` of the URL, else an ``authCmd`` as the first message within
``auth_timeout`` (ThingsBoard's close codes: no authCmd 1008, a bad token in it 1007, a bad token in
the URL 1011, no message in time 1008). The token's expiry closes the socket (1011, "Token has
expired"), and every subscription checks again that the login was not revoked meanwhile.

Every subscription is authorized on its entity (READ_TELEMETRY / READ_ATTRIBUTES); a refusal is an
error update (errorCode 3) on that command only. Live updates come from a ``LiveSource``: the
session subscribes before it reads the current values, holds what arrives during the read, and
sends it after the first update, so a value committed in between arrives twice rather than never.

Query commands (ENTITY_DATA, ENTITY_COUNT, ALARM_DATA, ALARM_COUNT) run under the user's query scope
(a tenant's entities, or a customer's); their live side is ``query_subs``.

Updates wait in a queue of ``send_queue`` messages; a client that does not read them is closed
(1008, "Max pending updates limit reached!") instead of being buffered without bound. However the
socket ends, every subscription is removed.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from thingsray.live import ATTRIBUTES, TIMESERIES, LiveUpdate
from thingsray.serve_app.access import load
from thingsray.serve_app.errors import ApiError, AuthenticationFailed, BadRequest, NotFound, PermissionDenied
from thingsray.serve_app.permissions import Operation, Resource
from thingsray.serve_app.routers.entity_query import query_scope
from thingsray.serve_app.routers.telemetry import ENTITY_TABLES, MAX_INTERVALS
from thingsray.serve_app.security import Principal, SessionState
from thingsray.serve_app.services import Services
from thingsray.serve_app.ws import protocol, queries, query_subs
from thingsray.serve_app.ws.protocol import (
    CmdError,
    CmdType,
    ErrorCode,
    HistoryCmd,
    Message,
    PayloadError,
    Points,
    SubscriptionCmd,
)
from thingsray.storage.attributes import AttributeScope
from thingsray.storage.entity_query import (
    EntityQueryEngine,
    QueryError,
    QueryScope,
    parse_count_query,
    parse_data_query,
)
from thingsray.storage.timeseries import Aggregation, AttributeRepository, HistoryQuery, TimeseriesRepository

log = logging.getLogger(__name__)

AUTH_TIMEOUT_S = 10.0
"""ThingsBoard's ``server.ws.auth_timeout_ms``."""
CLOSE_TIMEOUT_S = 5.0
MAX_REASON_BYTES = 123


class CloseCode(enum.IntEnum):
    NORMAL = 1000
    BAD_DATA = 1007
    POLICY_VIOLATION = 1008
    SERVER_ERROR = 1011


class Endpoint(enum.Enum):
    TELEMETRY = "/api/ws/plugins/telemetry"
    GENERAL = "/api/ws"


class SocketGone(Exception):
    """The client is no longer there (raised by a ``Socket`` on send)."""


class Socket(Protocol):
    """The transport under a session (a Starlette WebSocket in routes.py)."""

    async def receive(self) -> str | bytes | None:
        """The next message; None once the client closed."""

    async def send_text(self, text: str) -> None:
        """Raises ``SocketGone`` when the client is gone."""

    async def close(self, code: int, reason: str) -> None: ...


Sink = Callable[[LiveUpdate], None]


class LiveSource(Protocol):
    """``thingsray.live.replica.LiveSubscriptions``: ``sink`` is called on this loop for every
    committed update of the entity and must not block."""

    async def subscribe(self, entity_id: uuid.UUID, sink: Sink) -> Callable[[], Awaitable[None]]: ...


@dataclass(frozen=True, slots=True)
class Limits:
    max_subscriptions: int = 100
    send_queue: int = 1000
    max_cmds: int = 100
    auth_timeout: float = AUTH_TIMEOUT_S

    @classmethod
    def of(cls, services: Services) -> Limits:
        settings = services.settings
        return cls(settings.ws_max_subscriptions, settings.ws_send_queue, settings.ws_max_cmds)


@dataclass(eq=False)
class Subscription:
    cmd: SubscriptionCmd
    entity_id: uuid.UUID
    keys: frozenset[str] | None
    pending: list[LiveUpdate] | None = field(default_factory=list)
    """Updates that arrived while the first update was being read; None once it was sent."""
    unsubscribe: Callable[[], Awaitable[None]] | None = None

    def render(self, update: LiveUpdate) -> dict[str, Any] | None:
        """The update this subscription sends for ``update``, or None when nothing in it is watched."""
        data: Points = {}
        if self.cmd.type is CmdType.TIMESERIES:
            if update.kind != TIMESERIES:
                return None
        elif update.kind != ATTRIBUTES or (self.cmd.scope is not None and update.scope != self.cmd.scope):
            return None
        for key, points in update.values.items():
            if self.keys is None or key in self.keys:
                data[key] = [[ts, protocol.value_text(value)] for ts, value in points]
        for key in update.deleted:  # ThingsBoard reports a deleted attribute as ts 0, value ""
            if self.keys is None or key in self.keys:
                data.setdefault(key, []).append([0, ""])
        return protocol.data_update(self.cmd.cmd_id, data) if data else None


class WsSession:
    def __init__(self, services: Services, socket: Socket, endpoint: Endpoint, *, token: str | None = None,
                 live: LiveSource | None = None, limits: Limits | None = None) -> None:
        self.services = services
        self.socket = socket
        self.endpoint = endpoint
        self.live = live
        self.limits = limits or Limits.of(services)
        self.principal: Principal | None = None
        self.subscriptions: dict[int, Subscription] = {}
        self.queries: dict[int, query_subs.QuerySub] = {}
        """ENTITY_DATA, ALARM_DATA, ALARM_COUNT subscriptions by cmdId."""
        self._url_token = token
        self._claims: dict[str, Any] = {}
        self._queue: asyncio.Queue[str] = asyncio.Queue(maxsize=self.limits.send_queue)
        self._closed = asyncio.Event()
        self._close_started = False
        self._expiry: asyncio.TimerHandle | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.close_code: int | None = None
        self.close_reason: str | None = None

    # --- lifecycle -------------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the socket until either side closes it; everything it held is released."""
        reader = asyncio.create_task(self._read_loop())
        writer = asyncio.create_task(self._write_loop())
        closed = asyncio.create_task(self._closed.wait())
        try:
            await asyncio.wait({reader, writer, closed}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reader, writer, closed, *self._tasks):
                task.cancel()
            for task in (reader, writer):
                try:
                    await task
                except asyncio.CancelledError:
                    pass
            await self._release()

    async def close(self, code: CloseCode, reason: str = "") -> None:
        """Close the socket once with ``code``; later calls do nothing."""
        if self._close_started:
            return
        self._close_started = True
        self.close_code, self.close_reason = int(code), reason
        if self._expiry is not None:
            self._expiry.cancel()
        encoded = reason.encode()[:MAX_REASON_BYTES].decode(errors="ignore")
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT_S):
                await self.socket.close(int(code), encoded)
        except (SocketGone, TimeoutError) as exc:
            log.debug("closing a websocket (%s %s) did not complete: %r", int(code), reason, exc)
        finally:
            self._closed.set()

    def _close_soon(self, code: CloseCode, reason: str) -> None:
        """Close from a synchronous context (a live update sink, a timer)."""
        if self._close_started:
            return
        task = asyncio.get_running_loop().create_task(self.close(code, reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _release(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
        subscriptions, self.subscriptions = list(self.subscriptions.values()), {}
        for sub in subscriptions:
            await _unsubscribe(sub)
        watches, self.queries = list(self.queries.values()), {}
        for watch in watches:
            await watch.close()
        self._closed.set()

    # --- reading ---------------------------------------------------------------------------------
    async def _read_loop(self) -> None:
        try:
            if self._url_token is not None and not await self._authenticate(self._url_token, CloseCode.SERVER_ERROR):
                return
            while not self._close_started:
                if self.principal is None:
                    try:
                        async with asyncio.timeout(self.limits.auth_timeout):
                            text = await self.socket.receive()
                    except TimeoutError:
                        await self.close(CloseCode.POLICY_VIOLATION)
                        return
                else:
                    text = await self.socket.receive()
                if text is None:
                    return
                await self.handle(text)
        except Exception:
            log.exception("websocket session failed")
            await self.close(CloseCode.SERVER_ERROR, "Internal server error")

    async def handle(self, text: str | bytes) -> None:
        """One client message."""
        try:
            message = self._parse(text)
        except PayloadError as exc:
            if self.principal is None:
                await self.close(CloseCode.BAD_DATA, str(exc))
            else:
                self.send(protocol.error_update(protocol.PARSE_ERROR_ID, ErrorCode.BAD_REQUEST,
                                                protocol.FAILED_TO_PARSE))
            return
        if self.principal is None:
            if message.token is None:
                await self.close(CloseCode.POLICY_VIOLATION, "Auth cmd is missing")
                return
            if not await self._authenticate(message.token, CloseCode.BAD_DATA):
                return
        for cmd in message.cmds:
            if self._close_started:
                return
            await self._run_cmd(cmd)

    def _parse(self, text: str | bytes) -> Message:
        if self.endpoint is Endpoint.TELEMETRY:
            return protocol.parse_plugin_message(text, self.limits.max_cmds)
        return protocol.parse_general_message(text, self.limits.max_cmds)

    async def _authenticate(self, token: str, failure: CloseCode) -> bool:
        try:
            claims = self.services.tokens.decode(token)
            principal = self.services.tokens.principal(claims)
            await self._check_session(principal, claims)
        except ApiError as exc:
            await self.close(failure, exc.message)
            return False
        self.principal, self._claims = principal, claims
        delay = max(0.0, int(claims["exp"]) - time.time())
        self._expiry = asyncio.get_running_loop().call_later(
            delay, self._close_soon, CloseCode.SERVER_ERROR, "Token has expired")
        return True

    async def _check_session(self, principal: Principal, claims: dict[str, Any]) -> None:
        if int(claims["exp"]) <= time.time():
            raise AuthenticationFailed("Token has expired")
        issued = int(claims.get("issuedMs", claims.get("iat", 0) * 1000))
        state = await self.services.revocations.state(principal.user_id, principal.session_id, issued)
        if state is SessionState.USER_DISABLED:
            raise AuthenticationFailed("User account is not active")
        if state is not SessionState.VALID:
            raise AuthenticationFailed("Token is not valid anymore")

    # --- commands --------------------------------------------------------------------------------
    async def _run_cmd(self, cmd: Any) -> None:
        try:
            match cmd:
                case CmdError():
                    raise cmd
                case queries.UnsubscribeCmd():
                    await self._end_query(cmd.cmd_id)
                case queries.EntityDataCmd() | queries.EntityCountCmd() | queries.AlarmDataCmd() | \
                        queries.AlarmCountCmd():
                    await self._query(cmd)
                case SubscriptionCmd(unsubscribe=True):
                    await self._unsubscribe(cmd)
                case SubscriptionCmd():
                    await self._subscribe(cmd)
                case HistoryCmd():
                    await self._history(cmd)
        except CmdError as error:
            self.send(error.update())
        except Exception:
            log.exception("websocket command %s failed", cmd)
            kind = _QUERY_KINDS.get(type(cmd))
            self.send(CmdError(cmd.cmd_id, ErrorCode.INTERNAL_ERROR, protocol.FAILED_TO_FETCH_DATA, kind).update())

    async def _check_alive(self, cmd_id: int, kind: CmdType | None = None) -> None:
        """The login is still valid (else the socket closes and the command fails)."""
        assert self.principal is not None
        try:
            await self._check_session(self.principal, self._claims)
        except AuthenticationFailed as exc:
            await self.close(CloseCode.SERVER_ERROR, exc.message)
            raise CmdError(cmd_id, ErrorCode.UNAUTHORIZED, exc.message, kind) from None

    # --- query commands (ENTITY_DATA, ENTITY_COUNT, ALARM_DATA, ALARM_COUNT) ------------------------
    async def _query(self, cmd: queries.QueryCmd) -> None:
        kind = _QUERY_KINDS[type(cmd)]
        await self._check_alive(cmd.cmd_id, kind)
        assert self.principal is not None
        try:
            scope = query_scope(self.principal)
        except PermissionDenied:
            raise CmdError(cmd.cmd_id, ErrorCode.UNAUTHORIZED, "You don't have permission to perform this operation!",
                           kind) from None
        try:
            await self._run_query(cmd, kind, scope)
        except QueryError as exc:
            await self._end_query(cmd.cmd_id)
            raise CmdError(cmd.cmd_id, ErrorCode.BAD_REQUEST, str(exc), kind) from None
        except CmdError as error:
            await self._end_query(cmd.cmd_id)
            error.kind = error.kind or kind
            raise
        except Exception:
            await self._end_query(cmd.cmd_id)
            raise

    async def _run_query(self, cmd: queries.QueryCmd, kind: CmdType, scope: QueryScope) -> None:
        engine = EntityQueryEngine(self.services.db)
        if isinstance(cmd, queries.EntityCountCmd):  # counted once: entity changes do not re-count it
            count = await engine.count(parse_count_query(cmd.query), scope)
            self.send(queries.count_update(CmdType.ENTITY_COUNT, cmd.cmd_id, count))
            return
        previous = self.queries.pop(cmd.cmd_id, None)
        if previous is not None:  # the same cmdId again: the new command replaces the old one
            await previous.close()
        if len(self.subscriptions) + len(self.queries) >= self.limits.max_subscriptions:
            raise CmdError(cmd.cmd_id, ErrorCode.BAD_REQUEST,
                           f"Max subscriptions per session limit reached: {self.limits.max_subscriptions}", kind)
        sub: query_subs.EntityDataSub | query_subs.AlarmDataSub | query_subs.AlarmCountSub
        if isinstance(cmd, queries.EntityDataCmd):
            if cmd.query is not None:
                parsed = parse_data_query(cmd.query, self.services.settings.max_page_size)
            elif isinstance(previous, query_subs.EntityDataSub):
                parsed = previous.query  # a latestCmd / tsCmd / historyCmd for the query sent before
            else:
                raise CmdError(cmd.cmd_id, ErrorCode.BAD_REQUEST, "Query is empty!", kind)
            sub = query_subs.EntityDataSub(self, cmd.cmd_id, scope, parsed)
            self.queries[cmd.cmd_id] = sub
            await sub.run(cmd, _history_query)
        elif isinstance(cmd, queries.AlarmDataCmd):
            sub = query_subs.AlarmDataSub(self, cmd, scope)
            self.queries[cmd.cmd_id] = sub
            await sub.run()
        else:
            sub = query_subs.AlarmCountSub(self, cmd, scope)
            self.queries[cmd.cmd_id] = sub
            await sub.run()

    async def _end_query(self, cmd_id: int) -> None:
        sub = self.queries.pop(cmd_id, None)
        if sub is not None:
            await sub.close()

    def background(self, work: Any, what: str) -> None:
        """Run ``work`` beside the session (ended with it); a failure is logged."""
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)

        def done(finished: asyncio.Task[Any]) -> None:
            self._tasks.discard(finished)
            if not finished.cancelled() and finished.exception() is not None:
                log.error("websocket: %s failed", what, exc_info=finished.exception())

        task.add_done_callback(done)

    def overflow(self) -> None:
        self._overflow()

    async def _authorize(self, cmd_id: int, entity_type: str, entity_id: str, operation: Operation) -> uuid.UUID:
        """The entity's id, if the principal may ``operation`` on it (else a CmdError)."""
        assert self.principal is not None
        try:
            await self._check_session(self.principal, self._claims)
        except AuthenticationFailed as exc:
            await self.close(CloseCode.SERVER_ERROR, exc.message)
            raise CmdError(cmd_id, ErrorCode.UNAUTHORIZED, exc.message) from None
        table = ENTITY_TABLES.get(entity_type.upper())
        if table is None:
            raise CmdError(cmd_id, ErrorCode.BAD_REQUEST,
                           f"Unsupported entity type: {entity_type[:64]}; use one of {', '.join(ENTITY_TABLES)}")
        try:
            parsed = uuid.UUID(entity_id)
        except ValueError:
            raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, f"Invalid UUID string: {entity_id[:64]}") from None
        try:
            await load(self.services, self.principal, table, Resource(table.entity_type), parsed, operation)
        except (NotFound, PermissionDenied):
            # another tenant's entity and a missing one look alike: neither is this caller's
            raise CmdError(cmd_id, ErrorCode.UNAUTHORIZED, ErrorCode.UNAUTHORIZED.default_message or "") from None
        except BadRequest as exc:
            raise CmdError(cmd_id, ErrorCode.BAD_REQUEST, exc.message) from None
        return parsed

    async def _subscribe(self, cmd: SubscriptionCmd) -> None:
        operation = Operation.READ_TELEMETRY if cmd.type is CmdType.TIMESERIES else Operation.READ_ATTRIBUTES
        entity_id = await self._authorize(cmd.cmd_id, cmd.entity_type, cmd.entity_id, operation)
        if self.live is None:
            raise CmdError(cmd.cmd_id, ErrorCode.INTERNAL_ERROR,
                           "Live updates need the platform's shards, which this server cannot reach")
        replaced = self.subscriptions.pop(cmd.cmd_id, None)
        if replaced is not None:  # the same cmdId again: the new command replaces the old one
            await _unsubscribe(replaced)
        if len(self.subscriptions) >= self.limits.max_subscriptions:
            raise CmdError(cmd.cmd_id, ErrorCode.BAD_REQUEST,
                           f"Max subscriptions per session limit reached: {self.limits.max_subscriptions}")
        sub = Subscription(cmd, entity_id, frozenset(cmd.keys) if cmd.keys is not None else None)
        subscribing = asyncio.ensure_future(self.live.subscribe(entity_id, self._sink(sub)))
        try:
            sub.unsubscribe = await asyncio.shield(subscribing)
        except asyncio.CancelledError:  # the socket closed meanwhile: undo what the source did
            undo = await subscribing
            await undo()
            raise
        self.subscriptions[cmd.cmd_id] = sub
        try:
            first = await self._current(sub)
        except BaseException:
            if self.subscriptions.get(cmd.cmd_id) is sub:
                del self.subscriptions[cmd.cmd_id]
            await _unsubscribe(sub)
            raise
        if self.subscriptions.get(cmd.cmd_id) is not sub:
            return  # unsubscribed or replaced meanwhile
        self.send(protocol.data_update(cmd.cmd_id, first))
        held, sub.pending = sub.pending or [], None
        for update in held:
            rendered = sub.render(update)
            if rendered is not None:
                self.send(rendered)

    def _sink(self, sub: Subscription) -> Sink:
        def sink(update: LiveUpdate) -> None:
            if self._close_started:
                return
            if sub.pending is not None:
                sub.pending.append(update)
                if len(sub.pending) > self.limits.send_queue:
                    self._overflow()
                return
            rendered = sub.render(update)
            if rendered is not None:
                self.send(rendered)

        return sink

    async def _current(self, sub: Subscription) -> Points:
        cmd = sub.cmd
        if cmd.type is CmdType.ATTRIBUTES:
            scope = AttributeScope[cmd.scope] if cmd.scope else None
            entries = await AttributeRepository(self.services.db).find(sub.entity_id, scope, cmd.keys)
            data: Points = {}
            for entry in entries:
                data.setdefault(entry.key, []).append([entry.last_update_ts, protocol.value_text(entry.value)])
            return data
        repo = TimeseriesRepository(self.services.db)
        if cmd.keys is not None and cmd.time_window > 0:
            query = _history_query(cmd.cmd_id, cmd.keys, cmd.start_ts, cmd.start_ts + cmd.time_window,
                                   cmd.interval, cmd.limit, cmd.agg)
            points = await repo.history(sub.entity_id, query)
        else:
            points = await repo.latest(sub.entity_id, cmd.keys)
        return _points(points)

    async def _unsubscribe(self, cmd: SubscriptionCmd) -> None:
        if not cmd.entity_id:  # as ThingsBoard: an unsubscribe without an entity ends them all
            subscriptions, self.subscriptions = list(self.subscriptions.values()), {}
            for sub in subscriptions:
                await _unsubscribe(sub)
            return
        sub = self.subscriptions.pop(cmd.cmd_id, None)
        if sub is not None:
            await _unsubscribe(sub)

    async def _history(self, cmd: HistoryCmd) -> None:
        entity_id = await self._authorize(cmd.cmd_id, cmd.entity_type, cmd.entity_id, Operation.READ_TELEMETRY)
        query = _history_query(cmd.cmd_id, cmd.keys, cmd.start_ts, cmd.end_ts, cmd.interval, cmd.limit, cmd.agg)
        points = await TimeseriesRepository(self.services.db).history(entity_id, query)
        self.send(protocol.data_update(cmd.cmd_id, _points(points)))

    # --- writing ---------------------------------------------------------------------------------
    def send(self, update: dict[str, Any]) -> None:
        """Queue an update; a full queue closes the socket (the client does not keep up)."""
        if self._close_started:
            return
        try:
            self._queue.put_nowait(protocol.encode(update))
        except asyncio.QueueFull:
            self._overflow()

    def _overflow(self) -> None:
        log.info("closing a websocket of %s: %d updates are waiting for it",
                 self.principal.email if self.principal else "?", self._queue.qsize())
        self._close_soon(CloseCode.POLICY_VIOLATION, "Max pending updates limit reached!")

    async def _write_loop(self) -> None:
        while True:
            text = await self._queue.get()
            try:
                await self.socket.send_text(text)
            except SocketGone:
                return

    @property
    def queued(self) -> int:
        return self._queue.qsize()


_QUERY_KINDS: dict[type, CmdType] = {queries.EntityDataCmd: CmdType.ENTITY_DATA,
                                     queries.EntityCountCmd: CmdType.ENTITY_COUNT,
                                     queries.AlarmDataCmd: CmdType.ALARM_DATA,
                                     queries.AlarmCountCmd: CmdType.ALARM_COUNT}


async def _unsubscribe(sub: Subscription) -> None:
    unsubscribe, sub.unsubscribe = sub.unsubscribe, None
    if unsubscribe is not None:
        await unsubscribe()


def _points(points: list[Any]) -> Points:
    data: Points = {}
    for point in points:
        data.setdefault(point.key, []).append([point.ts, protocol.value_text(point.value)])
    return data


def _history_query(cmd_id: int, keys: tuple[str, ...], start_ts: int, end_ts: int, interval: int, limit: int,
                   agg: Aggregation) -> HistoryQuery:
    if interval < 1:
        agg = Aggregation.NONE  # as ThingsBoard: no interval, no aggregation
    elif agg is not Aggregation.NONE and -(-(end_ts - start_ts) // interval) > MAX_INTERVALS:
        raise CmdError(cmd_id, ErrorCode.BAD_REQUEST,
                       f"Incorrect TsKvQuery. Number of intervals is to high - {-(-(end_ts - start_ts) // interval)}. "
                       "Please increase 'interval' parameter for your query or reduce the time range of the query.")
    return HistoryQuery(keys, start_ts, end_ts, interval, limit, agg, True)
