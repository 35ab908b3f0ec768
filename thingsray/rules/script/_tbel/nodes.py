"""The TBEL syntax tree. ``pos`` is the offset of the node's first token in the source."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(slots=True)
class Node:
    pos: int


# ---- expressions


@dataclass(slots=True)
class Const(Node):
    value: object


@dataclass(slots=True)
class Name(Node):
    name: str


@dataclass(slots=True)
class Member(Node):
    obj: Node
    name: str
    safe: bool = False


@dataclass(slots=True)
class Index(Node):
    obj: Node
    index: Node


@dataclass(slots=True)
class Call(Node):
    """A call of a helper function or of a function the script defines."""

    name: str
    args: list[Node]


@dataclass(slots=True)
class MethodCall(Node):
    obj: Node
    name: str
    args: list[Node]
    safe: bool = False


@dataclass(slots=True)
class Unary(Node):
    op: str
    operand: Node


@dataclass(slots=True)
class Binary(Node):
    op: str
    left: Node
    right: Node


@dataclass(slots=True)
class Logical(Node):
    op: str
    left: Node
    right: Node


@dataclass(slots=True)
class Ternary(Node):
    cond: Node
    then: Node
    other: Node


@dataclass(slots=True)
class Assign(Node):
    target: Node
    op: str | None
    """None for ``=``; the arithmetic operator of ``+=``, ``-=``, ..."""
    value: Node


@dataclass(slots=True)
class IncDec(Node):
    target: Node
    delta: int
    prefix: bool


@dataclass(slots=True)
class ListLit(Node):
    items: list[Node]


@dataclass(slots=True)
class MapLit(Node):
    pairs: list[tuple[object, Node]]


@dataclass(slots=True)
class NewArray(Node):
    type: str
    size: Node | None
    items: list[Node] | None


@dataclass(slots=True)
class NewObject(Node):
    cls: str
    args: list[Node]


@dataclass(slots=True)
class Cast(Node):
    type: str
    expr: Node


# ---- statements


@dataclass(slots=True)
class ExprStmt(Node):
    expr: Node


@dataclass(slots=True)
class VarDecl(Node):
    decls: list[tuple[str, Node | None, int]]
    """(name, initial value, offset of the name)"""
    type: str | None = None


@dataclass(slots=True)
class Block(Node):
    body: list[Node] = field(default_factory=list)


@dataclass(slots=True)
class If(Node):
    cond: Node
    then: Node
    other: Node | None


@dataclass(slots=True)
class While(Node):
    cond: Node
    body: Node
    until: bool = False


@dataclass(slots=True)
class DoWhile(Node):
    body: Node
    cond: Node
    until: bool = False


@dataclass(slots=True)
class For(Node):
    init: list[Node]
    cond: Node | None
    update: list[Node]
    body: Node


@dataclass(slots=True)
class ForEach(Node):
    var: str
    iterable: Node
    body: Node


@dataclass(slots=True)
class Return(Node):
    value: Node | None


@dataclass(slots=True)
class Break(Node):
    pass


@dataclass(slots=True)
class Continue(Node):
    pass


@dataclass(slots=True)
class FunctionDef(Node):
    name: str
    params: list[str]
    body: Block
