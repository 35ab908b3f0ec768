"""Send email (ThingsBoard's TbSendEmailNode): sends a SEND_EMAIL message, the body ThingsBoard's
"to email" node makes (``from``, ``to``, ``cc``, ``bcc`` as comma-separated addresses,
``subject``, ``body``, ``html``, ``images``: content id to base64 or data-URL image), through the
node's SMTP server. The message leaves by Success once the server accepted the mail, by Failure
with ``error`` otherwise; a server that could not be connected to is tried twice more.

thingsray has no system SMTP settings: ``useSystemSmtpSettings`` (true in ThingsBoard's default
configuration) is refused with a configuration error that says what to set instead."""

from __future__ import annotations

import base64
import binascii
import json
import mimetypes
import re
import ssl
from email.message import EmailMessage
from typing import TYPE_CHECKING, Any, ClassVar

from thingsray.rules.node import FAILURE, SUCCESS, NodeConfigError, NodeInit, Outputs, RuleNode, node, one_of, optional
from thingsray.rules.nodes._external import (
    RETRIES,
    ClientCredentials,
    InFlight,
    backoff,
    error_text,
    route_outcome,
)
from thingsray.rules.pattern import plain_data

if TYPE_CHECKING:
    from thingsray.rules.context import RuleContext
    from thingsray.rules.msg import TbMsg

