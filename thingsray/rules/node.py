"""What a rule node is, and the catalogue that maps ThingsBoard's class names to ours.

A node is built once per (chain, shard) from its configuration, which it checks in its
constructor (raising ``NodeConfigError`` that says which key is wrong and why), and then
``process``es messages one at a time per originator. It answers with where the message goes
next: a list of ``(relation, message)``. A node that raises routes the message to ``Failure``
(the engine adds the error to the metadata); it never breaks the chain or the shard.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext
    from thingsray.rules.msg import TbMsg
    from thingsray.rules.script import ScriptService

SUCCESS = "Success"
FAILURE = "Failure"
TRUE = "True"
FALSE = "False"
OTHER = "Other"

Outputs = list[tuple[str, "TbMsg"]]


class NodeConfigError(ValueError):
    """A node's configuration is unusable; the message names the key and the reason."""


@dataclass(frozen=True, slots=True)
class NodeInit:
    """What a node may use while it is built: compile its scripts, know where it lives."""

    tenant_id: uuid.UUID
    chain_id: uuid.UUID
    node_id: uuid.UUID
    scripts: ScriptService


class RuleNode:
    """Subclasses set ``type`` (ThingsBoard's Java class name, e.g.
    ``org.thingsboard.rule.engine.filter.TbJsFilterNode``), ``relations`` (the labels it may emit;
    Failure is always possible) and ``default_config``, and are registered with ``@node``."""

    type: ClassVar[str]
    name: ClassVar[str] = ""
    """ThingsBoard's display name of the node kind ("script", "save time series", ...)."""
    component: ClassVar[str] = "ACTION"
    """FILTER, ENRICHMENT, TRANSFORMATION, ACTION, EXTERNAL or FLOW, as ThingsBoard groups them."""
    relations: ClassVar[tuple[str, ...]] = (SUCCESS, FAILURE)
    default_config: ClassVar[dict[str, Any]] = {}
    sync: ClassVar[bool] = False
    source: ClassVar[bool] = False
    """True for nodes that make messages of their own (generators): every shard loads their chains
    when it starts, so their ``start`` runs without waiting for a message to load the chain."""
    """True for nodes whose ``process`` never waits on I/O (switches, saves, key renames): the
    engine then skips the per-call timeout, which costs a timer per message."""

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        self.config = config
        self.init = init

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        raise NotImplementedError

    async def close(self) -> None:
        """Release what the node holds (connections, timers); called when its chain is replaced."""


NODE_TYPES: dict[str, type[RuleNode]] = {}

N = TypeVar("N", bound=type[RuleNode])


def node(cls: N) -> N:
    """Register a node class under its ThingsBoard class name."""
    if cls.type in NODE_TYPES and NODE_TYPES[cls.type] is not cls:
        raise ValueError(f"two node classes claim {cls.type}")
    NODE_TYPES[cls.type] = cls
    return cls


# --- helpers for configurations -----------------------------------------------------------------
def require_str(config: dict[str, Any], key: str, *, allow_empty: bool = False) -> str:
    value = config.get(key)
    if not isinstance(value, str) or (not allow_empty and not value.strip()):
        raise NodeConfigError(f"'{key}' must be a non-empty string, got {value!r}")
    return value


def optional(config: dict[str, Any], key: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = config.get(key, default)
    if value is None:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise NodeConfigError(f"'{key}' must be {names}, got {value!r}")
    return value


def flag(config: dict[str, Any], key: str, default: bool) -> bool:
    """A boolean setting; older ThingsBoard exports write some as the strings "true" / "false"."""
    value = config.get(key, default)
    if value is None:
        return default
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    if not isinstance(value, bool):
        raise NodeConfigError(f"'{key}' must be true or false, got {value!r}")
    return value


def str_list(config: dict[str, Any], key: str) -> list[str]:
    value = config.get(key) or []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise NodeConfigError(f"'{key}' must be a list of strings, got {value!r}")
    return value


def one_of(config: dict[str, Any], key: str, choices: tuple[str, ...], default: str | None = None) -> str:
    value = config.get(key, default)
    if value not in choices:
        raise NodeConfigError(f"'{key}' must be one of {', '.join(choices)}, got {value!r}")
    return value


def success(msg: TbMsg) -> Outputs:
    return [(SUCCESS, msg)]


def route(relation: str, msg: TbMsg) -> Outputs:
    return [(relation, msg)]


Factory = Callable[[dict[str, Any], NodeInit], RuleNode]
