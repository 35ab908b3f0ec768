"""Script sandboxes for rule nodes: JavaScript (V8 through mini-racer) and TBEL (an interpreter
of our own). Both sit behind ``ScriptService.compile``; nodes never see which engine runs.

The contract:
- ``compile(lang, source, arg_names)`` checks the script once, at save time and when a node
  starts; a script that cannot run raises ``ScriptError`` with a message that says what and where.
- ``Script.invoke(*args)`` runs it without blocking the event loop and returns plain JSON-like
  Python values (dict, list, str, int, float, bool, None). It raises ``ScriptRuntimeError``
  (the script threw, or ran past its time or memory limit) or ``ScriptBlacklisted`` (too many
  errors in a row; ThingsBoard's rule).
"""

from thingsray.rules.script.errors import ScriptBlacklisted, ScriptError, ScriptRuntimeError
from thingsray.rules.script.service import Script, ScriptService

__all__ = ["Script", "ScriptBlacklisted", "ScriptError", "ScriptRuntimeError", "ScriptService"]
