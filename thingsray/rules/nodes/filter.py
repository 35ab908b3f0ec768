"""Filter nodes: route a message by its type, its keys or a script's verdict."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.msg import MsgType
from thingsray.rules.node import FALSE, OTHER, TRUE, NodeInit, Outputs, RuleNode, node, optional, str_list
from thingsray.rules.nodes._script import compile_script, script_args

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext
    from thingsray.rules.msg import TbMsg

PREFIX = "org.thingsboard.rule.engine.filter."

CONNECTIONS = {
    MsgType.POST_ATTRIBUTES_REQUEST: "Post attributes", MsgType.POST_TELEMETRY_REQUEST: "Post telemetry",
    MsgType.TO_SERVER_RPC_REQUEST: "RPC Request from Device", MsgType.ACTIVITY_EVENT: "Activity Event",
    MsgType.INACTIVITY_EVENT: "Inactivity Event", MsgType.CONNECT_EVENT: "Connect Event",
    MsgType.DISCONNECT_EVENT: "Disconnect Event", MsgType.ENTITY_CREATED: "Entity Created",
    MsgType.ENTITY_UPDATED: "Entity Updated", MsgType.ENTITY_DELETED: "Entity Deleted",
    MsgType.ENTITY_ASSIGNED: "Entity Assigned", MsgType.ENTITY_UNASSIGNED: "Entity Unassigned",
    MsgType.ATTRIBUTES_UPDATED: "Attributes Updated", MsgType.ATTRIBUTES_DELETED: "Attributes Deleted",
    MsgType.ALARM_ACK: "Alarm Acknowledged", MsgType.ALARM_CLEAR: "Alarm Cleared",
    MsgType.ALARM_ASSIGNED: "Alarm Assigned", MsgType.ALARM_UNASSIGNED: "Alarm Unassigned",
    "COMMENT_CREATED": "Comment Created", "COMMENT_UPDATED": "Comment Updated",
    MsgType.RPC_CALL_FROM_SERVER_TO_DEVICE: "RPC Request to Device",
    "ENTITY_ASSIGNED_FROM_TENANT": "Entity Assigned From Tenant",
    "ENTITY_ASSIGNED_TO_TENANT": "Entity Assigned To Tenant",
    MsgType.TIMESERIES_UPDATED: "Timeseries Updated", MsgType.TIMESERIES_DELETED: "Timeseries Deleted",
    MsgType.RPC_QUEUED: "RPC Queued", MsgType.RPC_SENT: "RPC Sent", MsgType.RPC_DELIVERED: "RPC Delivered",
    MsgType.RPC_SUCCESSFUL: "RPC Successful", MsgType.RPC_TIMEOUT: "RPC Timeout",
    MsgType.RPC_EXPIRED: "RPC Expired", MsgType.RPC_FAILED: "RPC Failed", MsgType.RPC_DELETED: "RPC Deleted",
    "RELATION_ADD_OR_UPDATE": "Relation Added or Updated", "RELATION_DELETED": "Relation Deleted",
    "RELATIONS_DELETED": "All Relations Deleted", "REST_API_REQUEST": "REST API request",
}
"""ThingsBoard's relation label of each message type (TbMsgType.ruleNodeConnection); others: Other."""


@node
class MsgTypeSwitchNode(RuleNode):
    type = PREFIX + "TbMsgTypeSwitchNode"
    name = "message type switch"
    component = "FILTER"
    relations: ClassVar[tuple[str, ...]] = (*dict.fromkeys(CONNECTIONS.values()), OTHER)
    default_config: ClassVar[dict[str, Any]] = {"version": 0}
    sync = True

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        return [(CONNECTIONS.get(msg.type, OTHER), msg)]


@node
class MsgTypeFilterNode(RuleNode):
    type = PREFIX + "TbMsgTypeFilterNode"
    name = "message type"
    component = "FILTER"
    relations: ClassVar[tuple[str, ...]] = (TRUE, FALSE)
    default_config: ClassVar[dict[str, Any]] = {"messageTypes": ["POST_ATTRIBUTES_REQUEST", "POST_TELEMETRY_REQUEST"]}
    sync = True

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.types = frozenset(str_list(config, "messageTypes"))

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        return [(TRUE if msg.type in self.types else FALSE, msg)]


@node
class CheckMessageNode(RuleNode):
    """True when the message has the named data keys and metadata keys (all of them, or with
    ``checkAllKeys`` false, at least one)."""

    type = PREFIX + "TbCheckMessageNode"
    name = "check fields presence"
    component = "FILTER"
    relations: ClassVar[tuple[str, ...]] = (TRUE, FALSE)
    default_config: ClassVar[dict[str, Any]] = {"messageNames": [], "metadataNames": [], "checkAllKeys": True}
    sync = True

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.data_keys = str_list(config, "messageNames")
        self.metadata_keys = str_list(config, "metadataNames")
        self.all = optional(config, "checkAllKeys", bool, True)
        if not self.data_keys and not self.metadata_keys:
            from thingsray.rules.node import NodeConfigError

            raise NodeConfigError("Message or metadata key names must be set!")

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        data = msg.data if isinstance(msg.data, dict) else {}
        found = [k in data for k in self.data_keys] + [k in msg.metadata for k in self.metadata_keys]
        ok = all(found) if self.all else any(found)
        return [(TRUE if ok else FALSE, msg)]


@node
class JsFilterNode(RuleNode):
    """A script that answers true or false (``function Filter(msg, metadata, msgType)``)."""

    type = PREFIX + "TbJsFilterNode"
    name = "script"
    component = "FILTER"
    relations: ClassVar[tuple[str, ...]] = (TRUE, FALSE)
    default_config: ClassVar[dict[str, Any]] = {"scriptLang": "TBEL", "jsScript": "return msg.temperature > 20;",
                                                "tbelScript": "return msg.temperature > 20;"}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.script = compile_script(config, init)

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        verdict = await self.script.invoke(*script_args(msg))
        if not isinstance(verdict, bool):
            raise ValueError(f"Wrong result type: {type(verdict).__name__}; a filter script returns true or false")
        return [(TRUE if verdict else FALSE, msg)]


@node
class JsSwitchNode(RuleNode):
    """A script that names the relations to follow (a string or an array of them)."""

    type = PREFIX + "TbJsSwitchNode"
    name = "switch"
    component = "FILTER"
    relations: ClassVar[tuple[str, ...]] = ()
    default_config: ClassVar[dict[str, Any]] = {
        "scriptLang": "TBEL",
        "jsScript": "function nextRelation(metadata, msg) {\n    return ['one','nine'];\n}\n"
                    "if(msgType === 'POST_TELEMETRY_REQUEST') {\n    return ['two'];\n}\n"
                    "return nextRelation(metadata, msg);",
        "tbelScript": "function nextRelation(metadata, msg) {\n    return ['one','nine'];\n}\n"
                      "if(msgType == 'POST_TELEMETRY_REQUEST') {\n    return ['two'];\n}\n"
                      "return nextRelation(metadata, msg);"}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.script = compile_script(config, init)

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        chosen = await self.script.invoke(*script_args(msg))
        if isinstance(chosen, str):
            chosen = [chosen]
        if not isinstance(chosen, list) or not all(isinstance(c, str) for c in chosen):
            raise ValueError(f"Wrong result type: {type(chosen).__name__}; a switch script returns a relation "
                             "name or an array of them")
        return [(relation, msg) for relation in dict.fromkeys(chosen)]
