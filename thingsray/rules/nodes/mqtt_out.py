"""MQTT (ThingsBoard's TbMqttNode): publishes the message body to a broker with QoS 1 (at least
once) on a topic made from ``topicPattern``. The node keeps one connection per shard, opened by
the first message and closed with the node; a lost connection is opened again, after a wait
that doubles with each failed attempt. The message leaves by Success once the broker has
acknowledged it, by Failure with ``error`` when it could not be published.

As in ThingsBoard, a fixed ``clientId`` is used as is: a chain runs on every shard, so give
several shards distinct ids with ``appendClientIdSuffix`` (the shard number is appended), or
the broker disconnects one shard's connection for another's."""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.node import FAILURE, SUCCESS, NodeConfigError, NodeInit, Outputs, RuleNode, node, optional
from thingsray.rules.nodes._external import (
    RETRIES,
    ClientCredentials,
    InFlight,
    backoff,
    body_text,
    error_text,
    route_outcome,
)
from thingsray.rules.pattern import process_pattern

if TYPE_CHECKING:
    import aiomqtt

    from thingsray.rules.context import RuleContext
    from thingsray.rules.msg import TbMsg

log = logging.getLogger(__name__)

MAX_CLIENT_ID = 23
RECONNECT_MAX_S = 30.0
PROTOCOLS = ("MQTT_3_1", "MQTT_3_1_1", "MQTT_5")


class BrokerUnreachable(ConnectionError):
    """The broker could not be connected to (ThingsBoard's 'Failed to connect to MQTT broker at ...')."""


class BrokerLink:
    """One connection to a broker, opened on first use and again after it is lost. After a failed
    connection attempt the next one waits: 0.25 s, doubling up to ``RECONNECT_MAX_S``; a message
    that would wait longer than the connect timeout fails at once instead."""

    def __init__(self, options: dict[str, Any], connect_timeout_s: float, where: str) -> None:
        self.options = options
        self.connect_timeout_s = connect_timeout_s
        self.where = where
        self._client: aiomqtt.Client | None = None
        self._lock = asyncio.Lock()
        self._failures = 0
        self._not_before = 0.0

    async def publish(self, topic: str, payload: bytes, retain: bool) -> None:
        import aiomqtt

        for attempt in range(RETRIES + 1):
            try:
                client = await self._connected()
            except BrokerUnreachable:
                if attempt == RETRIES:
                    raise
                continue  # the next attempt waits out the link's backoff
            try:
                await client.publish(topic, payload, qos=1, retain=retain, timeout=self.connect_timeout_s)
                return
            except aiomqtt.MqttError:
                await self._drop(client)
                if attempt == RETRIES:
                    raise
                await asyncio.sleep(backoff(attempt))

    async def _connected(self) -> aiomqtt.Client:
        async with self._lock:
            if self._client is not None:
                return self._client
            import aiomqtt

            wait = self._not_before - time.monotonic()
            if wait > self.connect_timeout_s:  # the broker has been unreachable for a while: do not queue up
                raise BrokerUnreachable(f"Failed to connect to MQTT broker at {self.where}. "
                                        f"Next attempt in {wait:.1f} s")
            if wait > 0:
                await asyncio.sleep(wait)
            client = aiomqtt.Client(**self.options, timeout=self.connect_timeout_s)
            try:
                await client.__aenter__()
            except aiomqtt.MqttError as exc:
                self._failures += 1
                self._not_before = time.monotonic() + min(RECONNECT_MAX_S, backoff(self._failures - 1))
                code = getattr(exc, "rc", None)
                detail = f" Result code is: {code}" if code is not None else f" {exc}"
                raise BrokerUnreachable(f"Failed to connect to MQTT broker at {self.where}.{detail}") from exc
            self._failures = 0
            self._client = client
            return client

    async def _drop(self, client: aiomqtt.Client) -> None:
        async with self._lock:
            if self._client is client:
                self._client = None
        await _disconnect(client, self.where)

    async def close(self) -> None:
        async with self._lock:
            client, self._client = self._client, None
        if client is not None:
            await _disconnect(client, self.where)


async def _disconnect(client: aiomqtt.Client, where: str) -> None:
    import aiomqtt

    try:
        await client.__aexit__(None, None, None)
    except aiomqtt.MqttError as exc:  # the connection is gone already: nothing left to release
        log.debug("MQTT node: disconnecting from %s: %s", where, exc)


