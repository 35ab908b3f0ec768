"""GET and SET against SNMP agents over pysnmp's asyncio API.

``SnmpClient`` hands out an ``SnmpAgent`` per device. Agents spoken to with a community (V1, V2C)
share one SNMP engine and so one UDP socket; a V3 agent shares an engine only with agents of the
very same USM credentials (the engine's user table is keyed by user name and engine id, and two
devices may use one user name with different passphrases). A request waits at most the profile's
``timeoutMs`` per try, ``retries`` + 1 tries; requests to other agents go on meanwhile.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from pysnmp.hlapi.v3arch.asyncio import (
    USM_AUTH_HMAC96_MD5,
    USM_AUTH_HMAC96_SHA,
    USM_AUTH_HMAC128_SHA224,
    USM_AUTH_HMAC192_SHA256,
    USM_AUTH_HMAC256_SHA384,
    USM_AUTH_HMAC384_SHA512,
    USM_PRIV_CBC56_DES,
    USM_PRIV_CFB128_AES,
    USM_PRIV_CFB192_AES_BLUMENTHAL,
    USM_PRIV_CFB256_AES_BLUMENTHAL,
    CommunityData,
    ContextData,
    ObjectIdentity,
    ObjectType,
    SnmpEngine,
    Udp6TransportTarget,
    UdpTransportTarget,
    UsmUserData,
    get_cmd,
    set_cmd,
)
from pysnmp.proto import errind, rfc1902

from thingsray.transports.snmp.config import (
    AuthenticationProtocol,
    PrivacyProtocol,
    SnmpDeviceConfig,
    SnmpProtocolVersion,
)
from thingsray.transports.snmp.values import missing_reason

__all__ = ["Oid", "SnmpAgent", "SnmpClient", "SnmpFailure", "SnmpRequestError", "SnmpResponse"]

log = logging.getLogger(__name__)

Oid = tuple[int, ...]

AUTH_PROTOCOLS = {
    AuthenticationProtocol.MD5: USM_AUTH_HMAC96_MD5, AuthenticationProtocol.SHA_1: USM_AUTH_HMAC96_SHA,
    AuthenticationProtocol.SHA_224: USM_AUTH_HMAC128_SHA224, AuthenticationProtocol.SHA_256: USM_AUTH_HMAC192_SHA256,
    AuthenticationProtocol.SHA_384: USM_AUTH_HMAC256_SHA384, AuthenticationProtocol.SHA_512: USM_AUTH_HMAC384_SHA512}
PRIVACY_PROTOCOLS = {
    PrivacyProtocol.DES: USM_PRIV_CBC56_DES, PrivacyProtocol.AES_128: USM_PRIV_CFB128_AES,
    PrivacyProtocol.AES_192: USM_PRIV_CFB192_AES_BLUMENTHAL, PrivacyProtocol.AES_256: USM_PRIV_CFB256_AES_BLUMENTHAL}

MAX_REQUEST_OIDS = 100
"""OIDs in one PDU; more go in further requests (ThingsBoard's ``transport.snmp.max_request_oids``)."""


class SnmpFailure(enum.Enum):
    TIMEOUT = "timeout"
    """No answer within timeoutMs x (retries + 1)."""
    AGENT_ERROR = "agent_error"
    """The agent answered with an error status (genErr, notWritable, tooBig, ...)."""
    TRANSPORT = "transport"
    """The request could not be sent (the host does not resolve, a security failure, ...)."""


class SnmpRequestError(Exception):
    def __init__(self, failure: SnmpFailure, message: str) -> None:
        super().__init__(message)
        self.failure = failure


@dataclass(frozen=True, slots=True)
class SnmpResponse:
    """What an agent answered: a value for some OIDs, and for the others why there is none
    (noSuchObject, noSuchInstance, endOfMibView, noSuchName of SNMPv1)."""

    values: dict[Oid, Any] = field(default_factory=dict)
    missing: dict[Oid, str] = field(default_factory=dict)


def _chunks(items: Sequence[Any], size: int) -> list[list[Any]]:
    return [list(items[i:i + size]) for i in range(0, len(items), size)]


@dataclass
class _Engine:
    engine: SnmpEngine
    users: int = 0


class SnmpAgent:
    """One device's agent as its transport configuration describes it."""

    def __init__(self, client: SnmpClient, config: SnmpDeviceConfig, timeout_ms: int, retries: int,
                 engine_key: Any) -> None:
        self._client = client
        self.config = config
        self.timeout_s = max(timeout_ms, 10) / 1000
        self.retries = retries
        self._engine_key = engine_key
        self._engine = client._engines[engine_key].engine
        self._target: UdpTransportTarget | Udp6TransportTarget | None = None
        self._auth = _auth_data(config)
        self._context = ContextData(contextName=(config.context_name or "")) \
            if config.protocol_version is SnmpProtocolVersion.V3 else ContextData()
        self._closed = False

    @property
    def address(self) -> str:
        return f"{self.config.host}:{self.config.port}"

    async def _transport(self) -> UdpTransportTarget | Udp6TransportTarget:
        if self._target is None:
            kind = Udp6TransportTarget if ":" in self.config.host else UdpTransportTarget
            try:
                self._target = await kind.create((self.config.host, self.config.port), timeout=self.timeout_s,
                                                 retries=self.retries)
            except Exception as exc:  # pysnmp raises its own error for a name that does not resolve
                raise SnmpRequestError(SnmpFailure.TRANSPORT, f"cannot reach {self.address}: {exc}") from exc
        return self._target

    async def _send(self, command: Any, var_binds: list[ObjectType]) -> tuple[Any, Any, Any, Any]:
        if self._closed:
            raise SnmpRequestError(SnmpFailure.TRANSPORT, "the agent was closed")
        target = await self._transport()
        # pysnmp answers a timeout itself; this bound only guards against an answer that never comes
        bound = self.timeout_s * (self.retries + 1) + 5
        try:
            return await asyncio.wait_for(command(self._engine, self._auth, target, self._context, *var_binds,
                                                  lookupMib=False), bound)
        except TimeoutError:
            raise SnmpRequestError(SnmpFailure.TIMEOUT, f"no answer from {self.address}") from None
        except SnmpRequestError:
            raise
        except Exception as exc:
            raise SnmpRequestError(SnmpFailure.TRANSPORT, f"request to {self.address} failed: {exc!r}") from exc

    def _check(self, indication: Any) -> None:
        if indication:
            failure = SnmpFailure.TIMEOUT if isinstance(indication, errind.RequestTimedOut) else SnmpFailure.TRANSPORT
            raise SnmpRequestError(failure, f"{self.address}: {indication}")

    async def get(self, oids: Sequence[Oid]) -> SnmpResponse:
        """The agent's values of ``oids``, in requests of at most ``MAX_REQUEST_OIDS``. An SNMPv1
        agent's noSuchName drops that OID and asks again for the rest."""
        response = SnmpResponse()
        for chunk in _chunks(oids, self._client.max_request_oids):
            pending = list(chunk)
            while pending:
                indication, status, index, var_binds = await self._send(
                    get_cmd, [ObjectType(ObjectIdentity(rfc1902.ObjectName(oid))) for oid in pending])
                self._check(indication)
                if status:
                    name = status.prettyPrint() if hasattr(status, "prettyPrint") else str(status)
                    position = int(index)
                    if name == "noSuchName" and 1 <= position <= len(pending):
                        response.missing[pending.pop(position - 1)] = "noSuchName"
                        continue
                    raise SnmpRequestError(SnmpFailure.AGENT_ERROR, f"{self.address} answered {name}"
                                           + (f" for {'.'.join(map(str, pending[position - 1]))}"
                                              if 1 <= position <= len(pending) else ""))
                for name, value in var_binds:
                    oid = tuple(name)
                    reason = missing_reason(value)
                    if reason is None:
                        response.values[oid] = value
                    else:
                        response.missing[oid] = reason
                break
        return response

    async def set(self, bindings: Sequence[tuple[Oid, Any]]) -> SnmpResponse:
        """Set each OID to its SNMP value; an error status or an exception value fails the whole SET."""
        response = SnmpResponse()
        for chunk in _chunks(bindings, self._client.max_request_oids):
            indication, status, index, var_binds = await self._send(
                set_cmd, [ObjectType(ObjectIdentity(rfc1902.ObjectName(oid)), value) for oid, value in chunk])
            self._check(indication)
            if status:
                name = status.prettyPrint() if hasattr(status, "prettyPrint") else str(status)
                position = int(index)
                where = f" for {'.'.join(map(str, chunk[position - 1][0]))}" if 1 <= position <= len(chunk) else ""
                raise SnmpRequestError(SnmpFailure.AGENT_ERROR, f"{self.address} refused the SET: {name}{where}")
            for name, value in var_binds:
                reason = missing_reason(value)
                if reason is not None:
                    raise SnmpRequestError(SnmpFailure.AGENT_ERROR,
                                           f"{self.address} refused the SET of {name}: {reason}")
                response.values[tuple(name)] = value
        return response

    async def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._client._release(self._engine_key)


def _auth_data(config: SnmpDeviceConfig) -> CommunityData | UsmUserData:
    if config.protocol_version is not SnmpProtocolVersion.V3:
        return CommunityData(config.community or "", mpModel=0 if config.protocol_version is SnmpProtocolVersion.V1
                             else 1)
    assert config.authentication_protocol is not None and config.privacy_protocol is not None
    engine_id = (config.engine_id or "").replace(":", "")
    return UsmUserData(config.username, authKey=config.authentication_passphrase,
                       privKey=config.privacy_passphrase,
                       authProtocol=AUTH_PROTOCOLS[config.authentication_protocol],
                       privProtocol=PRIVACY_PROTOCOLS[config.privacy_protocol],
                       securityEngineId=rfc1902.OctetString(hexValue=engine_id) if engine_id else None,
                       securityName=config.security_name or config.username)


class SnmpClient:
    """The SNMP engines of one transport process; ``close()`` closes their sockets."""

    def __init__(self, max_request_oids: int = MAX_REQUEST_OIDS) -> None:
        self.max_request_oids = max_request_oids
        self._engines: dict[Any, _Engine] = {}

    def agent(self, config: SnmpDeviceConfig, timeout_ms: int, retries: int) -> SnmpAgent:
        key: Any = None
        if config.protocol_version is SnmpProtocolVersion.V3:
            key = (config.username, config.security_name, (config.engine_id or "").lower(),
                   config.authentication_protocol, config.authentication_passphrase, config.privacy_protocol,
                   config.privacy_passphrase)
        entry = self._engines.get(key)
        if entry is None:
            entry = self._engines[key] = _Engine(SnmpEngine())
        entry.users += 1
        return SnmpAgent(self, config, timeout_ms, retries, key)

    def _release(self, key: Any) -> None:
        entry = self._engines.get(key)
        if entry is None:
            return
        entry.users -= 1
        if entry.users <= 0 and key is not None:  # the community engine stays: it is the common case
            del self._engines[key]
            _close_engine(entry.engine)

    @property
    def engine_count(self) -> int:
        return len(self._engines)

    def close(self) -> None:
        for entry in self._engines.values():
            _close_engine(entry.engine)
        self._engines.clear()


def _close_engine(engine: SnmpEngine) -> None:
    try:
        engine.close_dispatcher()
    except Exception:
        log.exception("closing an SNMP engine failed")
