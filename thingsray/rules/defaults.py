"""The rule chain every tenant starts with: ThingsBoard's default root chain (4.3 and later),
in ThingsBoard's export format (``{"ruleChain", "metadata"}``)."""

from __future__ import annotations

from typing import Any

_ENGINE = "org.thingsboard.rule.engine."
LOG_SCRIPT = ("return '\\nIncoming message:\\n' + JSON.stringify(msg) + "
              "'\\nIncoming metadata:\\n' + JSON.stringify(metadata);")


def _node(kind: str, name: str, x: int, y: int, configuration: dict[str, Any], version: int = 0) -> dict[str, Any]:
    return {"type": _ENGINE + kind, "name": name, "debugMode": False, "singletonMode": False, "queueName": None,
            "configurationVersion": version, "configuration": configuration,
            "additionalInfo": {"layoutX": x, "layoutY": y}}


def root_rule_chain() -> dict[str, Any]:
    """A fresh copy (callers may change it)."""
    on_every_message = {"type": "ON_EVERY_MESSAGE"}
    log = {"scriptLang": "TBEL", "jsScript": LOG_SCRIPT, "tbelScript": LOG_SCRIPT}
    return {
        "ruleChain": {"name": "Root Rule Chain", "type": "CORE", "firstRuleNodeId": None, "root": True,
                      "debugMode": False, "configuration": None, "additionalInfo": None},
        "metadata": {
            "firstNodeIndex": 2,
            "nodes": [
                _node("telemetry.TbMsgTimeseriesNode", "Save Timeseries", 824, 156,
                      {"defaultTTL": 0, "useServerTs": False, "processingSettings": dict(on_every_message)}, 1),
                _node("telemetry.TbMsgAttributesNode", "Save Client Attributes", 825, 52,
                      {"scope": "CLIENT_SCOPE", "notifyDevice": False, "sendAttributesUpdatedNotification": False,
                       "updateAttributesOnlyOnValueChange": True, "processingSettings": dict(on_every_message)}, 3),
                _node("filter.TbMsgTypeSwitchNode", "Message Type Switch", 347, 149, {"version": 0}),
                _node("action.TbLogNode", "Log RPC from Device", 825, 266, dict(log)),
                _node("action.TbLogNode", "Log Other", 825, 379, dict(log)),
                _node("rpc.TbSendRPCRequestNode", "RPC Call Request", 825, 468, {"timeoutInSeconds": 60}),
            ],
            "connections": [
                {"fromIndex": 2, "toIndex": 0, "type": "Post telemetry"},
                {"fromIndex": 2, "toIndex": 1, "type": "Post attributes"},
                {"fromIndex": 2, "toIndex": 3, "type": "RPC Request from Device"},
                {"fromIndex": 2, "toIndex": 4, "type": "Other"},
                {"fromIndex": 2, "toIndex": 5, "type": "RPC Request to Device"},
            ],
            "ruleChainConnections": None,
        },
    }
