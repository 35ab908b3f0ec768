"""The rule chain model: what a saved chain must be, and the message that says why not."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any, ClassVar

import pytest

from thingsray.rules.model import (
    INPUT_NODE,
    OUTPUT_NODE,
    RuleChainError,
    ScriptsUnavailable,
    check_nodes,
    find_cycle,
    parse_metadata,
)
from thingsray.rules.node import NodeConfigError, NodeInit, RuleNode, node, require_str

DATA = Path(__file__).parent / "data"
TENANT, CHAIN = uuid.uuid4(), uuid.uuid4()


@node
class KeyedNode(RuleNode):
    """A node of these tests only: refuses a configuration without ``key``."""

    type = "test.thingsray.KeyedNode"
    relations: ClassVar[tuple[str, ...]] = ("Success", "Failure")

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.key = require_str(config, "key")


@node
class ScriptedNode(RuleNode):
    """Compiles its script at construction, as script nodes do."""

    type = "test.thingsray.ScriptedNode"

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.script = init.scripts.compile("TBEL", config.get("tbelScript", ""), ["msg", "metadata", "msgType"])


def keyed(name: str, key: str | None = "k") -> dict[str, Any]:
    return {"type": KeyedNode.type, "name": name, "configuration": {} if key is None else {"key": key}}


def chain(nodes: list[dict[str, Any]], connections: list[tuple[int, int, str]], first: int | None = 0) -> dict:
    return {"ruleChainId": {"entityType": "RULE_CHAIN", "id": str(CHAIN)}, "firstNodeIndex": first, "nodes": nodes,
            "connections": [{"fromIndex": f, "toIndex": t, "type": label} for f, t, label in connections]}


def refused(meta: dict[str, Any]) -> str:
    with pytest.raises(RuleChainError) as caught:
        check_nodes(parse_metadata(meta), tenant_id=TENANT, chain_id=CHAIN, scripts=ScriptsUnavailable())
    return str(caught.value)


def test_a_valid_chain_parses_with_its_connections_by_node():
    meta = parse_metadata(chain([keyed("a"), keyed("b"), keyed("c")], [(0, 1, "Success"), (0, 2, "Failure")]))
    check_nodes(meta, tenant_id=TENANT, chain_id=CHAIN, scripts=ScriptsUnavailable())
    assert meta.rule_chain_id == CHAIN and meta.first_node.name == "a"
    assert [(c.to_index, c.type) for c in meta.outputs(0)] == [(1, "Success"), (2, "Failure")]
    assert meta.outputs(1) == ()


@pytest.mark.parametrize(("meta", "expected"), [
    (chain([keyed("a"), {"type": "org.example.NoSuchNode", "name": "ghost"}], []),
     "Rule node 1 'ghost': unknown node type 'org.example.NoSuchNode'"),
    (chain([keyed("a"), keyed("b", key=None)], []),
     "'b' node configuration is invalid (rule node 1 'b', test.thingsray.KeyedNode): 'key' must be a non-empty"),
    (chain([keyed("a"), keyed("b")], [(0, 2, "Success")]), "Connection 0: 'toIndex' 2 does not point to a node"),
    (chain([keyed("a"), keyed("b")], [(-1, 1, "Success")]), "Connection 0: 'fromIndex' -1 does not point"),
    (chain([keyed("a"), keyed("b")], [(0, 1, "")]), "'type' (the relation) must be a non-empty string"),
    (chain([keyed("a"), keyed("b")], [(1, 1, "Success")]), "Can't create the relation to yourself: Rule node 1 'b'"),
    (chain([keyed("a"), keyed("b"), keyed("c")], [(0, 1, "Success"), (1, 2, "Success"), (2, 1, "Failure")]),
     "Can't create circling relations in rule chain: 1 'b' -> 2 'c' -> 1 'b'."),
    (chain([keyed("a")], [], first=1), "firstNodeIndex 1 does not point to a node: the chain has 1 node"),
    (chain([keyed("a")], [], first=True), "firstNodeIndex must be an integer"),
    (chain([{"type": ScriptedNode.type, "name": "s", "configuration": {"tbelScript": "return 1"}}], []),
     "TBEL scripts cannot be checked: no script engine is available"),
    ({"nodes": "all of them"}, "'nodes' must be a list"),
    ([], "Rule chain metadata must be a JSON object"),
    (chain([{"type": KeyedNode.type, "name": 7}], []), "Rule node 0: 'name' must be a string"),
    (chain([{**keyed("a"), "configuration": [1]}], []), "Rule node 0 'a': 'configuration' must be a JSON object"),
])
def test_each_kind_of_mistake_is_refused_naming_where(meta, expected):
    assert expected in refused(meta)


def test_node_config_errors_keep_the_nodes_own_words():
    message = refused(chain([{"type": INPUT_NODE, "name": "to nowhere", "configuration": {}}], []))
    assert "'to nowhere' node configuration is invalid" in message and "Rule chain must be set!" in message
    message = refused(chain([{"type": INPUT_NODE, "name": "bad", "configuration": {"ruleChainId": "x"}}], []))
    assert "Failed to parse rule chain id: x" in message


def test_legacy_rule_chain_connections_become_input_nodes():
    target = uuid.uuid4()
    meta = parse_metadata({**chain([keyed("a")], []), "ruleChainConnections": [
        {"fromIndex": 0, "targetRuleChainId": {"entityType": "RULE_CHAIN", "id": str(target)},
         "additionalInfo": {"layoutX": 1, "layoutY": 2, "ruleChainNodeId": "rule-chain-node-4"}, "type": "Success"}]})
    assert [n.type for n in meta.nodes] == [KeyedNode.type, INPUT_NODE]
    assert meta.input_targets() == {1: target} and meta.outputs(0)[0].to_index == 1
    assert meta.nodes[1].additional_info == {"layoutX": 1, "layoutY": 2}


def test_ids_are_kept_only_for_nodes_of_this_chain():
    mine, foreign = uuid.uuid4(), uuid.uuid4()
    meta = parse_metadata(chain([{**keyed("a"), "id": {"entityType": "RULE_NODE", "id": str(mine)}},
                                 {**keyed("b"), "id": str(foreign)}, {**keyed("c"), "id": str(mine)}], []))
    ids = [n.id for n in meta.with_ids({mine}).nodes]
    assert ids[0] == mine and ids[1] != foreign and len(set(ids)) == 3


def test_output_labels_are_the_output_nodes_names():
    meta = parse_metadata(chain([keyed("a"), {"type": OUTPUT_NODE, "name": "Done"},
                                 {"type": OUTPUT_NODE, "name": "Alarm"}, {"type": OUTPUT_NODE, "name": "Done"}], []))
    assert meta.output_labels() == ["Alarm", "Done"]


def test_a_long_chain_is_checked_without_recursion():
    count = 5000
    assert find_cycle(count, {i: [i + 1] for i in range(count - 1)}) is None
    assert find_cycle(count, {**{i: [i + 1] for i in range(count - 1)}, count - 1: [0]})[0] == 0


def test_the_default_root_chain_file_is_what_new_tenants_get():
    from thingsray.rules.defaults import root_rule_chain

    assert json.loads((DATA / "root_rule_chain.json").read_text()) == root_rule_chain()
    meta = parse_metadata(root_rule_chain()["metadata"])
    assert meta.first_node.type == "org.thingsboard.rule.engine.filter.TbMsgTypeSwitchNode"
    assert {c.type: meta.nodes[c.to_index].name for c in meta.outputs(2)} == {
        "Post telemetry": "Save Timeseries", "Post attributes": "Save Client Attributes",
        "RPC Request from Device": "Log RPC from Device", "Other": "Log Other",
        "RPC Request to Device": "RPC Call Request"}


def test_the_old_root_chain_starts_with_the_device_profile_node():
    meta = parse_metadata(json.loads((DATA / "root_rule_chain_pre_4_3.json").read_text())["metadata"])
    assert meta.first_node.type == "org.thingsboard.rule.engine.profile.TbDeviceProfileNode"
    assert [(c.to_index, c.type) for c in meta.outputs(meta.first_node_index)] == [(2, "Success")]
    assert {n.configuration.get("scriptLang") for n in meta.nodes if n.type.endswith("TbLogNode")} == {"MVEL"}


def test_a_node_class_never_sees_a_refused_shape():
    with pytest.raises(NodeConfigError):
        KeyedNode({}, NodeInit(TENANT, CHAIN, uuid.uuid4(), ScriptsUnavailable()))
