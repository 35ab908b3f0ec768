"""ThingsBoard's device and gateway topics (spec 1.1): what a device publishes to and may subscribe to."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Feature(enum.Enum):
    TELEMETRY = "telemetry"
    ATTRIBUTES = "attributes"
    ATTRIBUTE_REQUEST = "attribute_request"
    RPC_RESPONSE = "rpc_response"
    CLIENT_RPC = "client_rpc"
    CLAIM = "claim"


@dataclass(frozen=True, slots=True)
class Route:
    feature: Feature
    request_id: int | None = None
    short: bool = False
    """Came on a v2 short topic: answer on the short topic too."""


_EXACT = {
    "v1/devices/me/telemetry": Route(Feature.TELEMETRY),
    "v2/t": Route(Feature.TELEMETRY, short=True),
    "v1/devices/me/attributes": Route(Feature.ATTRIBUTES),
    "v2/a": Route(Feature.ATTRIBUTES, short=True),
    "v1/devices/me/claim": Route(Feature.CLAIM),
}
_WITH_ID = (
    ("v1/devices/me/attributes/request/", Feature.ATTRIBUTE_REQUEST, False),
    ("v2/a/req/", Feature.ATTRIBUTE_REQUEST, True),
    ("v1/devices/me/rpc/response/", Feature.RPC_RESPONSE, False),
    ("v2/r/res/", Feature.RPC_RESPONSE, True),
    ("v1/devices/me/rpc/request/", Feature.CLIENT_RPC, False),
    ("v2/r/req/", Feature.CLIENT_RPC, True),
)


def route(topic: str) -> Route | None:
    """The feature a publish topic addresses; None for a topic that does not exist."""
    exact = _EXACT.get(topic)
    if exact is not None:
        return exact
    for prefix, feature, short in _WITH_ID:
        if topic.startswith(prefix):
            tail = topic[len(prefix):]
            if tail.isdigit() and len(tail) <= 10:
                return Route(feature, int(tail), short)
            return None
    return None


class Subscription(enum.Enum):
    ATTRIBUTES = "attributes"
    ATTRIBUTES_SHORT = "attributes_short"
    RPC = "rpc"
    RPC_SHORT = "rpc_short"
    RESPONSES = "responses"
    """Attribute and RPC responses: always delivered; subscribing just says the device listens."""


SUBSCRIPTIONS = {
    "v1/devices/me/attributes": Subscription.ATTRIBUTES,
    "v2/a": Subscription.ATTRIBUTES_SHORT,
    "v1/devices/me/rpc/request/+": Subscription.RPC,
    "v2/r/req/+": Subscription.RPC_SHORT,
    "v1/devices/me/attributes/response/+": Subscription.RESPONSES,
    "v2/a/res/+": Subscription.RESPONSES,
    "v1/devices/me/rpc/response/+": Subscription.RESPONSES,
    "v2/r/res/+": Subscription.RESPONSES,
    "v1/devices/me/attributes/response/#": Subscription.RESPONSES,
    "v1/devices/me/rpc/request/#": Subscription.RPC,
    "v1/devices/me/rpc/response/#": Subscription.RESPONSES,
}


def attribute_response_topic(request_id: int, short: bool) -> str:
    return f"v2/a/res/{request_id}" if short else f"v1/devices/me/attributes/response/{request_id}"


def rpc_response_topic(request_id: int, short: bool) -> str:
    return f"v2/r/res/{request_id}" if short else f"v1/devices/me/rpc/response/{request_id}"


def rpc_request_topic(request_id: int, short: bool) -> str:
    return f"v2/r/req/{request_id}" if short else f"v1/devices/me/rpc/request/{request_id}"


def attributes_topic(short: bool) -> str:
    return "v2/a" if short else "v1/devices/me/attributes"


# --- the gateway API (spec 1.1): only a gateway device's session takes these ------------------
GATEWAY_PREFIX = "v1/gateway/"


class GatewayFeature(enum.Enum):
    CONNECT = "connect"
    DISCONNECT = "disconnect"
    TELEMETRY = "telemetry"
    ATTRIBUTES = "attributes"
    ATTRIBUTE_REQUEST = "attribute_request"
    RPC = "rpc"
    """A child's reply to a server-side RPC."""
    CLAIM = "claim"


GATEWAY_FEATURES = {
    "v1/gateway/connect": GatewayFeature.CONNECT,
    "v1/gateway/disconnect": GatewayFeature.DISCONNECT,
    "v1/gateway/telemetry": GatewayFeature.TELEMETRY,
    "v1/gateway/attributes": GatewayFeature.ATTRIBUTES,
    "v1/gateway/attributes/request": GatewayFeature.ATTRIBUTE_REQUEST,
    "v1/gateway/rpc": GatewayFeature.RPC,
    "v1/gateway/claim": GatewayFeature.CLAIM,
}
GATEWAY_ATTRIBUTES_TOPIC = "v1/gateway/attributes"
GATEWAY_ATTRIBUTE_RESPONSE_TOPIC = "v1/gateway/attributes/response"
GATEWAY_RPC_TOPIC = "v1/gateway/rpc"
GATEWAY_SUBSCRIPTIONS = frozenset((GATEWAY_ATTRIBUTES_TOPIC, GATEWAY_ATTRIBUTE_RESPONSE_TOPIC, GATEWAY_RPC_TOPIC))
