"""ThingsBoard's HTTP device API (``/api/v1/{token}/...``), as a framework-free adaptor.

The Serve application routes the requests (serve_app/routers/device_api.py); this package turns
their bodies into calls on a ``TransportService``, as the MQTT session does, and says what to
answer. Like every transport it imports nothing of ``ray`` or ``actors``."""

from thingsray.transports.http.adaptor import (
    DEFAULT_TIMEOUT_MS,
    MAX_PAYLOAD_SIZE,
    MAX_TIMEOUT_MS,
    HttpAnswer,
    HttpDeviceApi,
    Subscribe,
    long_poll_timeout_ms,
    shared_attribute_update,
)

__all__ = ["DEFAULT_TIMEOUT_MS", "MAX_PAYLOAD_SIZE", "MAX_TIMEOUT_MS", "HttpAnswer", "HttpDeviceApi", "Subscribe",
           "long_poll_timeout_ms", "shared_attribute_update"]
