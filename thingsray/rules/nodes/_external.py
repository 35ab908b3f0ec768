"""What the external nodes (REST API call, MQTT, send email) share: client credentials as
ThingsBoard writes them, TLS contexts made from them, the body text a message sends, the error
text a failure carries, and the bound on calls a node has in flight.

An external node's ``process`` never waits on the outside world: it checks the message, takes
its continuation, dispatches the call and returns no outputs. The call's outcome leaves the node
later, by Success or by Failure with ``error`` in the metadata."""

from __future__ import annotations

import os
import ssl
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from thingsray.rules.node import FAILURE, NodeConfigError, optional
from thingsray.rules.pattern import json_text, plain_data

if TYPE_CHECKING:
    from thingsray.rules.msg import TbMsg

RETRIES = 2
"""Further attempts after a connection error (the request never reached the other side)."""
BACKOFF_S = 0.25
"""The wait before the first retry; it doubles for each further one."""
MAX_PENDING = 10_000
"""Calls one node may have dispatched and not yet answered; more fail at once."""
PENDING_LIMIT_ERROR = "Max pending requests limit exceeded!"
CREDENTIAL_TYPES = ("anonymous", "basic", "cert.PEM")


@dataclass(frozen=True, slots=True)
class ClientCredentials:
    """ThingsBoard's ClientCredentials: ``{"type": "anonymous" | "basic" | "cert.PEM", ...}``."""

    type: str = "anonymous"
    username: str | None = None
    password: str | None = None
    ca_cert: str | None = None
    cert: str | None = None
    private_key: str | None = None

    @classmethod
    def parse(cls, config: dict[str, Any], key: str = "credentials") -> ClientCredentials:
        raw = config.get(key)
        if raw is None:
            return cls()
        if not isinstance(raw, dict):
            raise NodeConfigError(f"'{key}' must be an object with a 'type', got {raw!r}")
        kind = raw.get("type") or "anonymous"
        if kind not in CREDENTIAL_TYPES:
            raise NodeConfigError(f"'{key}.type' must be one of {', '.join(CREDENTIAL_TYPES)}, got {kind!r}")
        if kind == "anonymous":
            return cls()
        if kind == "basic":
            username = optional(raw, "username", str, "")
            if not username:
                raise NodeConfigError(f"'{key}.username' must be set for basic credentials")
            return cls("basic", username=username, password=optional(raw, "password", str, ""))
        cert = optional(raw, "cert", str, "") or None
        private_key = optional(raw, "privateKey", str, "") or None
        if (cert is None) != (private_key is None):
            raise NodeConfigError(f"'{key}' of type cert.PEM needs both 'cert' and 'privateKey', or neither")
        return cls("cert.PEM", password=optional(raw, "password", str, "") or None,
                   ca_cert=optional(raw, "caCert", str, "") or None, cert=cert, private_key=private_key)

    def ssl_context(self, *, minimum: ssl.TLSVersion | None = None,
                    maximum: ssl.TLSVersion | None = None) -> ssl.SSLContext:
        """A client TLS context: the system's trusted CAs, or ``caCert`` alone when given; the
        client certificate of cert.PEM credentials. Raises NodeConfigError naming what is wrong."""
        try:
            context = ssl.create_default_context(cadata=self.ca_cert) if self.ca_cert else \
                ssl.create_default_context()
        except ssl.SSLError as exc:
            raise NodeConfigError(f"'credentials.caCert' is not a usable PEM certificate: {exc}") from None
        if minimum is not None:
            context.minimum_version = minimum
        if maximum is not None:
            context.maximum_version = maximum
        if self.cert and self.private_key:
            _load_client_certificate(context, self.cert, self.private_key, self.password)
        return context


def _load_client_certificate(context: ssl.SSLContext, cert: str, key: str, password: str | None) -> None:
    # ssl loads a certificate chain from files only: write both to a private directory, briefly
    with tempfile.TemporaryDirectory(prefix="thingsray-tls-") as folder:
        cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
        for path, text in ((cert_path, cert), (key_path, key)):
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(text)
        try:
            context.load_cert_chain(cert_path, key_path, password=password or None)
        except ssl.SSLError as exc:
            raise NodeConfigError(f"Creating TLS factory failed! 'credentials.cert' and 'credentials.privateKey' "
                                  f"are not a matching PEM certificate and key: {exc}") from None


def body_text(data: Any, plain_text: bool) -> str:
    """What the message sends: its body as JSON text, or with ``parseToPlainText`` a text body
    without its JSON quotes (ThingsBoard's JacksonUtil.toPlainText)."""
    data = plain_data(data)
    if plain_text and isinstance(data, str):
        return data
    return json_text(data)


def error_text(exc: BaseException) -> str:
    """The ``error`` metadata of a failed call: the error's class and message, as ThingsBoard's
    ``e.getClass() + ": " + e.getMessage()``."""
    kind = type(exc)
    module = kind.__module__
    name = kind.__qualname__ if module in ("builtins", "") else f"{module}.{kind.__qualname__}"
    message = str(exc) or repr(exc)
    return f"class {name}: {message}"


class InFlight:
    """Counts a node's dispatched calls; ``admit`` refuses past ``limit``."""

    __slots__ = ("count", "limit")

    def __init__(self, limit: int = MAX_PENDING) -> None:
        self.limit = limit
        self.count = 0

    def admit(self) -> None:
        if self.count >= self.limit:
            raise RuntimeError(PENDING_LIMIT_ERROR)
        self.count += 1

    def done(self) -> None:
        self.count -= 1


async def route_outcome(in_flight: InFlight, msg: TbMsg, tell_next: Callable[[str, TbMsg], None],
                        exchange: Callable[[], Awaitable[tuple[str, TbMsg]]]) -> None:
    """Run a dispatched external call (``exchange()``, made here so a call cancelled before it
    starts leaves no coroutine unawaited) and route its ``(relation, message)`` on. A fault of ours
    still sends the message by Failure, and is raised so the dispatcher logs it; the node's
    in-flight slot is given back however the call ends."""
    try:
        relation, out = await exchange()
    except Exception as exc:
        tell_next(FAILURE, msg.with_metadata(error=error_text(exc)))
        raise
    finally:
        in_flight.done()
    tell_next(relation, out)


def backoff(attempt: int) -> float:
    """Seconds to wait before retry number ``attempt`` (0-based)."""
    return BACKOFF_S * (2 ** attempt)
