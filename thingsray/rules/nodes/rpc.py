"""RPC nodes: a server-side RPC to the originating device (RPC Call Request), and the answer
to a device-side RPC (RPC Call Reply)."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.node import FAILURE, SUCCESS, NodeConfigError, NodeInit, Outputs, RuleNode, node, optional

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext
    from thingsray.rules.msg import TbMsg

PREFIX = "org.thingsboard.rule.engine.rpc."


def _body(msg: TbMsg) -> dict[str, Any]:
    data = msg.data
    if isinstance(data, str):
        import json

        data = json.loads(data)
    if not isinstance(data, dict):
        raise ValueError("Message body must be a JSON object")
    return data


@node
class SendRpcRequestNode(RuleNode):
    """Sends ``{"method", "params"}`` of the message to its device; the device's answer leaves
    this node later, by Success (the response as the message body) or Failure (with the error)."""

    type = PREFIX + "TbSendRPCRequestNode"
    name = "rpc call request"
    component = "ACTION"
    default_config: ClassVar[dict[str, Any]] = {"timeoutInSeconds": 60}
    sync = True

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.timeout_s = optional(config, "timeoutInSeconds", int, 60)
        if self.timeout_s < 1:
            raise NodeConfigError("'timeoutInSeconds' must be at least 1")

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if msg.originator.entity_type != "DEVICE":
            raise ValueError("Message originator is not a device entity!")
        body = _body(msg)
        if "method" not in body:
            raise ValueError("Method is not present in the message!")
        if "params" not in body:
            raise ValueError("Params are not present in the message!")
        timeout_ms = self.timeout_s * 1000
        expiration = msg.metadata.get("expirationTime")
        if expiration and expiration.isdigit():
            timeout_ms = max(1, int(expiration) - msg.ts)
        oneway = msg.metadata.get("oneway") == "true"
        request = {"method": body["method"], "params": body["params"], "oneway": oneway, "timeout": timeout_ms,
                   "requestUUID": msg.metadata.get("requestUUID")}  # a REST call's: the answer goes to it too
        outcome = ctx.send_rpc(msg.originator.id, request)
        tell_next = ctx.continuation()

        async def answer() -> None:
            result = await outcome
            status = getattr(getattr(result, "status", None), "value", "SUCCESSFUL")
            if status in ("SUCCESSFUL", "DELIVERED"):
                response = getattr(result, "response", None)
                tell_next(SUCCESS, msg.copy(data=response if response is not None else {},
                                                id=uuid.uuid4(), correlation=msg.id))
            else:
                tell_next(FAILURE, msg.with_metadata(error=f"RPC {status.lower().replace('_', ' ')}"))

        ctx.dispatch(answer(), what=f"RPC {body['method']} to device {msg.originator.id}")
        return []


@node
class SendRpcReplyNode(RuleNode):
    """Answers a device-side RPC: the message body is the answer, metadata ``requestId`` says which."""

    type = PREFIX + "TbSendRPCReplyNode"
    name = "rpc call reply"
    component = "ACTION"
    default_config: ClassVar[dict[str, Any]] = {"requestIdMetaDataAttribute": "requestId"}
    sync = True

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        self.request_key = optional(config, "requestIdMetaDataAttribute", str, "requestId") or "requestId"

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if msg.originator.entity_type != "DEVICE":
            raise ValueError("Message originator is not a device entity!")
        request_id = msg.metadata.get(self.request_key)
        if not request_id or not request_id.lstrip("-").isdigit():
            raise ValueError("Request id is not present in the metadata!")
        if msg.data is None or msg.data == "":
            raise ValueError("Request body is empty!")
        await ctx.reply_rpc(msg.originator.id, int(request_id), msg.data)
        return [(SUCCESS, msg)]
