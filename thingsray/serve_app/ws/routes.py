"""The two WebSocket endpoints of ThingsBoard, served by ``WsSession``."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from thingsray.serve_app.services import Services
from thingsray.serve_app.ws.session import Endpoint, SocketGone, WsSession

router = APIRouter()


class StarletteSocket:
    """``Socket`` over a Starlette WebSocket."""

    def __init__(self, websocket: WebSocket) -> None:
        self.websocket = websocket

    async def receive(self) -> str | bytes | None:
        message: dict[str, Any] = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return None
        text = message.get("text")
        return text if text is not None else message.get("bytes") or b""

    async def send_text(self, text: str) -> None:
        if self.websocket.application_state is not WebSocketState.CONNECTED:
            raise SocketGone()
        try:
            await self.websocket.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:  # RuntimeError: closed under us
            raise SocketGone() from exc

    async def close(self, code: int, reason: str) -> None:
        if self.websocket.application_state is not WebSocketState.CONNECTED:
            return
        try:
            await self.websocket.close(code, reason or None)
        except (WebSocketDisconnect, RuntimeError, OSError) as exc:
            raise SocketGone() from exc


async def _serve(websocket: WebSocket, endpoint: Endpoint) -> None:
    services: Services = websocket.app.state.services
    await websocket.accept()
    token = websocket.query_params.get("token") or None
    session = WsSession(services, StarletteSocket(websocket), endpoint, token=token, live=services.subscriptions)
    await session.run()


@router.websocket("/api/ws/plugins/telemetry")
async def telemetry_plugin(websocket: WebSocket) -> None:
    """ThingsBoard's telemetry plugin socket: ``?token=JWT``, then ``tsSubCmds``, ``attrSubCmds``,
    ``historyCmds``."""
    await _serve(websocket, Endpoint.TELEMETRY)


@router.websocket("/api/ws")
async def general(websocket: WebSocket) -> None:
    """ThingsBoard's WebSocket API: ``authCmd`` first, then ``cmds`` of TIMESERIES, ATTRIBUTES,
    TIMESERIES_HISTORY (and their ``unsubscribe``), ENTITY_DATA, ENTITY_COUNT, ALARM_DATA, ALARM_COUNT
    (and their ``*_UNSUBSCRIBE``)."""
    await _serve(websocket, Endpoint.GENERAL)
