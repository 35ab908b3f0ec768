"""REST API call (ThingsBoard's TbRestApiCallNode): sends the message to an HTTP endpoint; the
response leaves the node later, by Success (its body as the message body, its status and
headers in the metadata) or by Failure (``error``, and for an answered call its status and
``error_body``). The device's message is acknowledged without waiting for the call.

A call that could not connect (the request never left) is tried twice more, 0.25 s and 0.5 s
later. ``readTimeoutMs`` 0 means no read timeout, as in ThingsBoard; ``maxParallelRequestsCount``
bounds the calls out at once, the others wait their turn."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from collections.abc import Callable
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlsplit

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
    import httpx

    from thingsray.rules.context import RuleContext
    from thingsray.rules.msg import TbMsg

METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE")
WITH_BODY = frozenset({"POST", "PUT", "PATCH", "DELETE"})
CONNECT_TIMEOUT_S = 10.0
MAX_BUFFER_KB = 25_000
SPRING_NAMES = {413: "PAYLOAD_TOO_LARGE", 414: "URI_TOO_LONG", 416: "REQUESTED_RANGE_NOT_SATISFIABLE"}
"""Where Spring's HttpStatus names a code differently from Python's HTTPStatus."""

TellNext = Callable[[str, "TbMsg"], None]


class BufferLimitError(RuntimeError):
    """The response body is larger than ``maxInMemoryBufferSizeInKb``."""


def status_name(code: int) -> str:
    if code in SPRING_NAMES:
        return SPRING_NAMES[code]
    try:
        return HTTPStatus(code).name
    except ValueError:
        return str(code)


def status_reason(code: int, fallback: str) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return fallback or str(code)


def check_url(url: str) -> str:
    """ThingsBoard's TbHttpClient.buildEncodedUri checks, with its error texts."""
    if not url:
        raise ValueError("Url string cannot be empty!")
    parts = urlsplit(url)
    if not parts.scheme:
        raise ValueError("Transport scheme(protocol) must be provided!")
    if not parts.netloc or not parts.hostname:
        raise ValueError("Url string is invalid!")
    return url


def headers_to_metadata(response: httpx.Response) -> dict[str, str]:
    """Response headers as metadata: one value as is, several as a JSON array (ThingsBoard's
    headersToMetaData); names as the server wrote them."""
    grouped: dict[str, list[str]] = {}
    for raw_name, raw_value in response.headers.raw:
        grouped.setdefault(raw_name.decode("latin-1"), []).append(raw_value.decode("latin-1"))
    return {name: values[0] if len(values) == 1 else json.dumps(values) for name, values in grouped.items()}


def response_data(text: str) -> Any:
    """The response body as the message body: JSON when it is JSON, else the text; ``{}`` when empty."""
    if not text:
        return {}
    try:
        return json.loads(text)
    except ValueError:
        return text


