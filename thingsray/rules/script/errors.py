"""The script sandboxes' errors, shared by the JavaScript and TBEL engines."""

from __future__ import annotations


class ScriptError(Exception):
    """A script cannot be used: a syntax error or a construct the engine does not support.

    Raised when a script is compiled (at save time and when a node starts); the message says what
    is wrong and where (``line:column`` when the engine knows it).
    """


class ScriptRuntimeError(Exception):
    """A script failed while running: it threw, hit an undefined name or a type error, or ran
    past its step, time or memory limit."""


class ScriptBlacklisted(ScriptRuntimeError):
    """A script failed too many times in a row and is refused until its blacklist time passes."""
