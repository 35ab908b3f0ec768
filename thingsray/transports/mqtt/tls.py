"""MQTT over TLS (ThingsBoard's listener on 8883): the server context built from PEM files, and
the client certificate a device presented.

A bad file is a ``ConfigError`` naming the setting to fix, raised when the context is built (the
platform builds one before it starts anything, so ``thingsray up`` stops with the reason).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass, field
from pathlib import Path

from thingsray.config import ConfigError, Settings, setting_names


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """The listener's certificate chain and key, and the CA that signs client certificates.

    Paths are absolute, so another process (the transport actor) finds the same files."""

    cert: str
    key: str
    key_password: str | None = field(default=None, repr=False)
    ca: str | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> TlsFiles | None:
        """None when MQTT over TLS is off."""
        if not settings.mqtt_tls or not settings.mqtt_tls_key:
            return None
        ca = _absolute(settings.mqtt_tls_ca) if settings.mqtt_tls_ca else None
        return cls(_absolute(settings.mqtt_tls_cert or ""), _absolute(settings.mqtt_tls_key),
                   settings.mqtt_tls_key_password or None, ca)


def server_context(files: TlsFiles) -> ssl.SSLContext:
    """TLS 1.2 or later; with a CA, a client certificate is requested but not required
    (``CERT_OPTIONAL``), and one that CA did not sign fails the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    _load_chain(context, files)
    if files.ca:
        try:
            context.load_verify_locations(cafile=files.ca)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(f"{setting_names('mqtt_tls_ca')}: {files.ca!r} holds no usable PEM CA "
                              f"certificate ({exc})") from None
        context.verify_mode = ssl.CERT_OPTIONAL
    return context


def peer_certificate_pem(writer: asyncio.StreamWriter) -> str | None:
    """The PEM of the certificate the client presented on this connection (verified against the
    CA), or None on a plain connection or when it presented none."""
    ssl_object = writer.get_extra_info("ssl_object")
    if ssl_object is None:
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return ssl.DER_cert_to_PEM_cert(der) if der else None


class _PasswordMissing(Exception):
    pass


def _load_chain(context: ssl.SSLContext, files: TlsFiles) -> None:
    cert_name, key_name, password_name = (setting_names(n) for n in ("mqtt_tls_cert", "mqtt_tls_key",
                                                                       "mqtt_tls_key_password"))
    cert_text = _read(files.cert, cert_name)
    key_text = _read(files.key, key_name)
    if "-----BEGIN CERTIFICATE-----" not in cert_text:
        raise ConfigError(f"{cert_name}: {files.cert!r} is not a PEM certificate")
    if "PRIVATE KEY-----" not in key_text:
        raise ConfigError(f"{key_name}: {files.key!r} is not a PEM private key")

    def password() -> str:
        # without a callable OpenSSL would prompt on the terminal for an encrypted key
        if files.key_password is None:
            raise _PasswordMissing
        return files.key_password

    try:
        context.load_cert_chain(files.cert, files.key, password=password)
    except _PasswordMissing:
        raise ConfigError(f"{key_name}: {files.key!r} is encrypted: set {password_name}") from None
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            raise ConfigError(f"{key_name}: {files.key!r} is not the key of the certificate {files.cert!r}") from None
        if files.key_password is not None and "ENCRYPTED" in key_text:
            raise ConfigError(f"{password_name} does not decrypt {files.key!r}") from None
        raise ConfigError(f"{cert_name} / {key_name}: cannot use {files.cert!r} with {files.key!r} ({exc})") from None


def _read(path: str, name: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path!r} ({exc.strerror or exc})") from None


def _absolute(path: str) -> str:
    return str(Path(path).expanduser().resolve())