@node
class RestApiCallNode(RuleNode):
    type = "org.thingsboard.rule.engine.rest.TbRestApiCallNode"
    name = "rest api call"
    component = "EXTERNAL"
    sync = True  # process only dispatches the call
    default_config: ClassVar[dict[str, Any]] = {
        "restEndpointUrlPattern": "http://localhost/api", "requestMethod": "POST",
        "headers": {"Content-Type": "application/json"}, "useSimpleClientHttpFactory": False,
        "readTimeoutMs": 0, "maxParallelRequestsCount": 0, "parseToPlainText": False, "enableProxy": False,
        "useSystemProxyProperties": False, "proxyHost": None, "proxyPort": 0, "proxyUser": None,
        "proxyPassword": None, "proxyScheme": None, "credentials": {"type": "anonymous"},
        "ignoreRequestBody": False, "maxInMemoryBufferSizeInKb": 256}

    def __init__(self, config: dict[str, Any], init: NodeInit) -> None:
        super().__init__(config, init)
        url = config.get("restEndpointUrlPattern")
        if not isinstance(url, str) or not url.strip():
            raise NodeConfigError("'restEndpointUrlPattern' must be a non-empty URL pattern, got "
                                  f"{url!r}")
        self.url_pattern = url.strip()
        method = optional(config, "requestMethod", str, "POST").upper()
        if method not in METHODS:
            raise NodeConfigError(f"'requestMethod' must be one of {', '.join(METHODS)}, got {method!r}")
        self.method = method
        headers = config.get("headers") or {}
        if not isinstance(headers, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                                    for k, v in headers.items()):
            raise NodeConfigError(f"'headers' must be an object of header name to value patterns, got {headers!r}")
        self.headers: dict[str, str] = headers
        read_timeout_ms = optional(config, "readTimeoutMs", int, 0)
        if read_timeout_ms < 0:
            raise NodeConfigError(f"'readTimeoutMs' must be 0 (no timeout) or more, got {read_timeout_ms}")
        self.read_timeout_s = read_timeout_ms / 1000 if read_timeout_ms else None
        parallel = optional(config, "maxParallelRequestsCount", int, 0)
        if parallel < 0:
            raise NodeConfigError(f"'maxParallelRequestsCount' must be 0 (no limit) or more, got {parallel}")
        self.parallel = asyncio.Semaphore(parallel) if parallel else None
        self.plain_text = bool(optional(config, "parseToPlainText", bool, False))
        self.ignore_body = bool(optional(config, "ignoreRequestBody", bool, False))
        buffer_kb = optional(config, "maxInMemoryBufferSizeInKb", int, 256) or 256
        if buffer_kb > MAX_BUFFER_KB or buffer_kb < 0:
            raise NodeConfigError("The configured maximum in-memory buffer size (in KB) exceeds the system limit for "
                                  f"this parameter. The system limit is {MAX_BUFFER_KB} KB.")
        self.max_body = buffer_kb * 1024
        self.credentials = ClientCredentials.parse(config)
        if self.credentials.type == "cert.PEM" and optional(config, "useSimpleClientHttpFactory", bool, False):
            raise NodeConfigError("Simple HTTP Factory does not support CERT PEM credentials!")
        self.proxy = self._proxy(config)
        self.ssl = self.credentials.ssl_context() if self.credentials.type == "cert.PEM" else None
        self._client: httpx.AsyncClient | None = None
        self.in_flight = InFlight()

    @staticmethod
    def _proxy(config: dict[str, Any]) -> str | None:
        if not optional(config, "enableProxy", bool, False):
            return None
        if optional(config, "useSystemProxyProperties", bool, False):
            raise NodeConfigError("'useSystemProxyProperties' is not supported: thingsray reads no JVM system "
                                  "properties; set 'proxyHost' and 'proxyPort' instead")
        host = optional(config, "proxyHost", str, "")
        if not host:
            raise NodeConfigError("Proxy host can't be empty")
        port = optional(config, "proxyPort", int, 0)
        if port < 0 or port > 65535:
            raise NodeConfigError(f"Proxy port out of range:{port}")
        scheme = (optional(config, "proxyScheme", str, "") or "http").lower()
        if scheme not in ("http", "https"):
            raise NodeConfigError(f"'proxyScheme' must be http or https, got {scheme!r}")
        user, password = optional(config, "proxyUser", str, ""), optional(config, "proxyPassword", str, "")
        from urllib.parse import quote

        auth = f"{quote(user, safe='')}:{quote(password, safe='')}@" if user and password else ""
        return f"{scheme}://{auth}{host}:{port}"

    # --- a message ------------------------------------------------------------------------------
    async def process(self, ctx: RuleContext, msg: TbMsg) -> Outputs:
        url = check_url(process_pattern(self.url_pattern, msg))
        headers = [(process_pattern(k, msg), process_pattern(v, msg)) for k, v in self.headers.items()]
        if self.credentials.type == "basic":
            token = f"{self.credentials.username}:{self.credentials.password or ''}".encode()
            headers.append(("Authorization", "Basic " + base64.b64encode(token).decode("ascii")))
        body = None
        if self.method in WITH_BODY and not self.ignore_body:
            body = body_text(msg.data, self.plain_text).encode()
        self.in_flight.admit()
        tell_next = ctx.continuation()
        ctx.dispatch(route_outcome(self.in_flight, msg, tell_next, lambda: self._limited(ctx, msg, url, headers, body)),
                     what=f"REST API call {self.method} {url}")
        return []

    async def _limited(self, ctx: RuleContext, msg: TbMsg, url: str, headers: list[tuple[str, str]],
                       body: bytes | None) -> tuple[str, TbMsg]:
        """The exchange, within ``maxParallelRequestsCount`` when one is set."""
        if self.parallel is None:
            return await self._exchange(ctx, msg, url, headers, body)
        async with self.parallel:
            return await self._exchange(ctx, msg, url, headers, body)

    async def _exchange(self, ctx: RuleContext, msg: TbMsg, url: str, headers: list[tuple[str, str]],
                        body: bytes | None) -> tuple[str, TbMsg]:
        import httpx

        client = self._http(ctx)
        timeout = httpx.Timeout(None, connect=CONNECT_TIMEOUT_S, read=self.read_timeout_s)
        for attempt in range(RETRIES + 1):
            try:
                async with client.stream(self.method, url, headers=headers, content=body, timeout=timeout) as answer:
                    text = await self._read(answer)
                    return self._outcome(msg, url, answer, text)
            except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
                if attempt == RETRIES:
                    return FAILURE, msg.with_metadata(error=error_text(exc))
                await asyncio.sleep(backoff(attempt))
            except (httpx.HTTPError, BufferLimitError, UnicodeDecodeError) as exc:
                return FAILURE, msg.with_metadata(error=error_text(exc))
        raise AssertionError("unreachable")

    async def _read(self, answer: httpx.Response) -> str:
        chunks: list[bytes] = []
        size = 0
        async for chunk in answer.aiter_bytes():
            size += len(chunk)
            if size > self.max_body:
                raise BufferLimitError(f"Exceeded limit on max bytes to buffer : {self.max_body}")
            chunks.append(chunk)
        return b"".join(chunks).decode(answer.encoding or "utf-8")

    def _outcome(self, msg: TbMsg, url: str, answer: httpx.Response, text: str) -> tuple[str, TbMsg]:
        code = answer.status_code
        reason = status_reason(code, answer.reason_phrase)
        if 200 <= code < 300:
            metadata = {**msg.metadata, "status": status_name(code), "statusCode": str(code),
                        "statusReason": reason, **headers_to_metadata(answer)}
            return SUCCESS, msg.copy(data=response_data(text), metadata=metadata, id=uuid.uuid4(),
                                     correlation=msg.id)
        error = f"{code} {reason} from {self.method} {url}"
        if code >= 400:  # Spring's WebClientResponseException
            return FAILURE, msg.with_metadata(error=error, status=reason, statusCode=str(code), error_body=text)
        metadata = {**msg.metadata, "status": status_name(code), "statusCode": str(code), "statusReason": reason,
                    "error_body": text, **headers_to_metadata(answer), "error": error}
        return FAILURE, msg.copy(metadata=metadata)

    def _http(self, ctx: RuleContext) -> httpx.AsyncClient:
        """The engine's shared client, or one of the node's own for a client certificate or a proxy."""
        if self.ssl is None and self.proxy is None:
            return ctx.http  # type: ignore[no-any-return]
        if self._client is None:
            import httpx

            self._client = httpx.AsyncClient(verify=self.ssl or True, proxy=self.proxy, follow_redirects=False,
                                             trust_env=False)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            client, self._client = self._client, None
            await client.aclose()
