"""JavaScript rule-node scripts on V8 (mini-racer).

A script is the BODY of a function, as ThingsBoard has it (``function f(msg, metadata, msgType)
{ <body> }``). It is checked once at compile time with ``new Function(...argNames, body)`` in an
isolate that never runs user code, so a syntax error is reported with V8's message and the body's
line and column, and a body cannot close the function and run code of its own at top level.

Where scripts run:
- One V8 isolate (a ``MiniRacer``) per sandbox: per tenant when the service is bound to one, so a
  tenant's scripts never share globals, prototypes or memory with another tenant's. V8 runs each
  isolate on a native thread of its own; mini-racer's Python side (task submission, callbacks)
  lives on one engine thread with its own asyncio loop. Callers on any loop hand calls to it and
  await the answer, so their event loop never waits for V8.
- Calls into one isolate run one batch at a time: the calls waiting when the isolate becomes free
  go into V8 together (one round trip instead of one each), each in its own try/catch, so one
  script's exception is its own. A batch must finish within one time limit.
- A run past the time limit is terminated; one past the isolate's heap limit is stopped by V8.
  Either way the isolate is discarded (scripts are defined again lazily in the next one) and each
  call of the batch runs again alone, with the whole limit, in a fresh isolate; a call that fails
  alone fails. So only the script that loops or allocates without end fails, and nothing a runaway
  left behind (a promise job that loops after its call answered, a heap full of garbage it still
  references) fails another script: at worst that script's call waits one time limit more.
- Values cross as JSON text (orjson on our side, JSON.parse/JSON.stringify in V8), as
  ThingsBoard's wrapper does.
"""

from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import weakref
from collections import deque
from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson
from py_mini_racer import JSEvalException, JSOOMException, MiniRacer

from thingsray.rules.script.errors import ScriptError, ScriptRuntimeError

_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*\Z")
_WRAPPER_LINES = 2
"""``new Function`` compiles ``(function anonymous(<args>\\n) {\\n<body>\\n})``: body line 1 is line 3."""

# Installed in every sandbox before any user code. It keeps the compiled functions in a closure
# (not reachable from scripts), captures the builtins it relies on, and removes what would let a
# script run code after its call returned (timers, Atomics.waitAsync, finalizers, wasm).
# ``run`` answers, per call, [0, resultJson] or [1, errorText, bodyLine (0: unknown)].
_SETUP = r"""
(() => {
  const G = globalThis, Fn = Function, ErrorType = Error, parse = JSON.parse, stringify = JSON.stringify;
  const apply = Reflect.apply, fns = new Map(), where = /, <anonymous>:(\d+):\d+\)/;
  const failure = (e) => {
    let text = "uncaught exception", line = 0;
    try { text = String(e); } catch (_) {}
    try {
      if (e instanceof ErrorType) {
        const m = where.exec(String(e.stack));
        if (m !== null) line = Number(m[1]) - 2;
      }
    } catch (_) {}
    return [1, text, line];
  };
  const api = Object.freeze({
    define(token, argNames, body) { fns.set(token, new Fn(...argNames, body)); return 0; },
    drop(token) { fns.delete(token); return 0; },
    run(calls) {
      const out = [];
      for (let i = 0; i < calls.length; i++) {
        let result;
        try {
          result = apply(fns.get(calls[i][0]), undefined, parse(calls[i][1]));
        } catch (e) {
          out[i] = failure(e);
          continue;
        }
        try {
          out[i] = [0, stringify(result)];
        } catch (e) {
          out[i] = [1, "the script's result cannot be turned into JSON: " + failure(e)[1], 0];
        }
      }
      return stringify(out);
    },
  });
  Object.defineProperty(G, "__thingsray", {value: api, writable: false, enumerable: false, configurable: false});
  G.setTimeout = undefined;
  G.clearTimeout = undefined;
  G.__timer_manager = undefined;
  for (const name of ["Atomics", "SharedArrayBuffer", "WebAssembly", "FinalizationRegistry", "WeakRef"]) {
    delete G[name];
  }
  return 0;
})()
"""

