"""The syntax tree to Python closures, compiled once per script.

An expression becomes ``f(L) -> value`` and a statement ``s(L) -> signal`` (None, BREAK, CONTINUE
or RETURN), where ``L`` is the variables of the running function (a dict; at the top level, the
script's globals). ``L[G]`` is the globals, ``L[RT]`` the run's Runtime, ``L[RET]`` the value a
``return`` leaves. Loops and calls count steps; slow paths say where they failed.
"""

from __future__ import annotations

import bisect
from collections.abc import Callable, Sequence
from typing import Any

from thingsray.rules.script._tbel import nodes as n
from thingsray.rules.script._tbel import scope
from thingsray.rules.script._tbel import values as V
from thingsray.rules.script._tbel.access import get_element, get_place, get_property, no_method, set_place
from thingsray.rules.script._tbel.builtins import FUNCTIONS
from thingsray.rules.script._tbel.dates import new_date
from thingsray.rules.script._tbel.methods import METHODS
from thingsray.rules.script._tbel.operators import NO_CONSTANT, apply, binary
from thingsray.rules.script._tbel.parser import PRIMITIVE_TYPES
from thingsray.rules.script._tbel.statements import DEFAULTS, RET, RETURN, RT, Expr, G, StatementCompiler, Stmt
from thingsray.rules.script._tbel.statics import STATIC_CLASSES, STATIC_FIELDS, STATIC_METHODS
from thingsray.rules.script._tbel.values import (
    PYTHON_ERRORS,
    SIZED,
    LimitExceeded,
    guarded,
    located,
    to_str,
    truthy,
    type_name,
)
from thingsray.rules.script.errors import ScriptError, ScriptRuntimeError

_NUMBER = (int, float)
_NEW_LIST = {"ArrayList", "LinkedList", "java.util.ArrayList", "java.util.LinkedList", "List"}
_NEW_MAP = {"HashMap", "LinkedHashMap", "java.util.HashMap", "java.util.LinkedHashMap", "Map"}


class FunctionSlot:
    __slots__ = ("body", "name", "params")

    def __init__(self, name: str, params: list[str]) -> None:
        self.name = name
        self.params = params
        self.body: Stmt | None = None


