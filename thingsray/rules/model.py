"""A rule chain's metadata (ThingsBoard's RuleChainMetaData): its nodes, the connections between
them and the node messages enter at, parsed from JSON and checked before anything is saved.

Two steps, because the second needs the node catalogue and a script service:
- ``parse_metadata`` checks the shape: types, indexes in range, no cycle, first node in range;
  ThingsBoard's legacy ``ruleChainConnections`` become rule chain input nodes, as ThingsBoard
  turns them into on save.
- ``check_nodes`` builds every node from its configuration, as the engine will, so a chain that
  could not run is refused when it is saved, with the node (index and name) and the reason.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from thingsray.rules.node import NODE_TYPES, NodeConfigError, NodeInit, RuleNode
from thingsray.rules.script import ScriptError

log = logging.getLogger(__name__)

INPUT_NODE = "org.thingsboard.rule.engine.flow.TbRuleChainInputNode"
OUTPUT_NODE = "org.thingsboard.rule.engine.flow.TbRuleChainOutputNode"
MAX_NODES = 1000
MAX_CONNECTIONS = 10_000
MAX_TEXT = 255
MAX_NOTES = 1000


class RuleChainError(ValueError):
    """The metadata cannot be saved; the message says which node or connection and why."""


def entity_id(entity_type: str, value: uuid.UUID | None) -> dict[str, str] | None:
    return None if value is None else {"entityType": entity_type, "id": str(value)}


@dataclass(frozen=True, slots=True)
class NodeSpec:
    """One node of a chain as saved: ThingsBoard's RuleNode."""

    type: str
    name: str
    configuration: dict[str, Any]
    id: uuid.UUID | None = None
    debug_mode: bool = False
    """Record every message in and out of the node as a debug event."""
    debug_failures: bool = False
    """Record only the messages the node routes to Failure (ThingsBoard 4's debugSettings)."""
    singleton_mode: bool = False
    queue_name: str | None = None
    configuration_version: int = 0
    additional_info: Any = None
    external_id: uuid.UUID | None = None
    created_time: int | None = None
    """Set on nodes read from storage."""

    def describe(self, index: int) -> str:
        return f"Rule node {index} '{self.name}'"

    def to_json(self, chain_id: uuid.UUID | None = None, *, export: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if not export:
            out["id"] = entity_id("RULE_NODE", self.id)
            out["createdTime"] = self.created_time
            out["ruleChainId"] = entity_id("RULE_CHAIN", chain_id)
        out.update({
            "type": self.type, "name": self.name, "debugMode": self.debug_mode,
            "debugSettings": {"failuresEnabled": self.debug_failures or self.debug_mode,
                              "allEnabled": self.debug_mode, "allEnabledUntil": 0},
            "singletonMode": self.singleton_mode, "queueName": self.queue_name,
            "configurationVersion": self.configuration_version, "configuration": self.configuration,
            "externalId": entity_id("RULE_NODE", self.external_id), "additionalInfo": self.additional_info,
        })
        return out


@dataclass(frozen=True, slots=True, order=True)
class Connection:
    """``from_index`` sends what it emits under the label ``type`` to ``to_index``."""

    from_index: int
    to_index: int
    type: str

    def to_json(self) -> dict[str, Any]:
        return {"fromIndex": self.from_index, "toIndex": self.to_index, "type": self.type}


@dataclass(frozen=True, slots=True)
class RuleChainMetadata:
    rule_chain_id: uuid.UUID | None
    first_node_index: int | None
    nodes: tuple[NodeSpec, ...] = ()
    connections: tuple[Connection, ...] = ()
    version: int | None = None
    """The chain's version when read (optimistic locking of metadata saves)."""
    notes: tuple[dict[str, Any], ...] | None = None
    """The editor's sticky notes (ThingsBoard 4's RuleChainNote), kept as sent."""
    _outputs: dict[int, tuple[Connection, ...]] = field(init=False, compare=False, repr=False)

    def __post_init__(self) -> None:
        by_node: dict[int, list[Connection]] = {}
        for connection in self.connections:
            by_node.setdefault(connection.from_index, []).append(connection)
        object.__setattr__(self, "_outputs", {k: tuple(v) for k, v in by_node.items()})

    @property
    def first_node(self) -> NodeSpec | None:
        return None if self.first_node_index is None else self.nodes[self.first_node_index]

    def outputs(self, index: int) -> tuple[Connection, ...]:
        """The connections leaving node ``index``."""
        return self._outputs.get(index, ())

    def output_labels(self) -> list[str]:
        """The names of the chain's output nodes: the relations a calling chain's input node may emit."""
        return sorted({n.name for n in self.nodes if n.type == OUTPUT_NODE})

    def input_targets(self) -> dict[int, uuid.UUID]:
        """Node index -> the chain each of its rule chain input nodes forwards to."""
        targets = {}
        for index, spec in enumerate(self.nodes):
            if spec.type == INPUT_NODE:
                target = _input_target(spec.configuration)
                if target is not None:
                    targets[index] = target
        return targets

    def with_ids(self, keep: Collection[uuid.UUID]) -> RuleChainMetadata:
        """Every node with an id: its own when that id is in ``keep`` (a node of this chain, sent
        back unchanged or edited), else a new one (a new node, or one copied from elsewhere)."""
        seen: set[uuid.UUID] = set()
        nodes = []
        for spec in self.nodes:
            node_id = spec.id if spec.id in keep and spec.id not in seen else uuid.uuid4()
            seen.add(node_id)
            nodes.append(replace(spec, id=node_id))
        return replace(self, nodes=tuple(nodes))

    def to_json(self, *, export: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {} if export else {"ruleChainId": entity_id("RULE_CHAIN", self.rule_chain_id),
                                                 "version": self.version}
        out.update({
            "firstNodeIndex": self.first_node_index,
            "nodes": [n.to_json(self.rule_chain_id, export=export) for n in self.nodes],
            "connections": [c.to_json() for c in sorted(self.connections)],
            "ruleChainConnections": None,
            "notes": None if self.notes is None else list(self.notes),
        })
        return out


# --- parsing --------------------------------------------------------------------------------------
def parse_metadata(value: Any) -> RuleChainMetadata:
    """A RuleChainMetaData JSON, checked for shape, indexes and cycles; raises RuleChainError."""
    if not isinstance(value, Mapping):
        raise RuleChainError("Rule chain metadata must be a JSON object")
    chain_id = _optional_id(value.get("ruleChainId"), "ruleChainId")
    raw_nodes = _list(value.get("nodes"), "nodes")
    if len(raw_nodes) > MAX_NODES:
        raise RuleChainError(f"A rule chain may have at most {MAX_NODES} nodes, got {len(raw_nodes)}")
    nodes = [_parse_node(raw, index) for index, raw in enumerate(raw_nodes)]
    raw_connections = _list(value.get("connections"), "connections")
    if len(raw_connections) > MAX_CONNECTIONS:
        raise RuleChainError(f"A rule chain may have at most {MAX_CONNECTIONS} connections, "
                             f"got {len(raw_connections)}")
    connections = [_parse_connection(raw, index, nodes) for index, raw in enumerate(raw_connections)]
    for index, raw in enumerate(_list(value.get("ruleChainConnections"), "ruleChainConnections")):
        spec, connection = _legacy_chain_connection(raw, index, nodes)
        nodes.append(spec)
        connections.append(connection)
    first = value.get("firstNodeIndex")
    if first is not None:
        if not _is_int(first):
            raise RuleChainError(f"firstNodeIndex must be an integer, got {first!r}")
        if not 0 <= first < len(nodes):
            raise RuleChainError(f"firstNodeIndex {first} does not point to a node: the chain has "
                                 f"{len(nodes)} node{'' if len(nodes) == 1 else 's'}")
    version = value.get("version")
    notes = value.get("notes")
    if notes is not None and (not isinstance(notes, list) or not all(isinstance(n, dict) for n in notes)
                              or len(notes) > MAX_NOTES):
        raise RuleChainError(f"'notes' must be a list of at most {MAX_NOTES} JSON objects")
    _check_cycles(nodes, connections)
    return RuleChainMetadata(rule_chain_id=chain_id, first_node_index=first, nodes=tuple(nodes),
                             connections=tuple(dict.fromkeys(connections)),
                             version=version if _is_int(version) else None,
                             notes=None if notes is None else tuple(notes))


def _parse_node(raw: Any, index: int) -> NodeSpec:
    if not isinstance(raw, Mapping):
        raise RuleChainError(f"Rule node {index} must be a JSON object, got {raw!r:.100}")
    name = raw.get("name")
    name = "" if name is None else name
    if not isinstance(name, str) or len(name) > MAX_TEXT:
        raise RuleChainError(f"Rule node {index}: 'name' must be a string of at most {MAX_TEXT} characters")
    where = f"Rule node {index} '{name}'"
    node_type = raw.get("type")
    if not isinstance(node_type, str) or not node_type or len(node_type) > MAX_TEXT:
        raise RuleChainError(f"{where}: 'type' must be the node's class name, got {node_type!r:.100}")
    configuration = raw.get("configuration")
    if configuration is None:
        configuration = {}
    if not isinstance(configuration, dict):
        raise RuleChainError(f"{where}: 'configuration' must be a JSON object, got {configuration!r:.100}")
    version = raw.get("configurationVersion") or 0
    if not _is_int(version) or version < 0:
        raise RuleChainError(f"{where}: 'configurationVersion' must be a non-negative integer, got {version!r}")
    queue_name = raw.get("queueName")
    if queue_name is not None and (not isinstance(queue_name, str) or len(queue_name) > MAX_TEXT):
        raise RuleChainError(f"{where}: 'queueName' must be a string of at most {MAX_TEXT} characters")
    settings = raw.get("debugSettings") if isinstance(raw.get("debugSettings"), Mapping) else {}
    debug_all = _flag(raw, "debugMode", where) or _flag(raw, "debugAll", where) or _flag(settings, "allEnabled", where)
    debug_failures = _flag(raw, "debugFailures", where) or _flag(settings, "failuresEnabled", where)
    return NodeSpec(
        type=node_type, name=name, configuration=configuration,
        id=_optional_id(raw.get("id"), f"{where}: 'id'"), debug_mode=debug_all, debug_failures=debug_failures,
        singleton_mode=_flag(raw, "singletonMode", where), queue_name=queue_name, configuration_version=version,
        additional_info=raw.get("additionalInfo"),
        external_id=_optional_id(raw.get("externalId"), f"{where}: 'externalId'"))


def _parse_connection(raw: Any, index: int, nodes: Sequence[NodeSpec]) -> Connection:
    if not isinstance(raw, Mapping):
        raise RuleChainError(f"Connection {index} must be a JSON object with fromIndex, toIndex and type")
    ends = []
    for key in ("fromIndex", "toIndex"):
        value = raw.get(key)
        if not _is_int(value):
            raise RuleChainError(f"Connection {index}: '{key}' must be a node index, got {value!r:.100}")
        if not 0 <= value < len(nodes):
            raise RuleChainError(f"Connection {index}: '{key}' {value} does not point to a node: the chain has "
                                 f"{len(nodes)} node{'' if len(nodes) == 1 else 's'}")
        ends.append(value)
    label = raw.get("type")
    if not isinstance(label, str) or not label or len(label) > MAX_TEXT:
        raise RuleChainError(f"Connection {index} from {nodes[ends[0]].describe(ends[0])}: 'type' (the relation) "
                             f"must be a non-empty string, got {label!r:.100}")
    return Connection(ends[0], ends[1], label)


def _legacy_chain_connection(raw: Any, index: int, nodes: Sequence[NodeSpec]) -> tuple[NodeSpec, Connection]:
    """A ``ruleChainConnections`` entry (ThingsBoard before 3.3): an input node forwarding to
    ``targetRuleChainId``, connected from ``fromIndex`` with ``type``."""
    where = f"Rule chain connection {index}"
    if not isinstance(raw, Mapping):
        raise RuleChainError(f"{where} must be a JSON object with fromIndex, targetRuleChainId and type")
    target = _optional_id(raw.get("targetRuleChainId"), f"{where}: 'targetRuleChainId'")
    if target is None:
        raise RuleChainError(f"{where}: 'targetRuleChainId' must be set")
    layout = dict(raw.get("additionalInfo") or {}) if isinstance(raw.get("additionalInfo"), Mapping) else {}
    layout.pop("description", None)
    layout.pop("ruleChainNodeId", None)
    spec = NodeSpec(type=INPUT_NODE, name="Rule Chain Input", additional_info=layout,
                    configuration={"ruleChainId": str(target), "forwardMsgToDefaultRuleChain": False})
    connection = _parse_connection({"fromIndex": raw.get("fromIndex"), "toIndex": len(nodes),
                                    "type": raw.get("type")}, index, [*nodes, spec])
    return spec, connection


def _check_cycles(nodes: Sequence[NodeSpec], connections: Iterable[Connection]) -> None:
    """ThingsBoard refuses a connection to the node itself and any loop of connections."""
    following: dict[int, list[int]] = {}
    for c in connections:
        if c.from_index == c.to_index:
            raise RuleChainError(f"Can't create the relation to yourself: {nodes[c.from_index].describe(c.from_index)} "
                                 f"is connected to itself ('{c.type}').")
        following.setdefault(c.from_index, []).append(c.to_index)
    cycle = find_cycle(len(nodes), following)
    if cycle is not None:
        path = " -> ".join(f"{i} '{nodes[i].name}'" for i in cycle)
        raise RuleChainError(f"Can't create circling relations in rule chain: {path}.")


def find_cycle(count: int, following: Mapping[int, Sequence[int]]) -> list[int] | None:
    """A loop in the graph as the node indexes along it (first = last), or None. Iterative, so
    a long chain cannot exhaust the stack."""
    state = [0] * count  # 0 unvisited, 1 on the current path, 2 done
    for start in range(count):
        if state[start]:
            continue
        path = [start]
        cursors = [iter(following.get(start, ()))]
        state[start] = 1
        while cursors:
            nxt = next(cursors[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                cursors.pop()
            elif state[nxt] == 1:
                return [*path[path.index(nxt):], nxt]
            elif state[nxt] == 0:
                state[nxt] = 1
                path.append(nxt)
                cursors.append(iter(following.get(nxt, ())))
    return None


# --- building nodes ---------------------------------------------------------------------------------
def node_class(spec: NodeSpec, index: int) -> type[RuleNode]:
    _load_catalogue()
    cls = NODE_TYPES.get(spec.type)
    if cls is None:
        raise RuleChainError(f"{spec.describe(index)}: unknown node type '{spec.type}'; "
                             f"thingsray has no node of this class")
    return cls


def build_node(spec: NodeSpec, index: int, init: NodeInit) -> RuleNode:
    """The node, built from its configuration; a configuration it refuses raises RuleChainError."""
    cls = node_class(spec, index)
    try:
        return cls(spec.configuration, init)
    except (NodeConfigError, ScriptError) as exc:
        raise RuleChainError(f"'{spec.name}' node configuration is invalid (rule node {index} '{spec.name}', "
                             f"{spec.type}): {exc}") from None
    except Exception as exc:  # a node class that trips over an odd configuration: still the input's fault
        log.warning("building %s (%s) failed", spec.describe(index), spec.type, exc_info=True)
        raise RuleChainError(f"'{spec.name}' node configuration is invalid (rule node {index} '{spec.name}', "
                             f"{spec.type}): {type(exc).__name__}: {exc}") from None


def check_nodes(meta: RuleChainMetadata, *, tenant_id: uuid.UUID, chain_id: uuid.UUID, scripts: Any) -> None:
    """Build every node once, as the engine will; the first refusal raises RuleChainError.
    Scripts are compiled through ``scripts`` (the ScriptService), so a script that cannot run
    is refused here too; what was compiled is released afterwards. Synchronous, and a JS
    compile waits for V8: call it in a thread from async code."""
    compiling = _Compiling(scripts)
    try:
        for index, spec in enumerate(meta.nodes):
            build_node(spec, index, NodeInit(tenant_id=tenant_id, chain_id=chain_id,
                                             node_id=spec.id or uuid.uuid4(), scripts=compiling))  # type: ignore[arg-type]
    finally:
        compiling.release()


class _Compiling:
    """Passes ``compile`` on and keeps what it made, to release it once the check is over."""

    def __init__(self, scripts: Any) -> None:
        self._scripts = scripts
        self._compiled: list[Any] = []

    def compile(self, *args: Any, **kwargs: Any) -> Any:
        script = self._scripts.compile(*args, **kwargs)
        self._compiled.append(script)
        return script

    def __getattr__(self, name: str) -> Any:
        return getattr(self._scripts, name)

    def release(self) -> None:
        for script in self._compiled:
            close = getattr(script, "close", None)
            if close is not None:
                close()


class ScriptsUnavailable:
    """Where no script service is wired in: any node that compiles a script is refused, saying so."""

    def compile(self, lang: str, source: str, arg_names: Sequence[str]) -> Any:
        raise NodeConfigError(f"{lang} scripts cannot be checked: no script engine is available in this process")


_catalogue_loaded = False


def _load_catalogue() -> None:
    """Import the node catalogue once, so NODE_TYPES is complete."""
    global _catalogue_loaded
    if not _catalogue_loaded:
        import thingsray.rules.nodes  # noqa: F401

        _catalogue_loaded = True


# --- small helpers ----------------------------------------------------------------------------------
def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _flag(raw: Mapping[str, Any], key: str, where: str) -> bool:
    value = raw.get(key)
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):  # old exports write "false"
        return value.lower() == "true"
    raise RuleChainError(f"{where}: '{key}' must be true or false, got {value!r:.100}")


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise RuleChainError(f"'{what}' must be a list, got {type(value).__name__}")
    return value


def _optional_id(value: Any, what: str) -> uuid.UUID | None:
    if value is None:
        return None
    raw = value.get("id") if isinstance(value, Mapping) else value
    if raw is None:
        return None
    try:
        return uuid.UUID(str(raw))
    except ValueError:
        raise RuleChainError(f"{what} is not a valid id: {raw!r:.100}") from None


def _input_target(configuration: Mapping[str, Any]) -> uuid.UUID | None:
    raw = configuration.get("ruleChainId")
    if isinstance(raw, Mapping):
        raw = raw.get("id")
    try:
        return None if raw is None else uuid.UUID(str(raw))
    except ValueError:
        return None
