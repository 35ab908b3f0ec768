"""Statements to closures ``s(L) -> signal``: None to go on, BREAK, CONTINUE, or RETURN (the value
is in ``L[RET]``). Every loop iteration is a step; the run's Runtime checks the limits."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from thingsray.rules.script._tbel import nodes as n
from thingsray.rules.script._tbel import values as V
from thingsray.rules.script._tbel.values import guarded, truthy, type_name
from thingsray.rules.script.errors import ScriptError, ScriptRuntimeError

Expr = Callable[[dict[Any, Any]], Any]
Stmt = Callable[[dict[Any, Any]], Any]

G, RT, RET = 0, 1, 2
"""Keys of a scope dict (never names): the globals, the Runtime, the returned value."""
BREAK, CONTINUE, RETURN = "break", "continue", "return"
DEFAULTS = {"int": 0, "long": 0, "short": 0, "byte": 0, "double": 0.0, "float": 0.0, "boolean": False, "char": "\0"}


class StatementCompiler:
    """The statement half of the compiler; the expression half (``Compiler``) extends it."""

    loop_depth: int

    def expr(self, node: n.Node) -> Expr:
        raise NotImplementedError

    def writer(self, name: str) -> Callable[[dict[Any, Any], Any], None]:
        raise NotImplementedError

    def loc(self, pos: int) -> str:
        raise NotImplementedError

    def error(self, node: n.Node, message: str) -> ScriptError:
        raise NotImplementedError

    def block(self, body: list[n.Node]) -> Stmt:
        stmts = [self.stmt(s) for s in body if not isinstance(s, n.FunctionDef)]
        if not stmts:
            return lambda L: None
        if len(stmts) == 1:
            return stmts[0]
        if len(stmts) == 2:
            first, second = stmts

            def two(L: dict[Any, Any]) -> Any:
                r = first(L)
                if r is not None:
                    return r
                return second(L)

            return two

        def many(L: dict[Any, Any]) -> Any:
            for s in stmts:
                r = s(L)
                if r is not None:
                    return r
            return None

        return many

    def stmt(self, node: n.Node) -> Stmt:
        method = getattr(self, f"stmt_{type(node).__name__}", None)
        if method is None:
            expr = self.expr(node)
            return lambda L: expr(L) and None
        return method(node)  # type: ignore[no-any-return]

    def stmt_ExprStmt(self, node: n.ExprStmt) -> Stmt:
        expr = self.expr(node.expr)

        def run(L: dict[Any, Any]) -> None:
            expr(L)

        return run

    def stmt_Block(self, node: n.Block) -> Stmt:
        return self.block(node.body)

    def stmt_VarDecl(self, node: n.VarDecl) -> Stmt:
        steps = []
        typ = node.type
        for name, value, _pos in node.decls:
            write = self.writer(name)
            if value is None:
                default = DEFAULTS.get(typ or "")
                steps.append((write, None, default))
            else:
                expr = self.expr(value)
                if typ is not None and typ not in ("var", "def", "Object"):
                    expr = self.converted(expr, typ, value.pos)
                steps.append((write, expr, None))
        if len(steps) == 1:
            write, expr, default = steps[0]
            if expr is None:
                return lambda L: write(L, default)

            def declare(L: dict[Any, Any]) -> None:
                write(L, expr(L))  # type: ignore[misc]

            return declare

        def declare_many(L: dict[Any, Any]) -> None:
            for write, expr, default in steps:
                write(L, default if expr is None else expr(L))

        return declare_many

    def converted(self, expr: Expr, typ: str, pos: int) -> Expr:
        loc = self.loc(pos)

        def convert(L: dict[Any, Any]) -> Any:
            return guarded(loc, V.cast, typ, expr(L))

        return convert

    def stmt_If(self, node: n.If) -> Stmt:
        cond = self.expr(node.cond)
        then = self.stmt(node.then)
        if node.other is None:
            def if_(L: dict[Any, Any]) -> Any:
                if truthy(cond(L)):
                    return then(L)
                return None

            return if_
        other = self.stmt(node.other)

        def if_else(L: dict[Any, Any]) -> Any:
            if truthy(cond(L)):
                return then(L)
            return other(L)

        return if_else

    def loop_body(self, body: n.Node) -> Stmt:
        self.loop_depth += 1
        try:
            return self.stmt(body)
        finally:
            self.loop_depth -= 1

    def stmt_While(self, node: n.While) -> Stmt:
        cond, body, until = self.expr(node.cond), self.loop_body(node.body), node.until

        def while_(L: dict[Any, Any]) -> Any:
            rt = L[RT]
            while True:
                rt.steps += 1
                if rt.steps > rt.next_check:
                    rt.tick()
                if truthy(cond(L)) == until:
                    return None
                r = body(L)
                if r is not None and r is not CONTINUE:
                    return None if r is BREAK else r

        return while_

    def stmt_DoWhile(self, node: n.DoWhile) -> Stmt:
        cond, body, until = self.expr(node.cond), self.loop_body(node.body), node.until

        def do_(L: dict[Any, Any]) -> Any:
            rt = L[RT]
            while True:
                rt.steps += 1
                if rt.steps > rt.next_check:
                    rt.tick()
                r = body(L)
                if r is not None and r is not CONTINUE:
                    return None if r is BREAK else r
                if truthy(cond(L)) == until:
                    return None

        return do_

    def stmt_For(self, node: n.For) -> Stmt:
        init = [self.stmt(s) for s in node.init]
        cond = None if node.cond is None else self.expr(node.cond)
        update = [self.expr(u) for u in node.update]
        body = self.loop_body(node.body)

        def for_(L: dict[Any, Any]) -> Any:
            rt = L[RT]
            for s in init:
                s(L)
            while True:
                rt.steps += 1
                if rt.steps > rt.next_check:
                    rt.tick()
                if cond is not None and not truthy(cond(L)):
                    return None
                r = body(L)
                if r is not None and r is not CONTINUE:
                    return None if r is BREAK else r
                for u in update:
                    u(L)

        return for_

    def stmt_ForEach(self, node: n.ForEach) -> Stmt:
        iterable, write, body = self.expr(node.iterable), self.writer(node.var), self.loop_body(node.body)
        loc = self.loc(node.iterable.pos)

        def foreach(L: dict[Any, Any]) -> Any:
            rt = L[RT]
            seq = iterable(L)
            t = type(seq)
            if t is list:
                elements: Any = tuple(seq)
            elif t is dict:
                rt.exotic = True
                elements = [V.Entry(k, v) for k, v in seq.items()]
            elif t is str:
                elements = seq
            else:
                raise ScriptRuntimeError(f"foreach cannot go over {type_name(seq)} (at {loc})")
            for element in elements:
                rt.steps += 1
                if rt.steps > rt.next_check:
                    rt.tick()
                write(L, element)
                r = body(L)
                if r is not None and r is not CONTINUE:
                    return None if r is BREAK else r
            return None

        return foreach

    def stmt_Return(self, node: n.Return) -> Stmt:
        if node.value is None:
            def return_none(L: dict[Any, Any]) -> str:
                L[RET] = None
                return RETURN

            return return_none
        value = self.expr(node.value)

        def return_(L: dict[Any, Any]) -> str:
            L[RET] = value(L)
            return RETURN

        return return_

    def stmt_Break(self, node: n.Break) -> Stmt:
        if not self.loop_depth:
            raise self.error(node, "'break' outside a loop")
        return lambda L: BREAK

    def stmt_Continue(self, node: n.Continue) -> Stmt:
        if not self.loop_depth:
            raise self.error(node, "'continue' outside a loop")
        return lambda L: CONTINUE