@node
class MqttNode(RuleNode):
    type = "org.thingsboard.rule.engine.mqtt.TbMqttNode"
    name = "mqtt"
    component = "EXTERNAL"
    sync = True  # process only dispatches the publish
    default_config: ClassVar[dict[str, Any]] = {
        "topicPattern": "my-topic", "host": None, "port": 1883, "connectTimeoutSec": 10, "clientId": None,
        "appendClientIdSuffix": False, "retainedMessage": False, "cleanSession": True, "ssl": False,
        "protocolVersion": "MQTT_3_1_1", "parseToPlainText": False, "credentials": {"type": "anonymous"}}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        topic = config.get("topicPattern")
        if not isinstance(topic, str) or not topic:
            raise NodeConfigError(f"'topicPattern' must be a non-empty topic pattern, got {topic!r}")
        self.topic_pattern = topic
        host = config.get("host")
        if not isinstance(host, str) or not host.strip():
            raise NodeConfigError(f"'host' must name the MQTT broker, got {host!r}")
        self.host = host.strip()
        self.port = optional(config, "port", int, 1883)
        if not 0 < self.port < 65536:
            raise NodeConfigError(f"'port' must be 1 to 65535, got {self.port}")
        self.connect_timeout_s = float(optional(config, "connectTimeoutSec", int, 10) or 10)
        self.client_id = optional(config, "clientId", str, "") or ""
        self.append_suffix = bool(optional(config, "appendClientIdSuffix", bool, False))
        if self.client_id and not self.append_suffix:
            _check_client_id(self.client_id, NodeConfigError)
        self.retain = bool(optional(config, "retainedMessage", bool, False))
        self.clean_session = bool(optional(config, "cleanSession", bool, True))
        self.plain_text = bool(optional(config, "parseToPlainText", bool, False))
        protocol = optional(config, "protocolVersion", str, "MQTT_3_1_1") or "MQTT_3_1_1"
        if protocol not in PROTOCOLS:
            raise NodeConfigError(f"'protocolVersion' must be one of {', '.join(PROTOCOLS)}, got {protocol!r}")
        self.protocol = protocol
        self.credentials = ClientCredentials.parse(config)
        self.tls: ssl.SSLContext | None = None
        if optional(config, "ssl", bool, False):
            self.tls = self.credentials.ssl_context()
        self.in_flight = InFlight()
        self._link: BrokerLink | None = None

    def _options(self, shard: int) -> dict[str, Any]:
        import aiomqtt

        identifier = self.client_id
        if identifier and self.append_suffix:
            identifier = _check_client_id(f"{identifier}_{shard}", ValueError)
        version = {"MQTT_3_1": aiomqtt.ProtocolVersion.V31, "MQTT_3_1_1": aiomqtt.ProtocolVersion.V311,
                   "MQTT_5": aiomqtt.ProtocolVersion.V5}[self.protocol]
        options: dict[str, Any] = {"hostname": self.host, "port": self.port, "identifier": identifier or None,
                                   "protocol": version, "tls_context": self.tls}
        if version == aiomqtt.ProtocolVersion.V5:
            options["clean_start"] = self.clean_session
        else:
            options["clean_session"] = self.clean_session
        if self.credentials.type == "basic":
            options["username"] = self.credentials.username
            options["password"] = self.credentials.password or None
        return options

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        topic = process_pattern(self.topic_pattern, msg)
        if not topic or "+" in topic or "#" in topic:
            raise ValueError(f"Topic '{topic}' is not a valid topic to publish to")
        payload = body_text(msg.data, self.plain_text).encode()
        if self._link is None:
            self._link = BrokerLink(self._options(ctx.shard), self.connect_timeout_s, f"{self.host}:{self.port}")
        link = self._link
        self.in_flight.admit()
        tell_next = ctx.continuation()
        ctx.dispatch(route_outcome(self.in_flight, msg, tell_next, lambda: self._deliver(link, msg, topic, payload)),
                     what=f"MQTT publish to {topic}")
        return []

    async def _deliver(self, link: BrokerLink, msg: TbMsg, topic: str, payload: bytes) -> tuple[str, TbMsg]:
        import aiomqtt

        try:
            await link.publish(topic, payload, self.retain)
        except (aiomqtt.MqttError, BrokerUnreachable) as exc:
            return FAILURE, msg.with_metadata(error=error_text(exc))
        return SUCCESS, msg

    async def close(self) -> None:
        if self._link is not None:
            link, self._link = self._link, None
            await link.close()


def _check_client_id(client_id: str, error: type[Exception]) -> str:
    if len(client_id) > MAX_CLIENT_ID:
        raise error(f"Client ID is too long '{client_id}'. The length of Client ID cannot be longer than "
                    f"{MAX_CLIENT_ID}, but current length is {len(client_id)}.")
    return client_id
