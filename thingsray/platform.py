"""Starting and stopping the whole platform: database, migrations, Ray, Serve.

``Platform.start()`` is what ``thingsray up`` runs and what the tests' session fixture runs;
``stop()`` undoes exactly what ``start()`` did (a Ray it joined is left running).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from thingsray.config import ConfigError, Settings
from thingsray.runtime import PartitionTable
from thingsray.storage import EmbeddedPostgres, connect, ensure_ts_partitions, migrate
from thingsray.storage.entities import now_ms
from thingsray.transports.mqtt.tls import TlsFiles, server_context

log = logging.getLogger(__name__)

Progress = Callable[[str], None]

# Ray 2.60 binds every port of a local instance to 127.0.0.1 with this set (DESIGN.md section 9).
LOOPBACK_RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def use_loopback_ray() -> None:
    """Make this process, and every Ray process it starts, keep Ray on 127.0.0.1.

    Ray reads the variable when ``ray._private.ray_constants`` is first imported; a process
    that imported Ray earlier gets the constant set directly."""
    os.environ.update(LOOPBACK_RAY_ENV)
    os.environ.pop("RAY_ADDRESS", None)  # a stray RAY_ADDRESS would join some other cluster
    import sys

    constants = sys.modules.get("ray._private.ray_constants")
    if constants is not None:
        constants.ENABLE_RAY_CLUSTER = False


def port_is_free(host: str, port: int) -> bool:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT leftovers are no conflict
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def udp_port_is_free(host: str, port: int) -> bool:
    """No socket is bound to the UDP port (the CoAP listener's)."""
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((host, port))
        except OSError:
            return False
    return True


def pick_free_port(host: str = "127.0.0.1") -> int:
    """A port free now, between Ray's worker ports (10002-19999) and the kernel's ephemeral range
    (from 32768), where Ray's own processes bind: a port picked here for a listener that starts
    after Ray is not taken by Ray in the meantime (port 0 would be, once in a while)."""
    import random

    for _ in range(1000):
        port = random.randrange(20000, 32768)
        if port_is_free(host, port):
            return port
    raise RuntimeError("no free port between 20000 and 32767")


def mqtt_transport_name(index: int) -> str:
    """The Ray actor name of an MQTT transport; device actors push to sessions through it."""
    return f"thingsray-mqtt-{index}"


COAP_TRANSPORT_NAME = "thingsray-coap-0"
"""The Ray actor name of the CoAP transport; device actors push to its clients through it."""


def partition_table(settings: Settings) -> PartitionTable:
    """The one partition table every process derives from the settings."""
    return PartitionTable.even(settings.shards)


@dataclass
class Platform:
    settings: Settings
    progress: Progress = field(default=lambda message: log.info("%s", message))
    database_url: str | None = None
    http_url: str | None = None
    _embedded: EmbeddedPostgres | None = None
    _started_ray: bool = False
    _shards: list = field(default_factory=list)
    _transports: list = field(default_factory=list)
    _snmp: list = field(default_factory=list)
    """The SNMP transport actors (one per node)."""
    _bridge_configs: list = field(default_factory=list)
    _bridges: list = field(default_factory=list)
    """The bridge transport actor, when bridge_config is set."""
    mqtt_port: int | None = None
    mqtt_tls_port: int | None = None
    """None when MQTT over TLS is off."""
    coap_port: int | None = None
    """The CoAP listener's bound UDP port."""
    _coap: list = field(default_factory=list)
    """The CoAP transport actor."""
    _tls: TlsFiles | None = None
    _serve_started: bool = False

    # --- start ------------------------------------------------------------------------------
    def start(self) -> None:
        self._check_tls()
        self._check_ports()
        self._check_bridges()
        try:
            self._start_database()
            asyncio.run(self._prepare_database())
            self._start_ray()
            self._start_shards()
            self._start_transports()
            self._start_snmp()
            self._start_coap()
            self._start_bridges()
            self._start_serve()
        except BaseException:
            self.stop()
            raise

    def _check_tls(self) -> None:
        """Build the TLS context once here, so a bad certificate or key stops ``up`` before anything starts."""
        self._tls = TlsFiles.from_settings(self.settings)
        if self._tls is not None:
            server_context(self._tls)

    def _check_ports(self) -> None:
        """Refuse, before starting anything, public ports another program already listens on."""
        wanted = [("http_port", "--http-port"), ("mqtt_port", "--mqtt-port")]
        if self._tls is not None:
            wanted.append(("mqtt_tls_port", "--mqtt-tls-port"))
        for name, flag in wanted:
            port = getattr(self.settings, name)
            if port and not port_is_free(self.settings.host, port):
                raise ConfigError(
                    f"port {port} ({flag}, THINGSRAY_{name.upper()}) on {self.settings.host} is already in use by "
                    f"another program: stop it or choose another port with {flag}")
        coap = self.settings.coap_port
        if coap and not udp_port_is_free(self.settings.host, coap):
            raise ConfigError(
                f"UDP port {coap} (--coap-port, THINGSRAY_COAP_PORT) on {self.settings.host} is already in use by "
                "another program: stop it or choose another port with --coap-port")

    def _start_database(self) -> None:
        if self.settings.database_url:
            self.database_url = self.settings.database_url
            self.progress(f"database: {_redact(self.database_url)}")
            return
        if self.settings.address:
            raise ConfigError(
                "joining a Ray cluster (--address) needs a PostgreSQL every node can reach: "
                "set THINGSRAY_DATABASE_URL; the embedded database serves one machine only")
        pgdata = self.settings.data_path / "postgres"
        self.progress(f"database: starting the embedded PostgreSQL in {pgdata}")
        started = time.perf_counter()
        self._embedded = EmbeddedPostgres(pgdata)
        self.database_url = self._embedded.start()
        self.progress(f"database: ready in {time.perf_counter() - started:.1f} s")

    async def _prepare_database(self) -> None:
        from thingsray.install import ensure_system_admin, ensure_tenant_defaults

        assert self.database_url is not None
        db = await connect(self.database_url, min_size=1, max_size=2)
        try:
            async with db.pool.acquire() as conn:
                applied = await migrate(conn)
                self.progress(f"migrations: {len(applied)} applied" if applied else "migrations: up to date")
                await ensure_ts_partitions(conn, now_ms())
                await ensure_system_admin(conn)
                await ensure_tenant_defaults(conn)
                if self.settings.demo:
                    from thingsray.demo import load_demo

                    created = await load_demo(conn)
                    self.progress("demo data: loaded" if created else "demo data: already present")
        finally:
            await db.close()

    def _start_ray(self) -> None:
        if not self.settings.address:
            use_loopback_ray()
        import ray

        if ray.is_initialized():
            self.progress("ray: using the Ray this process already runs")
            return
        if self.settings.address:
            self.progress(f"ray: joining the cluster at {self.settings.address}")
            ray.init(address=self.settings.address, namespace="thingsray", log_to_driver=False)
        else:
            self.progress("ray: starting a private Ray on 127.0.0.1")
            # Ray starts its workers at niceness 15, below PostgreSQL and the devices' traffic;
            # our shards and transports are the server itself
            os.environ.setdefault("RAY_worker_niceness", "0")
            with _keeping_signal_handlers():
                ray.init(address="local", namespace="thingsray", include_dashboard=False,
                         object_store_memory=256 * 1024 * 1024, log_to_driver=False,
                         runtime_env={"env_vars": LOOPBACK_RAY_ENV})
        self._started_ray = True

    @property
    def log_dir(self) -> str:
        """Where shards write their logs (rule chains' Log nodes among them)."""
        return str(Path(self.settings.data_dir).expanduser() / "logs")

    def _start_shards(self) -> None:
        from thingsray.actors import FACTORIES
        from thingsray.actors.env import make_setup
        from thingsray.runtime.cluster import start_shards

        assert self.database_url is not None
        count = self.settings.shards
        self.progress(f"actors: starting {count} shard{'s' if count > 1 else ''}")
        self._shards = start_shards(count, FACTORIES, partition_table(self.settings),
                                    setup=make_setup(self.database_url, log_level=self.settings.log_level,
                                                     log_dir=self.log_dir, engine_options={
                                                         "debug_event_ttl_s": self.settings.debug_event_ttl,
                                                         "debug_events_per_entity":
                                                             self.settings.debug_events_per_entity}))

    def _start_transports(self) -> None:
        """``mqtt_transports`` listener processes share the MQTT port (SO_REUSEPORT): the kernel
        spreads connections over them."""
        import ray

        from thingsray.actors.mqtt_transport import MqttTransportActor

        assert self.database_url is not None
        remote = ray.remote(MqttTransportActor)
        port, tls_port = self.settings.mqtt_port, self.settings.mqtt_tls_port
        for index in range(self.settings.mqtt_transports):
            name = mqtt_transport_name(index)
            handle = remote.options(name=name, num_cpus=0, max_restarts=-1, max_concurrency=100_000).remote(
                name, self.settings.host, port, self.database_url, self.settings.shards,
                partition_table(self.settings), self.settings.redis_url, self._tls, tls_port)
            self._transports.append(handle)
            port, bound_tls = ray.get(handle.start.remote())  # the next ones join the port the first bound
            tls_port = bound_tls if bound_tls is not None else tls_port
            if index == 0:
                self.mqtt_port, self.mqtt_tls_port = port, bound_tls
        count = self.settings.mqtt_transports
        self.progress(f"mqtt: listening on {self.settings.host}:{self.mqtt_port}"
                      + (f" ({count} transport processes)" if count > 1 else ""))
        if self.mqtt_tls_port is not None:
            self.progress(f"mqtt: TLS listening on {self.settings.host}:{self.mqtt_tls_port}")

    def _start_snmp(self) -> None:
        """One SNMP transport process per node, each polling its share of the SNMP devices."""
        if not self.settings.snmp_enabled:
            return
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from thingsray.actors.snmp_transport import SnmpTransportActor, snmp_transport_name

        assert self.database_url is not None
        nodes = [node["NodeID"] for node in ray.nodes() if node.get("Alive")]
        for index, node_id in enumerate(nodes):
            name = snmp_transport_name(index)
            self._snmp.append(ray.remote(SnmpTransportActor).options(
                name=name, num_cpus=0, max_restarts=-1, max_concurrency=1000,
                scheduling_strategy=NodeAffinitySchedulingStrategy(node_id, soft=True)).remote(
                name, self.database_url, self.settings.shards, partition_table(self.settings), index, len(nodes),
                self.settings.snmp_rescan_s))
        polled = sum(ray.get([handle.start.remote() for handle in self._snmp]))
        self.progress(f"snmp: polling {polled} device{'' if polled == 1 else 's'}"
                      + (f" ({len(self._snmp)} transport processes)" if len(self._snmp) > 1 else ""))

    def _start_coap(self) -> None:
        """One CoAP listener process (UDP; ``coap_port`` 0 picks a free port)."""
        import ray

        from thingsray.actors.coap_transport import CoapTransportActor

        assert self.database_url is not None
        handle = ray.remote(CoapTransportActor).options(
            name=COAP_TRANSPORT_NAME, num_cpus=0, max_restarts=-1, max_concurrency=100_000).remote(
            COAP_TRANSPORT_NAME, self.settings.host, self.settings.coap_port, self.database_url,
            self.settings.shards, partition_table(self.settings), self.settings.redis_url)
        self._coap.append(handle)
        self.coap_port = ray.get(handle.start.remote())
        self.progress(f"coap: listening on {self.settings.host}:{self.coap_port}")

    def _check_bridges(self) -> None:
        """Read the bridge file before anything starts, so a bad one stops ``up`` naming the file and field."""
        if self.settings.bridge_config:
            from thingsray.transports.bridge import load_bridge_file

            self._bridge_configs = load_bridge_file(self.settings.bridge_config)

    def _start_bridges(self) -> None:
        """One actor in the cluster hosts every bridge; a tenant the file names that does not exist
        stops the start with a ``ConfigError``."""
        if not self._bridge_configs:
            return
        import ray

        from thingsray.actors.bridge_transport import BRIDGE_TRANSPORT_NAME, BridgeTransportActor

        assert self.database_url is not None
        handle = ray.remote(BridgeTransportActor).options(
            name=BRIDGE_TRANSPORT_NAME, num_cpus=0, max_restarts=-1, max_concurrency=1000).remote(
            BRIDGE_TRANSPORT_NAME, self._bridge_configs, self.database_url, self.settings.shards,
            partition_table(self.settings), self.settings.redis_url)
        self._bridges.append(handle)
        try:
            count = ray.get(handle.start.remote())
        except Exception as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ConfigError):
                raise ConfigError(str(cause)) from None
            raise
        self.progress(f"bridges: {count} subscribing to external MQTT brokers")

    @property
    def shard_handles(self) -> list:
        """The shard Ray actors this platform started (each answers ``pid()``, ``stats()``)."""
        return list(self._shards)

    @property
    def transport_handles(self) -> list:
        """The MQTT transport Ray actors this platform started."""
        return list(self._transports)

    @property
    def snmp_handles(self) -> list:
        """The SNMP transport Ray actors (each answers ``stats()``, ``rescan()``)."""
        return list(self._snmp)

    def supervise(self) -> int:
        """Bring back the listeners of transport processes Ray restarted; return how many transports
        are listening.

        Ray restarts a dead transport actor but only runs its constructor; ``start`` is ours to
        call. ``thingsray up`` calls this every second."""
        import ray

        revived = 0
        for handle in self._transports:
            try:
                ready = handle.start.remote()
                ray.get(ready, timeout=30)
            except Exception as exc:
                log.warning("a transport process is not back yet: %r", exc)
                continue
            revived += 1
        for handle in self._snmp:  # an SNMP process Ray restarted polls again
            try:
                ray.get(handle.start.remote(), timeout=30)
            except Exception as exc:
                log.warning("an SNMP transport process is not back yet: %r", exc)
        for handle in self._coap:  # a CoAP process Ray restarted binds its port again
            try:
                ray.get(handle.start.remote(), timeout=30)
            except Exception as exc:
                log.warning("the CoAP transport process is not back yet: %r", exc)
        for handle in self._bridges:  # a bridge process Ray restarted connects its bridges again
            try:
                ray.get(handle.start.remote(), timeout=30)
            except Exception as exc:
                log.warning("the bridge process is not back yet: %r", exc)
        return revived

    def _start_serve(self) -> None:
        from ray import serve

        from thingsray.serve_app.deployment import APP_NAME, build, serve_logging

        assert self.database_url is not None
        self.progress(f"serve: starting the REST API on {self.settings.host}:{self.settings.http_port}")
        serve.start(http_options={"host": self.settings.host, "port": self.settings.http_port},
                    proxy_location="EveryNode", logging_config=serve_logging(self.settings))
        self._serve_started = True
        serve.run(build(self.settings, self.database_url), name=APP_NAME, route_prefix="/",
                  blocking=False)
        _wait_for_app(APP_NAME)
        host = "127.0.0.1" if self.settings.host in ("0.0.0.0", "::") else self.settings.host
        self.http_url = f"http://{host}:{self.http_port}"
        self.progress(f"serve: ready at {self.http_url}")

    @property
    def http_port(self) -> int:
        """The port actually bound (the configured one, or the one picked for 0)."""
        return self.settings.http_port

    # --- stop -------------------------------------------------------------------------------
    def stop(self) -> None:
        if self._bridges:
            import ray

            for handle in self._bridges:
                try:
                    ray.get(handle.stop.remote(), timeout=10)
                except Exception:
                    log.exception("stopping the bridges failed")
                ray.kill(handle, no_restart=True)  # the name is free again for the next start
            self._bridges = []
        if self._coap:
            import ray

            for handle in self._coap:
                try:
                    ray.get(handle.stop.remote(), timeout=10)
                    ray.kill(handle, no_restart=True)
                except Exception:
                    log.exception("stopping the CoAP transport failed")
            self._coap = []
        if self._snmp:
            import ray

            for handle in self._snmp:  # before the shards: it closes its devices' sessions through them
                try:
                    ray.get(handle.stop.remote(), timeout=10)
                    ray.kill(handle, no_restart=True)
                except Exception:
                    log.exception("stopping an SNMP transport failed")
            self._snmp = []
        if self._transports or self._shards:
            import ray

            for handle in self._transports + self._shards:
                try:
                    ray.get(handle.stop.remote(), timeout=10)
                    ray.kill(handle, no_restart=True)
                except Exception:
                    log.exception("stopping an actor failed")
            self._transports, self._shards = [], []
        if self._serve_started:
            from ray import serve

            try:
                serve.shutdown()
            except Exception:
                log.exception("stopping Serve failed")
            self._serve_started = False
        try:
            if self._started_ray:
                import ray

                ray.shutdown()
                self._started_ray = False
        finally:  # the embedded database is a daemon: it would outlive us
            if self._embedded is not None:
                self._embedded.stop()
                self._embedded = None


@contextmanager
def _keeping_signal_handlers() -> Iterator[None]:
    """Give back SIGTERM and SIGINT after ``ray.init`` took them.

    A Ray started by a driver installs a SIGTERM handler that kills the node and exits with 1,
    leaving the embedded PostgreSQL running and Ray agents orphaned; the owner of the process
    (``thingsray up``, a test session) stops the platform itself."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
    finally:
        for signum, handler in saved.items():
            if handler is not None:
                signal.signal(signum, handler)


def _wait_for_app(name: str, timeout_s: float = 180.0) -> None:
    from ray import serve

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        status = serve.status().applications.get(name)
        if status is not None and status.status == "RUNNING":
            return
        if status is not None and status.status in ("DEPLOY_FAILED", "UNHEALTHY"):
            raise RuntimeError(f"the REST application failed to start: {status.message}")
        time.sleep(0.2)
    raise TimeoutError(f"the REST application was not running after {timeout_s:.0f} s")


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        credentials, host = rest.rsplit("@", 1)
        user = credentials.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in credentials else url
    return url