class Compiler(StatementCompiler):
    def __init__(self, source: str, arg_names: Sequence[str]) -> None:
        self.src = source
        self.line_starts = [0] + [i + 1 for i, c in enumerate(source) if c == "\n"]
        self.arg_names = list(arg_names)
        self.functions: dict[str, FunctionSlot] = {}
        self.globals: set[str] = set()
        self.locals: set[str] | None = None
        self.loop_depth = 0

    # ---- positions and errors

    def loc(self, pos: int) -> str:
        line = bisect.bisect_right(self.line_starts, pos)
        return f"{line}:{pos - self.line_starts[line - 1] + 1}"

    def error(self, node: n.Node, message: str) -> ScriptError:
        return ScriptError(f"{message} (at {self.loc(node.pos)})")

    # ---- program

    def program(self, body: list[n.Node]) -> tuple[Stmt | None, Expr | None, bool]:
        """The top-level statement closure, or (for ``return expr``) the expression alone."""
        funcs = scope.functions(body)
        for f in funcs:
            if f.name in self.functions:
                raise self.error(f, f"function '{f.name}' is defined twice")
            if f.name in FUNCTIONS:
                raise self.error(f, f"function '{f.name}' would hide the helper function of that name")
            self.functions[f.name] = FunctionSlot(f.name, f.params)
        top = [s for s in body if not isinstance(s, n.FunctionDef)]
        self.globals = set(self.arg_names) | scope.declared(top) | scope.assigned(top)
        for f in funcs:
            fbody = f.body.body
            self.locals = set(f.params) | scope.declared(fbody) | (scope.assigned(fbody) - self.globals)
            self.functions[f.name].body = self.block(scope.with_tail_value(fbody))
        self.locals = None
        top = scope.with_tail_value(top)
        mutates = scope.mutates(body, funcs)
        if len(top) == 1 and isinstance(top[0], n.Return) and top[0].value is not None:
            return None, self.expr(top[0].value), mutates
        return self.block(top), None, mutates

    # ---- variables

    def is_local(self, name: str) -> bool:
        return self.locals is None or name in self.locals

    def known(self, name: str) -> bool:
        return name in self.globals or (self.locals is not None and name in self.locals)

    def reader(self, node: n.Name) -> Expr:
        name, loc = node.name, self.loc(node.pos)
        if not self.known(name):
            if name in self.functions or name in FUNCTIONS:
                raise self.error(node, f"'{name}' is a function; call it with ( )")
            raise self.error(node, f"'{name}' is not defined")
        local = self.is_local(name)

        def read(L: dict[Any, Any]) -> Any:
            try:
                return L[name] if local else L[G][name]
            except KeyError:
                raise ScriptRuntimeError(f"'{name}' is not defined here yet (at {loc})") from None

        return read

    def writer(self, name: str) -> Callable[[dict[Any, Any], Any], None]:
        if self.is_local(name):
            def write_local(L: dict[Any, Any], v: Any) -> None:
                L[name] = v

            return write_local

        def write_global(L: dict[Any, Any], v: Any) -> None:
            L[G][name] = v

        return write_global

    # ---- expressions

    def expr(self, node: n.Node) -> Expr:
        method = getattr(self, f"expr_{type(node).__name__}", None)
        if method is None:
            raise self.error(node, f"{type(node).__name__} cannot be used as a value")
        return method(node)  # type: ignore[no-any-return]

    def expr_Const(self, node: n.Const) -> Expr:
        value = node.value
        return lambda L: value

    def expr_Name(self, node: n.Name) -> Expr:
        if node.name in STATIC_CLASSES and not self.known(node.name):
            raise self.error(node, f"'{node.name}' is a class; call its methods, such as {node.name}.name(...)")
        return self.reader(node)

    def static_class(self, obj: n.Node) -> str | None:
        if isinstance(obj, n.Name) and obj.name in STATIC_CLASSES and not self.known(obj.name):
            return obj.name
        return None

    def expr_Member(self, node: n.Member) -> Expr:
        cls = self.static_class(node.obj)
        if cls is not None:
            fields = STATIC_FIELDS.get(cls, {})
            if node.name not in fields:
                raise self.error(node, f"{cls} has no field '{node.name}'")
            value = fields[node.name]
            return lambda L: value
        obj, name, safe, loc = self.expr(node.obj), node.name, node.safe, self.loc(node.pos)

        def member(L: dict[Any, Any]) -> Any:
            o = obj(L)
            if type(o) is dict:
                return o.get(name)
            return get_property(o, name, safe, loc)

        return member

    def expr_Index(self, node: n.Index) -> Expr:
        obj, index, loc = self.expr(node.obj), self.expr(node.index), self.loc(node.pos)

        def get(L: dict[Any, Any]) -> Any:
            o = obj(L)
            k = index(L)
            t = type(o)
            if t is list and type(k) is int and 0 <= k < len(o):
                return o[k]
            if t is dict and type(k) is str:
                return o.get(k)
            return get_element(o, k, loc)

        return get

    def arguments(self, args: list[n.Node]) -> Callable[[dict[Any, Any]], list[Any]]:
        fs = [self.expr(a) for a in args]
        if not fs:
            return lambda L: []
        if len(fs) == 1:
            (a,) = fs
            return lambda L: [a(L)]
        if len(fs) == 2:
            a, b = fs
            return lambda L: [a(L), b(L)]
        return lambda L: [f(L) for f in fs]

    def check_arity(self, node: n.Node, what: str, got: int, lo: int, hi: int) -> None:
        if lo <= got <= hi:
            return
        want = f"{lo}" if lo == hi else (f"{lo} to {hi}" if hi < 255 else f"at least {lo}")
        raise self.error(node, f"{what} takes {want} argument{'s' if want != '1' else ''}, not {got}")

    def expr_Call(self, node: n.Call) -> Expr:
        slot = self.functions.get(node.name)
        if slot is not None:
            self.check_arity(node, f"function {node.name}()", len(node.args), len(slot.params), len(slot.params))
            return self.user_call(node, slot)
        if node.name not in FUNCTIONS:
            if self.known(node.name):
                raise self.error(node, f"'{node.name}' is a variable, not a function")
            raise self.error(node, f"unknown function '{node.name}()'")
        fn, lo, hi = FUNCTIONS[node.name]
        self.check_arity(node, f"{node.name}()", len(node.args), lo, hi)
        return self.native_call(fn, self.arguments(node.args), f"{node.name}(): ", self.loc(node.pos))

    def native_call(self, fn: Callable[..., Any], args: Callable[[dict[Any, Any]], list[Any]], what: str,
                    loc: str) -> Expr:
        def call(L: dict[Any, Any]) -> Any:
            vals = args(L)
            rt = L[RT]
            rt.steps += 1
            if rt.steps > rt.next_check:
                rt.tick()
            for v in vals:
                if type(v) in SIZED and len(v) > 256:
                    rt.heavy(len(v))
            try:
                return fn(rt, *vals)
            except (ScriptRuntimeError, *PYTHON_ERRORS) as e:
                raise located(e, loc, what) from None

        return call

    def user_call(self, node: n.Call, slot: FunctionSlot) -> Expr:
        args, params, loc = self.arguments(node.args), slot.params, self.loc(node.pos)

        def call(L: dict[Any, Any]) -> Any:
            vals = args(L)
            rt = L[RT]
            rt.steps += 1
            if rt.steps > rt.next_check:
                rt.tick()
            if rt.depth >= V.MAX_CALL_DEPTH:
                raise LimitExceeded(f"script nested calls more than {V.MAX_CALL_DEPTH} deep "
                                    f"(endless recursion in {slot.name}()?) (at {loc})")
            F = dict(zip(params, vals, strict=True))
            F[G] = L[G]
            F[RT] = rt
            rt.depth += 1
            try:
                r = slot.body(F)  # type: ignore[misc]
            finally:
                rt.depth -= 1
            return F.get(RET) if r is RETURN else None

        return call

    def expr_MethodCall(self, node: n.MethodCall) -> Expr:
        cls = self.static_class(node.obj)
        args = self.arguments(node.args)
        loc = self.loc(node.pos)
        if cls is not None:
            methods = STATIC_METHODS.get(cls, {})
            if node.name not in methods:
                raise self.error(node, f"{cls} has no method '{node.name}()'")
            fn, lo, hi = methods[node.name]
            self.check_arity(node, f"{cls}.{node.name}()", len(node.args), lo, hi)
            return self.native_call(fn, args, f"{cls}.{node.name}(): ", loc)
        table = METHODS.get(node.name)
        if table is None:
            raise self.error(node, f"unknown method '{node.name}()'")
        obj, name, safe, count = self.expr(node.obj), node.name, node.safe, len(node.args)

        def method(L: dict[Any, Any]) -> Any:
            o = obj(L)
            vals = args(L)
            entry = table.get(type(o))
            if entry is None:
                if o is None and safe:
                    return None
                raise no_method(o, name, loc)
            fn, lo, hi = entry
            if type(o) in SIZED and len(o) > 256:
                L[RT].heavy(len(o))
            if not lo <= count <= hi:
                raise ScriptRuntimeError(f"{type_name(o)}.{name}() takes {lo}" + (f" to {hi}" if hi != lo else "")
                                         + f" arguments, not {count} (at {loc})")
            rt = L[RT]
            rt.steps += 1
            if rt.steps > rt.next_check:
                rt.tick()
            try:
                return fn(rt, o, *vals)
            except (ScriptRuntimeError, *PYTHON_ERRORS) as e:
                raise located(e, loc, f"{name}(): ") from None

        return method

    def expr_Unary(self, node: n.Unary) -> Expr:
        operand, loc = self.expr(node.operand), self.loc(node.pos)
        if node.op == "!":
            return lambda L: not truthy(operand(L))
        if node.op == "-":
            def neg(L: dict[Any, Any]) -> Any:
                v = operand(L)
                t = type(v)
                if t is int or t is float:
                    return -v
                return guarded(loc, V.negate, v)

            return neg
        if node.op == "+":
            return lambda L: guarded(loc, V.cast, "double", v) if type(v := operand(L)) not in _NUMBER else v
        return lambda L: guarded(loc, V.invert, operand(L))

    def expr_Logical(self, node: n.Logical) -> Expr:
        left, right = self.expr(node.left), self.expr(node.right)
        if node.op == "&&":
            return lambda L: truthy(left(L)) and truthy(right(L))
        return lambda L: truthy(left(L)) or truthy(right(L))

    def expr_Ternary(self, node: n.Ternary) -> Expr:
        cond, then, other = self.expr(node.cond), self.expr(node.then), self.expr(node.other)
        return lambda L: then(L) if truthy(cond(L)) else other(L)

    def expr_Cast(self, node: n.Cast) -> Expr:
        return self.converted(self.expr(node.expr), node.type, node.pos)

    def expr_Binary(self, node: n.Binary) -> Expr:
        right = node.right
        constant = right.value if isinstance(right, n.Const) and type(right.value) in (int, float, str) else NO_CONSTANT
        return binary(node.op, self.expr(node.left), self.expr(right), self.loc(node.pos), constant)

    def expr_ListLit(self, node: n.ListLit) -> Expr:
        items = self.arguments(node.items)
        return lambda L: L[RT].collection(items(L))

    def expr_MapLit(self, node: n.MapLit) -> Expr:
        pairs = [(k, self.expr(v)) for k, v in node.pairs]

        def build(L: dict[Any, Any]) -> dict[Any, Any]:
            out = {}
            for k, f in pairs:
                v = f(L)
                if v is not None:
                    out[k] = v
            return L[RT].collection(out)  # type: ignore[no-any-return]

        return build

    def expr_NewArray(self, node: n.NewArray) -> Expr:
        base = node.type.split("[")[0]
        if base not in PRIMITIVE_TYPES and base not in ("String", "Object", "Integer", "Long", "Double", "Float",
                                                         "Boolean", "Byte", "Short", "Character", "Number"):
            raise self.error(node, f"arrays of {base} are not supported")
        if node.items is not None:
            return self.expr_ListLit(n.ListLit(node.pos, node.items))
        size, default, loc = self.expr(node.size), DEFAULTS.get(base), self.loc(node.pos)  # type: ignore[arg-type]

        def new(L: dict[Any, Any]) -> list[Any]:
            count = size(L)
            if type(count) is not int or count < 0:
                raise ScriptRuntimeError(f"an array size must be a whole number from 0, not {to_str(count)} "
                                         f"(at {loc})")
            rt = L[RT]
            if count > V.MAX_COLLECTION_SIZE:
                raise LimitExceeded(f"script built an array of {count} elements; at most "
                                    f"{V.MAX_COLLECTION_SIZE} are allowed (at {loc})")
            return rt.collection([default] * count)  # type: ignore[no-any-return]

        return new

    def expr_NewObject(self, node: n.NewObject) -> Expr:
        args, loc = self.arguments(node.args), self.loc(node.pos)
        if node.cls in ("Date", "TbDate"):
            return lambda L: guarded(loc, new_date, L[RT], args(L))
        if node.cls in _NEW_LIST or node.cls in _NEW_MAP:
            kind = list if node.cls in _NEW_LIST else dict

            def new(L: dict[Any, Any]) -> Any:
                vals = args(L)
                if vals and type(vals[0]) is kind:
                    return L[RT].collection(kind(vals[0]))
                return kind()

            return new
        raise self.error(node, f"'new {node.cls}(...)' is not supported; use [ ] for lists, {{ }} for maps "
                               "or new Date(...)")

    def expr_Assign(self, node: n.Assign) -> Expr:
        value, target, symbol = self.expr(node.value), node.target, node.op
        if isinstance(target, n.Name):
            write = self.writer(target.name)
            if symbol is None:
                def assign(L: dict[Any, Any]) -> Any:
                    v = value(L)
                    write(L, v)
                    return v

                return assign
            combine = binary(symbol, self.reader(target), value, self.loc(node.pos))

            def assign_op(L: dict[Any, Any]) -> Any:
                v = combine(L)
                write(L, v)
                return v

            return assign_op
        holder, key, loc = self.place(target)
        if symbol is None:
            def assign_place(L: dict[Any, Any]) -> Any:
                o, k = holder(L), key(L)
                v = value(L)
                set_place(L[RT], o, k, v, loc)
                return v

            return assign_place

        def assign_place_op(L: dict[Any, Any]) -> Any:
            o, k = holder(L), key(L)
            v = guarded(loc, apply, L[RT], symbol, get_place(o, k, loc), value(L))
            set_place(L[RT], o, k, v, loc)
            return v

        return assign_place_op

    def place(self, target: n.Node) -> tuple[Expr, Expr, str]:
        """(the holder, the key) of a property or element target."""
        if isinstance(target, n.Member):
            if self.static_class(target.obj) is not None:
                raise self.error(target, "cannot assign to a class's field")
            name = target.name
            return self.expr(target.obj), (lambda L: name), self.loc(target.pos)
        assert isinstance(target, n.Index)
        return self.expr(target.obj), self.expr(target.index), self.loc(target.pos)

    def expr_IncDec(self, node: n.IncDec) -> Expr:
        delta, prefix, loc, target = node.delta, node.prefix, self.loc(node.pos), node.target
        if isinstance(target, n.Name):
            current, write = self.reader(target), self.writer(target.name)

            def incdec(L: dict[Any, Any]) -> Any:
                old = current(L)
                if type(old) not in _NUMBER:
                    raise ScriptRuntimeError(f"cannot {'increment' if delta > 0 else 'decrement'} "
                                             f"{type_name(old)} (at {loc})")
                new = old + delta
                write(L, new)
                return new if prefix else old

            return incdec
        holder, key, _ = self.place(target)

        def incdec_place(L: dict[Any, Any]) -> Any:
            o, k = holder(L), key(L)
            old = get_place(o, k, loc)
            if type(old) not in _NUMBER:
                raise ScriptRuntimeError(f"cannot {'increment' if delta > 0 else 'decrement'} "
                                         f"{type_name(old)} (at {loc})")
            set_place(L[RT], o, k, old + delta, loc)
            return old + delta if prefix else old

        return incdec_place
