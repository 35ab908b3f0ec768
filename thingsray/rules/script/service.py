"""``ScriptService``: compiles rule-node scripts (JS or TBEL) and runs them under ThingsBoard's
limits and blacklisting rule.

ThingsBoard's rule (AbstractScriptInvokeService), kept here per ``Script``:
- errors that count are the ones that are not the script's own runtime errors: a timeout, a
  memory overflow, arguments or a result past their size limit. A script that throws (or reads a
  property of undefined, ...) fails that message only and is never blacklisted for it;
- each counted error adds one and sets the expiry to now + the blacklist duration;
- while the count is at ``max_errors`` or more and the expiry is ahead, every call fails at once
  with ``ScriptBlacklisted`` (ThingsBoard's message); once the expiry passes, the count starts
  again from zero. A success does not reset the count; compiling the script again (a node that
  restarts, a chain that is saved) gives a new ``Script`` with a clean record.
"""

from __future__ import annotations

import copy
import time
import uuid
from collections.abc import Hashable, Sequence
from typing import Any

import orjson

from thingsray.rules.script import tbel
from thingsray.rules.script.errors import ScriptBlacklisted, ScriptError, ScriptRuntimeError
from thingsray.rules.script.js import JsEngine, JsFunction, JsLimitExceeded, JsLimits
from thingsray.rules.script.tbel import LimitExceeded as TbelLimitExceeded

DEFAULT_ARG_NAMES = ("msg", "metadata", "msgType")
LANGUAGES = {"JS": "JS", "TBEL": "TBEL", "MVEL": "TBEL"}
"""``scriptLang`` values and the engine each names; MVEL is what older exports call TBEL."""
COUNTED_ERRORS = (JsLimitExceeded, TbelLimitExceeded)
"""What counts toward blacklisting: limits passed (time, memory, steps, sizes), not throws."""


class Script:
    """A compiled script. ``invoke`` runs it with JSON-like arguments and answers its result."""

    def __init__(self, service: ScriptService, lang: str, source: str, arg_names: tuple[str, ...],
                 program: Any) -> None:
        self.id = uuid.uuid4()
        self.lang = lang
        self.source = source
        self.arg_names = arg_names
        self._service = service
        self._program = program
        self._errors = 0
        self._expires = 0.0

    async def invoke(self, *args: Any) -> Any:
        """Raises ScriptRuntimeError when the script fails or passes a limit, ScriptBlacklisted
        when it failed too often (see the module's docstring)."""
        if len(args) != len(self.arg_names):
            raise TypeError(f"script takes {len(self.arg_names)} arguments ({', '.join(self.arg_names)}), "
                            f"got {len(args)}")
        self._check_blacklist()
        try:
            if isinstance(self._program, JsFunction):
                return await self._program.call(args)
            return self._service._run_tbel(self._program, args)
        except ScriptRuntimeError as e:
            if isinstance(e, COUNTED_ERRORS):
                self._errors += 1
                self._expires = time.monotonic() + self._service.blacklist_duration_s
            raise

    @property
    def blacklisted(self) -> bool:
        return self._errors >= self._service.max_errors and self._expires > time.monotonic()

    def _check_blacklist(self) -> None:
        if not self._errors:
            return
        if self._expires <= time.monotonic():
            self._errors = 0
        elif self._errors >= self._service.max_errors:
            raise ScriptBlacklisted(f"Script invocation is blocked due to maximum error count "
                                    f"{self._service.max_errors}, scriptId {self.id}!")

    def close(self) -> None:
        """Release what the script holds in its engine (a JS function in its sandbox)."""
        if isinstance(self._program, JsFunction):
            self._program.close()