# ThingsBoard's JsValidator: what it refuses at save time, with its messages.
_VALIDATOR_CHECKS = (
    (re.compile(r"\basync\b"), "Script must not contain 'async' keyword."),
    (re.compile(r"\bawait\b"), "Script must not contain 'await' keyword."),
    (re.compile(r"\bPromise\b"), "Script must not use 'Promise'."),
    (re.compile(r"\bsetTimeout\b"), "Script must not use 'setTimeout' method."),
)


@dataclass(frozen=True, slots=True)
class JsLimits:
    """Per-call limits. Sizes count characters of JSON text, as ThingsBoard's ``js.max_*`` do."""

    timeout_s: float = 0.5
    max_memory: int = 100 * 1024 * 1024
    """The heap limit of one sandbox (ThingsBoard's ``js.local.max_memory``, 100 MiB)."""
    max_script_body_size: int = 50_000
    max_total_args_size: int = 100_000
    max_result_size: int = 300_000


class JsLimitExceeded(ScriptRuntimeError):
    """The call ran past its time or memory limit, or its arguments or result were too big.
    Unlike an exception the script throws, this counts toward blacklisting (ThingsBoard's rule)."""


def validate(body: str) -> str | None:
    """ThingsBoard's JsValidator: the reason a script body is refused, or None."""
    if not body.strip():
        return "Script body is empty"
    if not any(pattern.search(body) for pattern, _ in _VALIDATOR_CHECKS):
        return None
    in_comment = False
    for line in body.splitlines():
        code = line
        if in_comment:
            if "*/" not in line:
                continue
            in_comment = False
            code = line[line.index("*/") + 2:]
        start = code.find("/*")
        if start >= 0:
            end = code.find("*/", start + 2)
            if end >= 0:
                code = code[:start] + code[end + 2:]
            else:
                in_comment = True
                code = code[:start]
        comment = code.find("//")
        if comment >= 0:
            code = code[:comment]
        code = _strip_string_literals(code)
        for pattern, message in _VALIDATOR_CHECKS:
            if pattern.search(code):
                return message
    return None


def _strip_string_literals(line: str) -> str:
    out: list[str] = []
    single = double = False
    for c in line:
        if c == '"' and not single:
            double = not double
        elif c == "'" and not double:
            single = not single
        elif not single and not double:
            out.append(c)
    return "".join(out)


_HEADER = re.compile(r"(?P<file>[^:\n]*):(?P<line>\d+): (?P<message>[^\n]*)")


def _describe(error: JSEvalException, body_lines: int = 0) -> str:
    """V8's report (``file:line: Message``, source line, caret, stack) as one line. For a syntax
    error in a body of ``body_lines`` lines (checked with ``new Function``), it says where."""
    text = str(error)
    match = _HEADER.match(text)
    if match is None:
        return text.strip().splitlines()[0] if text.strip() else type(error).__name__
    message = match["message"]
    line = int(match["line"]) - _WRAPPER_LINES
    if match["file"] != "undefined" or line < 1 or not body_lines:
        return message
    if line > body_lines:
        return f"{message} at the end of the script"
    column = _caret_column(text)
    return f"{message} at line {line}, column {column}" if column else f"{message} at line {line}"


def _caret_column(text: str) -> int | None:
    for candidate in text.splitlines()[2:4]:
        stripped = candidate.lstrip(" ")
        if stripped.startswith("^"):
            return len(candidate) - len(stripped) + 1
    return None


def _js_string(text: str) -> str:
    """A JavaScript string literal holding ``text`` (JSON strings are JS strings since ES2019)."""
    return orjson.dumps(text).decode()


def _to_json(args: Sequence[Any]) -> str:
    try:
        return orjson.dumps(list(args)).decode()
    except TypeError:
        # Integers past 64 bits (V8 reads them as doubles); anything else is not JSON.
        try:
            return json.dumps(list(args), separators=(",", ":"), ensure_ascii=False, allow_nan=False)
        except (TypeError, ValueError) as e:
            raise ScriptRuntimeError(f"script arguments are not JSON: {e}") from None



