"""TBEL, ThingsBoard's default script language (a fork of MVEL; older exports call it MVEL), run
by an interpreter of our own: the source is parsed once into a tree and compiled to Python
closures; a run counts steps, watches a deadline and charges memory, so every script can be
stopped.

    program = compile("return msg.temperature > 20;")
    program.run([{"temperature": 25}, {}, "POST_TELEMETRY_REQUEST"])   # True

The source is the body of a function whose parameters are ``arg_names``, as ThingsBoard wraps
it; like MVEL, a script without ``return`` gives the value of its last statement. Values are
plain Python: dict, list, str, int, float, bool, None.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from thingsray.rules.script._tbel import values as V
from thingsray.rules.script._tbel.compiler import Compiler
from thingsray.rules.script._tbel.parser import RESERVED, parse
from thingsray.rules.script._tbel.statements import RET, RETURN, RT, G
from thingsray.rules.script.errors import ScriptError, ScriptRuntimeError

__all__ = ["DEFAULT_ARGS", "LimitExceeded", "TbelProgram", "compile"]

LimitExceeded = V.LimitExceeded
"""The ScriptRuntimeError of a run stopped by its step, time, memory or call-depth limit."""

DEFAULT_ARGS = ("msg", "metadata", "msgType")


class TbelProgram:
    """A compiled script; ``run`` may be called any number of times, from any thread."""

    __slots__ = ("_body", "_expr", "_mutates", "arg_names", "source")

    def __init__(self, source: str, arg_names: Sequence[str], body: Any, expr: Any, mutates: bool) -> None:
        self.source = source
        self.arg_names = tuple(arg_names)
        self._body = body
        self._expr = expr
        self._mutates = mutates

    def run(self, args: Sequence[Any], *, max_steps: int = 100_000, timeout_s: float = 0.5,
            max_memory: int = V.DEFAULT_MAX_MEMORY) -> Any:
        """Run the script on ``args`` (one per arg name; the script changes private copies).

        Raises ScriptRuntimeError when the script throws (raiseError), fails (an undefined name, a
        missing method, a type error) or runs past ``max_steps`` loop iterations and calls,
        ``timeout_s`` seconds or ``max_memory`` bytes of strings and collections it builds.
        """
        if len(args) != len(self.arg_names):
            raise ScriptRuntimeError(f"the script takes {len(self.arg_names)} arguments "
                                     f"({', '.join(self.arg_names)}), not {len(args)}")
        rt = V.Runtime(max_steps, timeout_s, max_memory)
        if self._mutates:
            g: dict[Any, Any] = {name: V.copy_in(v) for name, v in zip(self.arg_names, args, strict=True)}
        else:
            g = dict(zip(self.arg_names, args, strict=True))
        g[G] = g
        g[RT] = rt
        try:
            if self._expr is not None:
                result = self._expr(g)
            else:
                result = g.get(RET) if self._body(g) is RETURN else None
            return V.plain(result) if rt.exotic else result
        except ScriptRuntimeError:
            raise
        except RecursionError:
            raise V.LimitExceeded("script nested calls or values too deeply") from None
        except MemoryError:
            raise V.LimitExceeded("script ran out of memory") from None
        except Exception as e:  # an interpreter bug must still be the script's failure, never a crash
            raise ScriptRuntimeError(f"TBEL interpreter error: {type(e).__name__}: {e}") from e


def compile(source: str, arg_names: Sequence[str] = DEFAULT_ARGS) -> TbelProgram:
    """Parse and compile a script. Raises ScriptError, saying what and where (``line:column``),
    for a syntax error or a construct we do not run."""
    if not isinstance(source, str):
        raise ScriptError(f"a TBEL script is text, not {type(source).__name__}")
    for name in arg_names:
        if not name.isidentifier() or name in RESERVED:
            raise ScriptError(f"{name!r} cannot be a script argument name")
    if len(set(arg_names)) != len(arg_names):
        raise ScriptError(f"duplicate script argument names: {', '.join(arg_names)}")
    try:
        tree = parse(source)
        body, expr, mutates = Compiler(source, arg_names).program(tree)
    except RecursionError:
        raise ScriptError("the script is nested too deeply") from None
    return TbelProgram(source, arg_names, body, expr, mutates)
