"""What the compiler needs to know before it compiles: the script's functions (hoisted, as MVEL
defines them at compile time), which names each scope binds, whether the script changes its
arguments, and the value of the last statement (a script or function without ``return`` gives it)."""

from __future__ import annotations

from collections.abc import Iterator

from thingsray.rules.script._tbel import nodes as n

MUTATING_METHODS = {"add", "addAll", "put", "putAll", "putIfAbsent", "remove", "push", "pop", "shift", "unshift",
                    "set", "clear", "sort", "reverse", "splice", "fill", "replace", "sortByKey", "sortByValue",
                    "invert", "setValue"}


def children(node: n.Node) -> Iterator[n.Node]:
    """Direct sub-nodes, in source order; function bodies are not entered."""
    for name in node.__slots__:  # type: ignore[attr-defined]
        if name == "pos":
            continue
        value = getattr(node, name)
        if isinstance(value, n.Node) and not isinstance(value, n.FunctionDef):
            yield value
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, n.Node) and not isinstance(item, n.FunctionDef):
                    yield item
                elif isinstance(item, tuple):
                    yield from (x for x in item if isinstance(x, n.Node))


def walk(nodes: list[n.Node]) -> Iterator[n.Node]:
    """Every node under these statements, not entering function bodies."""
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        if isinstance(node, n.FunctionDef):
            continue
        yield node
        stack.extend(reversed(list(children(node))))


def functions(body: list[n.Node]) -> list[n.FunctionDef]:
    """Every function definition, at any depth."""
    found: list[n.FunctionDef] = []
    stack: list[n.Node] = list(body)
    while stack:
        node = stack.pop()
        if isinstance(node, n.FunctionDef):
            found.append(node)
            stack.extend(node.body.body)
            continue
        stack.extend(children(node))
        for name in node.__slots__:  # type: ignore[attr-defined]
            value = getattr(node, name, None)
            if isinstance(value, n.FunctionDef):
                stack.append(value)
            elif isinstance(value, list):
                stack.extend(x for x in value if isinstance(x, n.FunctionDef))
    found.sort(key=lambda f: f.pos)
    return found


def declared(body: list[n.Node]) -> set[str]:
    """Names declared with var / a type / a loop variable."""
    names: set[str] = set()
    for node in walk(body):
        if isinstance(node, n.VarDecl):
            names.update(name for name, _, _ in node.decls)
        elif isinstance(node, n.ForEach):
            names.add(node.var)
    return names


def assigned(body: list[n.Node]) -> set[str]:
    """Names assigned without a declaration (MVEL creates them)."""
    names: set[str] = set()
    for node in walk(body):
        if isinstance(node, n.Assign | n.IncDec) and isinstance(node.target, n.Name):
            names.add(node.target.name)
    return names


def mutates(body: list[n.Node], funcs: list[n.FunctionDef]) -> bool:
    """Whether the script may change a map or list it was given (then it gets a private copy)."""
    for node in walk(body + [stmt for f in funcs for stmt in f.body.body]):
        if isinstance(node, n.Assign | n.IncDec) and isinstance(node.target, n.Member | n.Index):
            return True
        if isinstance(node, n.MethodCall) and node.name in MUTATING_METHODS:
            return True
    return False


def with_tail_value(body: list[n.Node]) -> list[n.Node]:
    """MVEL gives the value of the last statement when there is no ``return``: make it one."""
    out = list(body)
    last = len(out) - 1
    while last >= 0 and isinstance(out[last], n.FunctionDef):
        last -= 1
    if last < 0:
        return out
    stmt = out[last]
    if isinstance(stmt, n.ExprStmt):
        out[last] = n.Return(stmt.pos, stmt.expr)
    elif isinstance(stmt, n.VarDecl):
        name, _, pos = stmt.decls[-1]
        out.insert(last + 1, n.Return(pos, n.Name(pos, name)))
    elif isinstance(stmt, n.Block):
        out[last] = n.Block(stmt.pos, with_tail_value(stmt.body))
    elif isinstance(stmt, n.If):
        out[last] = n.If(stmt.pos, stmt.cond, _tail_of(stmt.then),
                         None if stmt.other is None else _tail_of(stmt.other))
    return out


def _tail_of(stmt: n.Node) -> n.Node:
    return n.Block(stmt.pos, with_tail_value(stmt.body if isinstance(stmt, n.Block) else [stmt]))
