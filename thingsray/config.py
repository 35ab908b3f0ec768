"""The one configuration object.

Every setting has a default, an environment variable ``THINGSRAY_<NAME>`` and, for the ones
that matter at start-up, a command-line flag; the flag wins over the environment, the
environment over the default. No other module reads the environment.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import platformdirs

ENV_PREFIX = "THINGSRAY_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
FLAGS = frozenset({"data_dir", "host", "http_port", "mqtt_port", "coap_port", "demo", "address", "database_url",
                   "redis_url", "serve_replicas", "mqtt_tls_port", "mqtt_tls_cert", "mqtt_tls_key", "bridge_config"})
"""The settings ``thingsray up`` also takes as a flag (``--http-port`` for http_port)."""


def default_data_dir() -> str:
    return platformdirs.user_data_dir("thingsray", appauthor=False)


class ConfigError(ValueError):
    """A setting has a value that cannot be used; the message names it."""


@dataclass(frozen=True, slots=True)
class Settings:
    data_dir: str = field(default_factory=default_data_dir)
    host: str = "0.0.0.0"
    http_port: int = 8080
    mqtt_port: int = 1883
    coap_port: int = 5683
    mqtt_tls_port: int = 8883
    """MQTT over TLS; the listener runs only when a certificate is configured."""
    mqtt_tls_cert: str | None = None
    """PEM server certificate (chain) of the MQTT TLS listener; needs mqtt_tls_key."""
    mqtt_tls_key: str | None = None
    """PEM private key of mqtt_tls_cert."""
    mqtt_tls_key_password: str | None = None
    mqtt_tls_ca: str | None = None
    """PEM CA bundle: devices may then present a client certificate it signed (X.509 devices)."""
    demo: bool = False
    address: str | None = None
    """A Ray cluster to join; None starts a private Ray on 127.0.0.1."""
    database_url: str | None = None
    """None starts the embedded PostgreSQL in data_dir/postgres."""
    redis_url: str | None = None
    bridge_config: str | None = None
    """A JSON file of bridges to external MQTT brokers (transports/bridge); checked when the platform starts."""
    jwt_secret: str | None = None
    """None: generated once and kept in the database, so every replica agrees."""
    access_token_ttl: int = 9000
    refresh_token_ttl: int = 604800
    serve_replicas: int = 1
    shards: int = 2
    """Shard processes hosting device actors (THINGSRAY_SHARDS); size by cores, not devices."""
    mqtt_transports: int = 1
    """MQTT listener processes per node, sharing the port (THINGSRAY_MQTT_TRANSPORTS)."""
    join_shards: int = 1
    """Shards started on each node that joins a running cluster; the partitions then spread over
    every shard (0: a joining node gets listeners only)."""
    db_pool_size: int = 10
    login_attempts_per_minute: int = 10
    """Failed logins allowed per user and per client address in a sliding minute."""
    max_page_size: int = 10000
    debug_event_ttl: int = 604800
    """Seconds rule engine debug events are kept (ThingsBoard's debug events TTL); 0 keeps them by count only."""
    debug_events_per_entity: int = 10000
    """Newest debug events kept per rule node (and rule chain) and type; 0: no bound by count."""
    log_level: str = "INFO"
    ws_max_subscriptions: int = 100
    """Subscriptions one WebSocket may hold at once; more are refused with errorCode 2."""
    ws_send_queue: int = 1000
    """Updates waiting to be sent on one WebSocket; a client that falls further behind is closed."""
    ws_max_cmds: int = 100
    """Commands in one WebSocket message."""
    snmp_enabled: bool = True
    """Poll the devices of SNMP device profiles (one SNMP transport process per node)."""
    snmp_rescan_s: int = 5
    """Seconds between the SNMP transport's reads of its devices and profiles (new, changed, deleted)."""

    @classmethod
    def load(cls, overrides: Mapping[str, Any] | None = None,
             environ: Mapping[str, str] | None = None) -> Settings:
        """Defaults, then ``THINGSRAY_*`` variables, then ``overrides`` (CLI flags; None = unset)."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        for name, value in (overrides or {}).items():
            if value is not None:
                values[name] = value
        settings = cls(**values)
        settings.validate()
        return settings

    def validate(self) -> None:
        for port_name in ("http_port", "mqtt_port", "coap_port", "mqtt_tls_port"):
            port = getattr(self, port_name)
            if not 0 <= port <= 65535:
                raise ConfigError(f"{setting_names(port_name)} must be between 0 and 65535, got {port}")
        for name in ("access_token_ttl", "refresh_token_ttl", "serve_replicas", "shards", "mqtt_transports",
                     "db_pool_size", "login_attempts_per_minute", "max_page_size",
                     "ws_max_subscriptions", "ws_send_queue", "ws_max_cmds", "snmp_rescan_s"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{setting_names(name)} must be at least 1, got {getattr(self, name)}")
        for name in ("debug_event_ttl", "debug_events_per_entity", "join_shards"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{setting_names(name)} must not be negative, got {getattr(self, name)}")
        if self.log_level.upper() not in LOG_LEVELS:
            raise ConfigError(f"{setting_names('log_level')} must be one of {', '.join(LOG_LEVELS)}, "
                              f"got {self.log_level!r}")
        self._validate_tls()
        if self.address and not self.database_url:
            raise ConfigError(
                "joining a Ray cluster (THINGSRAY_ADDRESS / --address) needs a PostgreSQL every node can "
                "reach: set THINGSRAY_DATABASE_URL (or --database-url); the embedded database serves one "
                "machine only")

    def _validate_tls(self) -> None:
        if bool(self.mqtt_tls_cert) != bool(self.mqtt_tls_key):
            missing = "mqtt_tls_key" if self.mqtt_tls_cert else "mqtt_tls_cert"
            raise ConfigError(f"MQTT over TLS needs a certificate and its key: {setting_names(missing)} is not set")
        for name in ("mqtt_tls_key_password", "mqtt_tls_ca"):
            if getattr(self, name) and not self.mqtt_tls_cert:
                raise ConfigError(f"{setting_names(name)} is set but MQTT over TLS is off: "
                                  f"set {setting_names('mqtt_tls_cert')} and {setting_names('mqtt_tls_key')}")
        if self.mqtt_tls and self.mqtt_tls_port == self.mqtt_port != 0:
            # both listeners set SO_REUSEPORT: the kernel would share connections between them
            raise ConfigError(f"{setting_names('mqtt_tls_port')} and {setting_names('mqtt_port')} are both "
                              f"{self.mqtt_port}: MQTT over TLS needs a port of its own")
        for name in ("mqtt_tls_cert", "mqtt_tls_key", "mqtt_tls_ca"):
            path = getattr(self, name)
            if path and not Path(path).expanduser().is_file():
                raise ConfigError(f"{setting_names(name)}: no such file {path!r}")

    @property
    def mqtt_tls(self) -> bool:
        """Whether the MQTT TLS listener runs."""
        return bool(self.mqtt_tls_cert)

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def data_path(self) -> Path:
        return Path(self.data_dir).expanduser()

    @property
    def embedded_database(self) -> bool:
        return self.database_url is None

    @property
    def loopback_only(self) -> bool:
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


def setting_names(name: str) -> str:
    """How a user sets ``name``: its variable, and its flag when it has one."""
    variable = ENV_PREFIX + name.upper()
    return f"{name} ({variable} / --{name.replace('_', '-')})" if name in FLAGS else f"{name} ({variable})"


def _parse(f: dataclasses.Field[Any], raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    name = ENV_PREFIX + f.name.upper()
    if kind.startswith("bool"):
        lowered = raw.strip().lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}={raw!r}: expected true or false")
    if kind.startswith("int"):
        try:
            return int(raw)
        except ValueError:
            raise ConfigError(f"{name}={raw!r}: expected a whole number") from None
    return raw