SEND_EMAIL = "SEND_EMAIL"
TLS_VERSIONS = {"TLSv1": ssl.TLSVersion.TLSv1, "TLSv1.1": ssl.TLSVersion.TLSv1_1,
                "TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}
ADDRESS_SEPARATOR = re.compile(r"\s*,\s*")
DATA_URL = re.compile(r"^data:(image/[^;]*);base64,?")
NO_SYSTEM_SMTP = ("'useSystemSmtpSettings' is true, but thingsray has no system SMTP settings: set it to false and "
                  "configure 'smtpHost', 'smtpPort' (and 'username', 'password' if the server needs them)")


def addresses(value: Any) -> list[str]:
    if not isinstance(value, str) or not value.strip():
        return []
    return [a for a in ADDRESS_SEPARATOR.split(value.strip()) if a]


def email_of(msg: TbMsg) -> dict[str, Any]:
    """The SEND_EMAIL body, checked as ThingsBoard checks it."""
    data = plain_data(msg.data)
    if isinstance(data, str):
        try:
            data = json.loads(data)
        except ValueError:
            raise ValueError("The SEND_EMAIL message body is not a JSON object") from None
    if not isinstance(data, dict):
        raise ValueError("The SEND_EMAIL message body is not a JSON object")
    to = data.get("to")
    if not isinstance(to, str) or not to.strip():
        raise ValueError(f"Email destination can not be blank [{to}]")
    return data


def mime_message(email: dict[str, Any]) -> tuple[EmailMessage, str, list[str]]:
    """The MIME message, its sender and every recipient (to, cc and bcc; bcc is in no header)."""
    sender = email.get("from")
    if not isinstance(sender, str) or not sender.strip():
        raise ValueError(f"Email sender can not be blank [{sender}]")
    to, cc, bcc = addresses(email.get("to")), addresses(email.get("cc")), addresses(email.get("bcc"))
    message = EmailMessage()
    message["From"] = sender.strip()
    message["To"] = ", ".join(to)
    if cc:
        message["Cc"] = ", ".join(cc)
    message["Subject"] = str(email.get("subject") or "")
    body = email.get("body")
    html = email.get("html") in (True, "true")
    message.set_content("" if body is None else str(body), subtype="html" if html else "plain", charset="utf-8")
    images = email.get("images") or {}
    if not isinstance(images, dict):
        raise ValueError("Email 'images' must be an object of content id to base64 image")
    for content_id, value in images.items():
        if not isinstance(value, str):
            raise ValueError(f"Email image '{content_id}' must be base64 text")
        found = DATA_URL.match(value)
        kind = found.group(1) if found else (mimetypes.guess_type(content_id)[0] or "application/octet-stream")
        try:
            raw = base64.b64decode(value[found.end():] if found else value, validate=False)
        except (binascii.Error, ValueError):
            raise ValueError(f"Email image '{content_id}' is not base64") from None
        main, _, sub = kind.partition("/")
        message.add_related(raw, maintype=main, subtype=sub or "octet-stream", cid=f"<{content_id}>",
                            disposition="inline", filename=content_id)
    return message, sender.strip(), [*to, *cc, *bcc]


@node
class SendEmailNode(RuleNode):
    type = "org.thingsboard.rule.engine.mail.TbSendEmailNode"
    name = "send email"
    component = "EXTERNAL"
    sync = True  # process only dispatches the sending
    default_config: ClassVar[dict[str, Any]] = {
        "useSystemSmtpSettings": True, "smtpHost": "localhost", "smtpProtocol": "smtp", "smtpPort": 25,
        "timeout": 10000, "enableTls": False, "tlsVersion": "TLSv1.2", "enableProxy": False}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        if optional(config, "useSystemSmtpSettings", bool, True):
            raise NodeConfigError(NO_SYSTEM_SMTP)
        if optional(config, "enableProxy", bool, False):
            raise NodeConfigError("'enableProxy' is not supported by the send email node: reach the SMTP server "
                                  "directly")
        host = config.get("smtpHost")
        if not isinstance(host, str) or not host.strip():
            raise NodeConfigError(f"'smtpHost' must name the SMTP server, got {host!r}")
        self.host = host.strip()
        self.protocol = one_of(config, "smtpProtocol", ("smtp", "smtps"), "smtp")
        self.port = optional(config, "smtpPort", int, 25)
        if not 0 < self.port < 65536:
            raise NodeConfigError(f"'smtpPort' must be 1 to 65535, got {self.port}")
        timeout_ms = optional(config, "timeout", int, 10000)
        if timeout_ms <= 0:
            raise NodeConfigError(f"'timeout' must be a positive number of milliseconds, got {timeout_ms}")
        self.timeout_s = timeout_ms / 1000
        self.username = optional(config, "username", str, "") or None
        self.password = optional(config, "password", str, "") or None
        self.start_tls = bool(optional(config, "enableTls", bool, False))
        version = optional(config, "tlsVersion", str, "TLSv1.2") or "TLSv1.2"
        if version not in TLS_VERSIONS:
            raise NodeConfigError(f"'tlsVersion' must be one of {', '.join(TLS_VERSIONS)}, got {version!r}")
        self.tls: ssl.SSLContext | None = None
        if self.protocol == "smtps" or self.start_tls:
            pinned = TLS_VERSIONS[version] if self.start_tls else None
            self.tls = ClientCredentials().ssl_context(minimum=pinned, maximum=pinned)
        self.in_flight = InFlight()

    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        if msg.type != SEND_EMAIL:
            raise ValueError(f"Not expected msg type {msg.type} for SendEmail Node")
        message, sender, recipients = mime_message(email_of(msg))
        self.in_flight.admit()
        tell_next = ctx.continuation()
        ctx.dispatch(route_outcome(self.in_flight, msg, tell_next,
                                   lambda: self._deliver(msg, message, sender, recipients)),
                     what=f"email to {', '.join(recipients)} through {self.host}:{self.port}")
        return []

    async def _deliver(self, msg: TbMsg, message: EmailMessage, sender: str,
                       recipients: list[str]) -> tuple[str, TbMsg]:
        import asyncio

        import aiosmtplib

        for attempt in range(RETRIES + 1):
            try:
                await aiosmtplib.send(
                    message, sender=sender, recipients=recipients, hostname=self.host, port=self.port,
                    username=self.username, password=self.password, timeout=self.timeout_s,
                    use_tls=self.protocol == "smtps", start_tls=self.start_tls, tls_context=self.tls)
                return SUCCESS, msg
            except (aiosmtplib.SMTPConnectError, aiosmtplib.SMTPConnectTimeoutError) as exc:
                if attempt == RETRIES:
                    return FAILURE, msg.with_metadata(error=error_text(exc))
                await asyncio.sleep(backoff(attempt))
            except (aiosmtplib.SMTPException, OSError) as exc:
                return FAILURE, msg.with_metadata(error=error_text(exc))
        raise AssertionError("unreachable")
