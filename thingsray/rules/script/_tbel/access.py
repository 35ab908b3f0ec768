"""Reading and writing properties and elements of values, for the compiled closures: a map's
keys, a list's or string's elements, ``length``, a map entry's key and value."""

from __future__ import annotations

from typing import Any

from thingsray.rules.script._tbel import values as V
from thingsray.rules.script._tbel.values import Runtime, to_str, type_name
from thingsray.rules.script.errors import ScriptRuntimeError


def get_property(o: Any, name: str, safe: bool, loc: str) -> Any:
    if o is None:
        if safe:
            return None
        raise ScriptRuntimeError(f"cannot read property '{name}' of null (at {loc})")
    t = type(o)
    if name == "length" and (t is list or t is str):
        return len(o)
    if t is V.Entry and name in ("key", "value"):
        return o.key if name == "key" else o.value
    raise ScriptRuntimeError(f"{type_name(o)} has no property '{name}' (at {loc})")


def _key(k: Any, loc: str) -> Any:
    if type(k) in (list, dict):
        raise ScriptRuntimeError(f"a map key cannot be a {type_name(k)} (at {loc})")
    return k


def get_element(o: Any, k: Any, loc: str) -> Any:
    t = type(o)
    if t is dict:
        return o.get(_key(k, loc))
    if t is list or t is str:
        if type(k) is not int:
            raise ScriptRuntimeError(f"a {type_name(o)} index must be a whole number, not {type_name(k)} (at {loc})")
        if not 0 <= k < len(o):
            raise ScriptRuntimeError(f"Index {k} out of bounds for length {len(o)} (at {loc})")
        return o[k]
    if o is None:
        raise ScriptRuntimeError(f"cannot read element [{to_str(k)}] of null (at {loc})")
    raise ScriptRuntimeError(f"{type_name(o)} has no elements to index (at {loc})")


def get_place(o: Any, k: Any, loc: str) -> Any:
    if type(o) is dict:
        return o.get(_key(k, loc))
    if type(o) is V.Entry and k in ("key", "value"):
        return o.key if k == "key" else o.value
    if type(o) is list:
        return get_element(o, k, loc)
    return get_property(o, k, False, loc) if type(k) is str else get_element(o, k, loc)


def set_place(rt: Runtime, o: Any, k: Any, v: Any, loc: str) -> None:
    t = type(o)
    if type(v) in (list, dict):
        rt.exotic = True
    if t is dict:
        k = _key(k, loc)
        if v is None:
            o.pop(k, None)
        else:
            if k not in o:
                rt.grow(o, v)
            else:
                rt.charge(V.sizeof(v))
            o[k] = v
        return
    if t is list:
        if type(k) is not int:
            raise ScriptRuntimeError(f"a list index must be a whole number, not {type_name(k)} (at {loc})")
        if not 0 <= k < len(o):
            raise ScriptRuntimeError(f"Index {k} out of bounds for length {len(o)} (at {loc})")
        rt.charge(V.sizeof(v))
        o[k] = v
        return
    if t is V.Entry and k == "value":
        o.value = v
        return
    if o is None:
        raise ScriptRuntimeError(f"cannot set '{to_str(k)}' of null (at {loc})")
    raise ScriptRuntimeError(f"cannot set '{to_str(k)}' on {type_name(o)} (at {loc})")


def no_method(o: Any, name: str, loc: str) -> ScriptRuntimeError:
    if o is None:
        return ScriptRuntimeError(f"cannot call {name}() on null (at {loc})")
    return ScriptRuntimeError(f"{type_name(o)} has no method '{name}()' (at {loc})")