def _from_json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return json.loads(text)  # lone surrogates, which V8 escapes and orjson refuses


MAX_BATCH = 64
MAX_BATCH_CHARS = 1_000_000


@dataclass(slots=True)
class _Call:
    """A call on its way to V8; its answer goes back to the caller's loop (``future`` lives there)."""

    fn: JsFunction
    payload: str
    future: asyncio.Future[Any]
    loop: asyncio.AbstractEventLoop

    def answer(self, value: Any = None, error: BaseException | None = None) -> None:
        try:
            self.loop.call_soon_threadsafe(_settle, self.future, value, error)
        except RuntimeError:  # the caller's loop is closed: nobody waits for this answer
            pass


def _settle(future: asyncio.Future[Any], value: Any, error: BaseException | None) -> None:
    if future.done():  # the caller gave up (cancelled)
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)


class JsFunction:
    """A compiled script: its body lives in its sandbox's isolate (defined there on first use)."""

    __slots__ = ("__weakref__", "_finalizer", "arg_names", "body", "engine", "sandbox", "token")

    def __init__(self, engine: JsEngine, sandbox: Hashable, arg_names: tuple[str, ...], body: str) -> None:
        self.engine = engine
        self.sandbox = sandbox
        self.arg_names = arg_names
        self.body = body
        self.token = secrets.token_hex(16)
        engine._attach(sandbox)
        self._finalizer = weakref.finalize(self, engine._detach, sandbox, self.token)

    async def call(self, args: Sequence[Any]) -> Any:
        """Run the script with ``args`` (JSON values); its return value, None for undefined.
        Cancelling the caller before the call reaches V8 withdraws it."""
        limits = self.engine.limits
        payload = _to_json(args)
        if len(payload) > limits.max_total_args_size:
            raise JsLimitExceeded("Script input arguments exceed maximum allowed total args size of "
                                  f"{limits.max_total_args_size} symbols")
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.engine._engine_loop().call_soon_threadsafe(self.engine._enqueue, _Call(self, payload, future, loop))
        return await future

    def close(self) -> None:
        """Drop the script from its sandbox (it is also dropped when garbage-collected)."""
        self._finalizer()


class _Sandbox:
    """One isolate, what is defined in it and the calls waiting for it; engine loop only."""

    def __init__(self) -> None:
        self.racer: MiniRacer | None = None
        self.defined: set[str] = set()
        self.to_drop: list[str] = []
        self.users = 0
        self.queue: deque[_Call] = deque()
        self.worker: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        return self.users <= 0 and self.worker is None and not self.queue

    def discard(self) -> None:
        racer, self.racer = self.racer, None
        self.defined.clear()
        self.to_drop.clear()
        if racer is not None:
            racer.close()