class ScriptService:
    """One per process (it owns the V8 engine thread). ``for_tenant`` gives each tenant a view
    whose JS scripts run in the tenant's own isolate; give nodes that view (``NodeInit.scripts``),
    as the root service's JS scripts all share one isolate, globals and prototypes included.

    Defaults are ThingsBoard's: 500 ms per call (``tbel.max_requests_timeout``; ThingsBoard's local
    JS sandbox allows more CPU, 8 s, which would hold a shard's V8 thread far too long), 100 MiB
    of JS heap per sandbox (``js.local.max_memory``), 8 MiB per TBEL run (``tbel.max_memory_limit_mb``;
    our interpreter's estimate of what the script builds), 3 errors (``*.max_errors``) and 60 s of
    blacklist (``*.max_black_list_duration_sec``), and ``js.max_*`` sizes. ``tbel_max_steps``
    (loop iterations and calls) bounds a TBEL run as well as its time does."""

    def __init__(self, *, timeout_ms: int = 500, js_max_memory: int = 100 * 1024 * 1024,
                 tbel_max_memory: int = 8 * 1024 * 1024, tbel_max_steps: int = 100_000, max_errors: int = 3,
                 blacklist_duration_s: float = 60.0,
                 max_script_body_size: int = 50_000, max_total_args_size: int = 100_000,
                 max_result_size: int = 300_000) -> None:
        if min(timeout_ms, js_max_memory, tbel_max_memory, tbel_max_steps, max_errors) <= 0:
            raise ValueError("script limits must be positive")
        self.timeout_ms = timeout_ms
        self.tbel_max_memory = tbel_max_memory
        self.tbel_max_steps = tbel_max_steps
        self.max_errors = max_errors
        self.blacklist_duration_s = blacklist_duration_s
        self.max_script_body_size = max_script_body_size
        self.max_total_args_size = max_total_args_size
        self.max_result_size = max_result_size
        self._js = JsEngine(JsLimits(timeout_s=timeout_ms / 1000, max_memory=js_max_memory,
                                     max_script_body_size=max_script_body_size,
                                     max_total_args_size=max_total_args_size, max_result_size=max_result_size))
        self._sandbox: Hashable = None

    def for_tenant(self, tenant_id: uuid.UUID) -> ScriptService:
        """A view of this service (same engine and limits) whose JS scripts share an isolate
        with this tenant's scripts only."""
        view = copy.copy(self)
        view._sandbox = ("tenant", tenant_id)
        return view

    def compile(self, lang: str, source: str, arg_names: Sequence[str] = DEFAULT_ARG_NAMES) -> Script:
        """Check ``source`` once; raises ScriptError that says what is wrong and where.
        Synchronous: a JS script is parsed by V8 on the engine thread while the caller waits
        (well under a millisecond for a usual script; a few more the first time, to start V8)."""
        engine = LANGUAGES.get(lang) if isinstance(lang, str) else None
        if engine is None:
            raise ScriptError(f"unknown script language {lang!r}: use JS or TBEL")
        if not isinstance(source, str):
            raise ScriptError(f"script must be text, got {type(source).__name__}")
        names = tuple(arg_names)
        if engine == "JS":
            return Script(self, lang, source, names, self._js.compile(source, names, self._sandbox))
        if len(source) > self.max_script_body_size:
            raise ScriptError(f"Script body exceeds maximum allowed size of {self.max_script_body_size} symbols")
        return Script(self, lang, source, names, tbel.compile(source, names))

    def _run_tbel(self, program: Any, args: tuple[Any, ...]) -> Any:
        """TBEL runs inline on the caller's loop: the interpreter counts steps, so it is bounded."""
        try:
            size = len(orjson.dumps(args, option=orjson.OPT_NON_STR_KEYS))
        except TypeError as e:
            raise ScriptRuntimeError(f"script arguments are not JSON: {e}") from None
        if size > self.max_total_args_size:
            raise TbelLimitExceeded("Script input arguments exceed maximum allowed total args size of "
                                    f"{self.max_total_args_size} symbols")
        result = program.run(args, max_steps=self.tbel_max_steps, timeout_s=self.timeout_ms / 1000,
                             max_memory=self.tbel_max_memory)
        try:
            size = len(orjson.dumps(result, option=orjson.OPT_NON_STR_KEYS))
        except TypeError as e:
            raise ScriptRuntimeError(f"the script's result cannot be turned into JSON: {e}") from None
        if size > self.max_result_size:
            raise TbelLimitExceeded("Script invocation result exceeds maximum allowed size of "
                                    f"{self.max_result_size} symbols")
        return result

    def close(self) -> None:
        """Stop the JS engine (its thread and isolates). Views share it: close the root service."""
        self._js.close()
