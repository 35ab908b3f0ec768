"""ThingsBoard's CoAP resource paths: ``/api/v1/{token}/{feature}[/{requestId}]`` and ``/api/v1/provision``.

What a path that does not fit answers follows ThingsBoard's CoapTransportResource: a path outside
``/api/v1`` is 4.04 (no such resource), an unknown feature 4.00, a feature without a token in front
of it (``/api/v1/telemetry``) 4.01. Feature names are matched without regard to case, as
ThingsBoard's ``FeatureType.valueOf(name.toUpperCase())`` does.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from aiocoap.numbers.codes import Code


class Feature(enum.Enum):
    TELEMETRY = "telemetry"
    ATTRIBUTES = "attributes"
    RPC = "rpc"
    CLAIM = "claim"
    PROVISION = "provision"


_FEATURES = {feature.value: feature for feature in Feature}


@dataclass(frozen=True, slots=True)
class Route:
    feature: Feature
    token: str | None
    """The device's access token; None for provisioning, which has none."""
    request_id: str | None = None
    """The path segment after the feature (``rpc/{id}``), unparsed."""


class RouteError(Exception):
    """A path the device API has no resource for; ``code`` is the CoAP answer."""

    def __init__(self, code: Code, message: str) -> None:
        super().__init__(message)
        self.code = code


def route(path: tuple[str, ...]) -> Route:
    """The feature, token and request id of a request's Uri-Path segments; raises ``RouteError``."""
    if len(path) < 2 or path[0] != "api" or path[1] != "v1":
        raise RouteError(Code.NOT_FOUND, f"no resource at /{'/'.join(path)}")
    rest = path[2:]
    if not rest:
        raise RouteError(Code.BAD_REQUEST, "the path names no feature: /api/v1/{token}/{feature}")
    first = _FEATURES.get(rest[0].lower())
    if first is Feature.PROVISION and len(rest) == 1:
        return Route(Feature.PROVISION, None)
    if len(rest) == 1 or (len(rest) == 2 and first is not None and rest[1].isdigit()):
        # /api/v1/{feature}[/{id}] is ThingsBoard's form for DTLS clients known by certificate
        if first is not None:
            raise RouteError(Code.UNAUTHORIZED, "the path has no access token: /api/v1/{token}/{feature}")
        raise RouteError(Code.BAD_REQUEST, f"unknown feature '{rest[0][:64]}'")
    feature = _FEATURES.get(rest[1].lower())
    if feature is None:
        raise RouteError(Code.BAD_REQUEST, f"unknown feature '{rest[1][:64]}'")
    if feature is Feature.PROVISION:
        return Route(Feature.PROVISION, None)
    return Route(feature, rest[0], rest[2] if len(rest) > 2 else None)
