"""ThingsBoard's CoAP device API (``coap://host:5683/api/v1/{token}/...``) over aiocoap.

Layers, each in its module: ``stack`` (the aiocoap server on a UDP socket), ``paths`` (the URI
scheme), ``resource`` (requests as ``TransportService`` calls and their response codes),
``session`` (observations and the platform session of a client), ``server`` (all of it on a port).
Like every transport it imports nothing of ``ray`` or ``actors``. DTLS (coaps, port 5684) is not
served."""

from thingsray.transports.coap.resource import CoapOptions
from thingsray.transports.coap.server import CoapServer
from thingsray.transports.coap.session import CoapClient

__all__ = ["CoapClient", "CoapOptions", "CoapServer"]