class JsEngine:
    """The V8 side of the script service: a thread with an asyncio loop hosting mini-racer, the
    sandboxes (one isolate each) and a checker isolate for compile-time syntax checks."""

    def __init__(self, limits: JsLimits | None = None) -> None:
        self.limits = limits or JsLimits()
        self._start_lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._sandboxes: dict[Hashable, _Sandbox] = {}
        self._checker: MiniRacer | None = None

    # --- thread and loop ------------------------------------------------------------------
    def _engine_loop(self) -> asyncio.AbstractEventLoop:
        with self._start_lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                thread = threading.Thread(target=loop.run_forever, name="thingsray-js", daemon=True)
                thread.start()
                self._loop, self._thread = loop, thread
            return self._loop

    def close(self) -> None:
        """Fail the calls still waiting, free every isolate and stop the engine thread.
        Idempotent; a later compile or call starts the engine again."""
        with self._start_lock:
            loop, thread = self._loop, self._thread
            self._loop = self._thread = None
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close_all(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        thread.join()
        loop.close()

    async def _close_all(self) -> None:
        for sandbox in list(self._sandboxes.values()):
            if sandbox.worker is not None:
                sandbox.worker.cancel()
                await asyncio.gather(sandbox.worker, return_exceptions=True)
            while sandbox.queue:
                sandbox.queue.popleft().answer(error=ScriptRuntimeError("the script engine was closed"))
            sandbox.discard()
        self._sandboxes.clear()
        if self._checker is not None:
            self._checker.close()
            self._checker = None

    # --- compile ----------------------------------------------------------------------------
    def compile(self, body: str, arg_names: Sequence[str], sandbox: Hashable = None) -> JsFunction:
        """Check ``body`` and return its function; raises ScriptError saying what and where.
        Synchronous: it waits for a parse in the checker isolate (no user code runs there)."""
        names = tuple(arg_names)
        for name in names:
            if not isinstance(name, str) or not _IDENTIFIER.match(name):
                raise ScriptError(f"argument name {name!r} is not a JavaScript identifier")
        if not isinstance(body, str):
            raise ScriptError(f"script must be text, got {type(body).__name__}")
        if len(body) > self.limits.max_script_body_size:
            raise ScriptError(f"Script body exceeds maximum allowed size of {self.limits.max_script_body_size} symbols")
        reason = validate(body)
        if reason is not None:
            raise ScriptError(reason)
        loop = self._engine_loop()
        if threading.current_thread() is self._thread:
            raise RuntimeError("JsEngine.compile called from the engine's own thread")
        asyncio.run_coroutine_threadsafe(self._check(body, names), loop).result()
        return JsFunction(self, sandbox, names, body)

    async def _check(self, body: str, names: tuple[str, ...]) -> None:
        if self._checker is None:
            self._checker = MiniRacer()
            self._checker.set_hard_memory_limit(self.limits.max_memory)
        code = f"new Function({', '.join(map(_js_string, names))}, {_js_string(body)}), 0"
        try:
            async with asyncio.timeout(max(self.limits.timeout_s, 5.0)):
                await self._checker.eval_cancelable(code)
        except TimeoutError:
            self._checker.close()
            self._checker = None
            raise ScriptError("the script took too long to parse") from None
        except JSEvalException as e:
            if isinstance(e, JSOOMException):
                self._checker.close()
                self._checker = None
            raise ScriptError(_describe(e, body.count("\n") + 1)) from None

    # --- sandboxes (engine loop) --------------------------------------------------------------
    def _sandbox(self, key: Hashable) -> _Sandbox:
        sandbox = self._sandboxes.get(key)
        if sandbox is None:
            sandbox = self._sandboxes[key] = _Sandbox()
        return sandbox

    def _attach(self, key: Hashable) -> None:
        self._engine_loop().call_soon_threadsafe(self._count_user, key, 1, None)

    def _detach(self, key: Hashable, token: str) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._count_user, key, -1, token)

    def _count_user(self, key: Hashable, delta: int, token: str | None) -> None:
        sandbox = self._sandbox(key)
        sandbox.users += delta
        if token is not None and token in sandbox.defined:
            sandbox.defined.discard(token)
            sandbox.to_drop.append(token)
        self._forget_if_idle(key, sandbox)

    def _forget_if_idle(self, key: Hashable, sandbox: _Sandbox) -> None:
        if sandbox.idle and self._sandboxes.get(key) is sandbox:
            sandbox.discard()
            del self._sandboxes[key]

    def _enqueue(self, call: _Call) -> None:
        key = call.fn.sandbox
        sandbox = self._sandbox(key)
        sandbox.queue.append(call)
        if sandbox.worker is None:
            sandbox.worker = asyncio.get_running_loop().create_task(self._work(key, sandbox))

    async def _work(self, key: Hashable, sandbox: _Sandbox) -> None:
        try:
            while sandbox.queue:
                batch: list[_Call] = []
                chars = 0
                while sandbox.queue and len(batch) < MAX_BATCH and chars < MAX_BATCH_CHARS:
                    call = sandbox.queue.popleft()
                    if not call.future.cancelled():  # read across threads: at worst a withdrawn call runs
                        batch.append(call)
                        chars += len(call.payload)
                if not batch:
                    continue
                try:
                    await self._run_batch(sandbox, batch)
                except BaseException as e:
                    error = ScriptRuntimeError("the script engine was closed" if isinstance(e, asyncio.CancelledError)
                                               else f"the script engine failed: {type(e).__name__}: {e}")
                    for call in batch:
                        call.answer(error=error)  # a call already answered keeps its first answer
                    if isinstance(e, asyncio.CancelledError):
                        raise
        finally:
            sandbox.worker = None
            self._forget_if_idle(key, sandbox)

    async def _run_batch(self, sandbox: _Sandbox, batch: list[_Call], *, retry: bool = True) -> None:
        try:
            outcomes = await self._execute(sandbox, batch)
        except ScriptRuntimeError as e:
            # A time or memory limit (the isolate is gone) or a failure of the batch as a whole.
            # Each call runs again alone, with the whole limit, in a fresh isolate if the old one
            # was discarded: only a script that fails by itself fails, and a call stalled by work
            # a previous script left running (a promise job that loops) gets a second chance.
            if len(batch) == 1 and not (retry and isinstance(e, JsLimitExceeded)):
                batch[0].answer(error=e)
                return
            for call in batch:
                await self._run_batch(sandbox, [call], retry=False)
            return
        for call, outcome in zip(batch, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                call.answer(error=outcome)
            else:
                call.answer(outcome)

    async def _racer(self, sandbox: _Sandbox) -> MiniRacer:
        if sandbox.racer is None:
            racer = MiniRacer()
            racer.set_hard_memory_limit(self.limits.max_memory)
            await racer.eval_cancelable(_SETUP)
            sandbox.racer = racer
        return sandbox.racer

    async def _execute(self, sandbox: _Sandbox, batch: list[_Call]) -> list[Any]:
        """One round trip: drop released scripts, define new ones, run the batch. Answers each
        call's result or ScriptRuntimeError; raises when the batch as a whole failed."""
        racer = await self._racer(sandbox)
        parts = [f"__thingsray.drop({_js_string(token)})" for token in sandbox.to_drop]
        sandbox.to_drop.clear()
        new: dict[str, JsFunction] = {}
        for call in batch:
            fn = call.fn
            if fn.token not in sandbox.defined and fn.token not in new:
                new[fn.token] = fn
                parts.append(f"__thingsray.define({_js_string(fn.token)}, "
                             f"[{', '.join(map(_js_string, fn.arg_names))}], {_js_string(fn.body)})")
        calls = ",".join(f"[{_js_string(call.fn.token)},{_js_string(call.payload)}]" for call in batch)
        parts.append(f"__thingsray.run([{calls}])")
        out = await self._eval(sandbox, racer, ",".join(parts))
        sandbox.defined.update(new)
        rows = _from_json(out) if isinstance(out, str) else None
        if not isinstance(rows, list) or len(rows) != len(batch):
            raise ScriptRuntimeError(f"unexpected answer from V8: {out!r:.200}")
        return [self._outcome(row) for row in rows]

    def _outcome(self, row: list[Any]) -> Any:
        if row[0] == 1:
            text, line = row[1], row[2]
            return ScriptRuntimeError(f"{text} (line {line})" if line > 0 else text)
        result = row[1]
        if result is None:
            return None
        if len(result) > self.limits.max_result_size:
            return JsLimitExceeded(f"Script invocation result exceeds maximum allowed size of "
                                   f"{self.limits.max_result_size} symbols")
        return _from_json(result)

    async def _eval(self, sandbox: _Sandbox, racer: MiniRacer, code: str) -> Any:
        try:
            async with asyncio.timeout(self.limits.timeout_s):
                return await racer.eval_cancelable(code)
        except TimeoutError:
            sandbox.discard()
            raise JsLimitExceeded(f"Script timeout: it ran past its time limit of "
                                  f"{self.limits.timeout_s * 1000:g} ms") from None
        except JSEvalException as e:
            if isinstance(e, JSOOMException) or racer.was_hard_memory_limit_reached():
                sandbox.discard()
                raise JsLimitExceeded(f"Script memory overflow: it ran past the memory limit of "
                                      f"{self.limits.max_memory // (1024 * 1024)} MiB") from None
            raise ScriptRuntimeError(_describe(e)) from None
