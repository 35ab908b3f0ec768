"""ThingsBoard's WebSocket APIs (``/api/ws`` and ``/api/ws/plugins/telemetry``): live telemetry
and attributes through the replica's live subscriptions."""

from thingsray.serve_app.ws.routes import router

__all__ = ["router"]
