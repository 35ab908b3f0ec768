"""The MQTT provisioning exchange (spec 1.1): a client that connects as ``provision`` (username
or client id) may subscribe to ``/provision/response`` and publish one kind of message,
``/provision/request``; the answer comes on ``/provision/response`` and the session closes a
while after it, as ThingsBoard closes it."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

from thingsray.transports.mqtt import codec
from thingsray.transports.mqtt.codec import (
    MQTT_5,
    Disconnect,
    PingReq,
    Publish,
    Reason,
    Subscribe,
    Unsubscribe,
)
from thingsray.transports.payloads import PayloadError, loads

if TYPE_CHECKING:
    from thingsray.transports.mqtt.session import MqttSession

log = logging.getLogger(__name__)

PROVISION = "provision"
REQUEST_TOPIC = "/provision/request"
RESPONSE_TOPIC = "/provision/response"
CLOSE_AFTER_ANSWER_S = 60.0
"""ThingsBoard closes a provisioning session this long after answering."""
IDLE_LIMIT_S = 60.0
"""A provisioning session that asks nothing for this long is closed."""


def is_provisioning(connect: codec.Connect) -> bool:
    return connect.client_id == PROVISION or connect.username == PROVISION


class ProvisioningExchange:
    """Runs a provisioning session to its end on the session's socket; the session's own serving
    loop never starts (no device, nothing registered with the platform)."""

    def __init__(self, session: MqttSession) -> None:
        self.session = session
        self.deadline = time.monotonic() + IDLE_LIMIT_S
        self.answered = False

    async def run(self, pending: list[codec.Packet]) -> None:
        session = self.session
        for packet in pending:
            if not await self._handle(packet):
                return
        while True:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                return
            try:
                async with asyncio.timeout(remaining):
                    data = await session.reader.read(65536)
            except TimeoutError:
                return
            if not data:
                return
            for packet in session._decoder.feed(data):
                if not await self._handle(packet):
                    return

    async def _handle(self, packet: codec.Packet) -> bool:
        """False ends the session."""
        session = self.session
        match packet:
            case Publish(topic=topic) if topic == REQUEST_TOPIC and not self.answered:
                return await self._request(packet)
            case Publish(topic=topic):
                log.debug("provisioning session %s: publish to %r refused", session.session_id, topic)
                return False
            case Subscribe(packet_id=packet_id, topics=filters):
                codes = [min(qos, 1) if topic == RESPONSE_TOPIC else (0x8F if session.level == MQTT_5 else 0x80)
                         for topic, qos in filters]
                await session._write(codec.suback(session.level, packet_id, codes))
            case Unsubscribe(packet_id=packet_id, topics=filters):
                await session._write(codec.unsuback(session.level, packet_id, len(filters)))
            case PingReq():
                await session._write(codec.pingresp())
            case Disconnect():
                return False
            case _:
                pass  # acks of what we never send with QoS, and the like
        return True

    async def _request(self, packet: Publish) -> bool:
        session = self.session
        try:
            request: Any = loads(packet.payload)
            if not isinstance(request, dict):
                raise PayloadError("a provisioning request must be a JSON object")
        except PayloadError as exc:
            log.debug("provisioning session %s: bad request: %s", session.session_id, exc)
            if session.level != MQTT_5:
                return False  # 3.1.1 has no negative PUBACK: close, as for any bad payload
            if packet.qos == 1:
                await session._write(codec.ack(session.level, codec.PacketType.PUBACK, packet.packet_id or 0,
                                               int(Reason.PAYLOAD_FORMAT_INVALID)))
            return True
        answer = await session.service.provision(request)
        if packet.qos == 1:
            await session._write(codec.ack(session.level, codec.PacketType.PUBACK, packet.packet_id or 0))
        payload = json.dumps(answer, separators=(",", ":")).encode()
        await session._write(codec.publish(session.level, RESPONSE_TOPIC, payload))
        self.answered = True
        self.deadline = time.monotonic() + CLOSE_AFTER_ANSWER_S
        return True
