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
from typing import Any

from thingsray.config import ConfigError, Settings
from thingsray.placement import TransportPlacement
from thingsray.placement import mqtt_transport_name as mqtt_transport_name  # where tests look it up
from thingsray.runtime import DEFAULT_PARTITIONS, PartitionTable
from thingsray.storage import EmbeddedPostgres, connect, ensure_ts_partitions, migrate
from thingsray.storage.entities import now_ms
from thingsray.storage.partitions import table_for
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


def partition_table(settings: Settings) -> PartitionTable:
    """The partition table a process starts routing with before it learns the one in force (a
    shard refusing it for an older epoch makes its router ask the directory)."""
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
    _shard_nodes: list = field(default_factory=list)
    """The node each shard is pinned to, by index."""
    _directory: Any = None
    _growing: bool = False
    """New shards run but the partitions have not moved to them yet."""
    table: PartitionTable | None = None
    """The partition table in force when the platform started (the directory holds the current one)."""
    placement: TransportPlacement | None = None
    """The MQTT and CoAP listeners of every node."""
    _snmp: list = field(default_factory=list)
    """The SNMP transport actors (one per node)."""
    _bridge_configs: list = field(default_factory=list)
    _bridges: list = field(default_factory=list)
    """The bridge transport actor, when bridge_config is set."""
    mqtt_port: int | None = None
    mqtt_tls_port: int | None = None
    """None when MQTT over TLS is off."""
    coap_port: int | None = None
    """The CoAP listener's bound UDP port (the head node's)."""
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
                self.table = await table_for(db, self.settings.shards, DEFAULT_PARTITIONS)
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
            from thingsray.status import write_ray_address

            write_ray_address(self.settings.data_path, ray.get_runtime_context().gcs_address)  # for `status`
        self._started_ray = True

    def _log_target(self, name: str) -> Any:
        from thingsray.actors.env import LogTarget

        return LogTarget(self.settings.log_level, str(Path(self.log_dir) / f"{name}.log"))

    @property
    def log_dir(self) -> str:
        """Where shards write their logs (rule chains' Log nodes among them)."""
        return str(Path(self.settings.data_dir).expanduser() / "logs")

    def _factories(self) -> dict:
        from thingsray.actors import FACTORIES

        return dict(FACTORIES)

    def _setup(self) -> Any:
        from thingsray.actors.env import make_setup

        assert self.database_url is not None
        return make_setup(self.database_url, log_level=self.settings.log_level, log_dir=self.log_dir, engine_options={
            "debug_event_ttl_s": self.settings.debug_event_ttl,
            "debug_events_per_entity": self.settings.debug_events_per_entity})

    @staticmethod
    def _shard_options() -> dict:
        from thingsray.actors import TENANT

        return {"pinned_kinds": (TENANT,)}  # a tenant's view lives on every shard: it never moves

    def _start_shards(self) -> None:
        """The partition directory (the table in force, kept in PostgreSQL), then the shards."""
        from thingsray.runtime.cluster import DIRECTORY, start_directory, start_shards
        from thingsray.storage.partitions import postgres_table_store

        assert self.database_url is not None and self.table is not None
        count = self.settings.shards
        self._directory = start_directory(postgres_table_store(self.database_url))
        self.progress(f"actors: starting {count} shard{'s' if count > 1 else ''} (partition table epoch "
                      f"{self.table.epoch})")
        from thingsray.placement import alive_nodes

        nodes = [node_id for node_id, _ in alive_nodes()]
        self._shard_nodes = [nodes[i % len(nodes)] for i in range(count)]
        self._shards = start_shards(count, self._factories(), self.table, setup=self._setup(),
                                    options=self._shard_options(), directory=DIRECTORY, nodes=nodes)

    def _start_transports(self) -> None:
        """MQTT and CoAP listeners on every node (thingsray.placement)."""
        assert self.database_url is not None and self.table is not None
        self.placement = TransportPlacement(self.settings, self.database_url, self.table, self._tls, self.progress)
        self.placement.place_everywhere()
        head = next(iter(self.placement.nodes.values()))
        self.mqtt_port, self.mqtt_tls_port, self.coap_port = head.mqtt_port, head.mqtt_tls_port, head.coap_port

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
                name, self.database_url, self.settings.shards, self.table, index, len(nodes),
                self.settings.snmp_rescan_s, log_target=self._log_target(name)))
        polled = sum(ray.get([handle.start.remote() for handle in self._snmp]))
        self.progress(f"snmp: polling {polled} device{'' if polled == 1 else 's'}"
                      + (f" ({len(self._snmp)} transport processes)" if len(self._snmp) > 1 else ""))

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
            self.table, self.settings.redis_url, log_target=self._log_target(BRIDGE_TRANSPORT_NAME))
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
        """The MQTT transport Ray actors of every node."""
        return self.placement.mqtt_handles if self.placement is not None else []

    @property
    def snmp_handles(self) -> list:
        """The SNMP transport Ray actors (each answers ``stats()``, ``rescan()``)."""
        return list(self._snmp)

    def supervise(self) -> int:
        """Bring back the listeners of transport processes Ray restarted, drop those of dead nodes,
        and give a node that joined its listeners and ``join_shards`` new shards (partitions move
        to them); return how many listeners listen. ``thingsray up`` calls this every second."""
        import ray

        listening = 0
        if self.placement is not None:
            listening, joined = self.placement.supervise()
            self._replace_lost_shards(set(self.placement.nodes))
            self._grow_shards(None)  # one that failed before
            for node_id in joined:
                try:
                    self._grow_shards(node_id)
                except Exception:
                    log.exception("starting shards on node %s failed", node_id[:8])
        for handle in self._snmp:  # an SNMP process Ray restarted polls again
            try:
                ray.get(handle.start.remote(), timeout=30)
            except Exception as exc:
                log.warning("an SNMP transport process is not back yet: %r", exc)
        for handle in self._bridges:  # a bridge process Ray restarted connects its bridges again
            try:
                ray.get(handle.start.remote(), timeout=30)
            except Exception as exc:
                log.warning("the bridge process is not back yet: %r", exc)
        return listening

    def _replace_lost_shards(self, alive: set[str]) -> None:
        """Start anew, on the alive node with the fewest shards, each shard whose node died (Ray
        cannot: shards are pinned). A new epoch first fences its old process, should it still
        run somewhere cut off; routers find the new one by name."""
        if not alive or self._directory is None:
            return
        import ray

        from thingsray.runtime.cluster import DIRECTORY, start_shards

        for index, node in enumerate(self._shard_nodes):
            if node in alive:
                continue
            target = min(sorted(alive), key=lambda n: self._shard_nodes.count(n))
            try:
                ray.kill(self._shards[index], no_restart=True)
            except Exception as exc:
                log.debug("the lost shard %d was already gone: %r", index, exc)
            try:  # the directory may have been on the lost node too: Ray restarts it, and this is tried again
                table = ray.get(self._directory.fence.remote(index), timeout=30)
                [self._shards[index]] = start_shards(1, self._factories(), table, first=index, setup=self._setup(),
                                                     options=self._shard_options(), directory=DIRECTORY,
                                                     nodes=[target])
            except Exception as exc:
                log.warning("starting shard %d of lost node %s again failed (%r); trying again", index, node[:8],
                            exc)
                continue
            self._shard_nodes[index] = target
            self.progress(f"actors: shard {index} of lost node {node[:8]} started again on node {target[:8]} "
                          f"(partition table epoch {table.epoch})")

    def _grow_shards(self, node_id: str | None) -> None:
        """New shards on a node that joined, then the partitions spread over every shard; a grow
        that failed (the directory was restarting) is tried again on the next call (``None``)."""
        count = self.settings.join_shards
        if self._directory is None or (node_id is None and not self._growing):
            return
        import ray

        from thingsray.runtime.cluster import DIRECTORY, start_shards

        if node_id is not None and count > 0:
            current = ray.get(self._directory.current.remote(), timeout=30)
            first = len(self._shards)
            self._shards += start_shards(count, self._factories(), current, first=first, setup=self._setup(),
                                         options=self._shard_options(), directory=DIRECTORY, nodes=[node_id])
            self._shard_nodes += [node_id] * count
            self._growing = True
        if not self._growing:
            return
        try:
            table = ray.get(self._directory.grow.remote(len(self._shards)), timeout=120)
        except Exception as exc:
            log.warning("moving partitions to the new shards failed (%r); trying again", exc)
            return
        self._growing = False
        node_id = node_id or self._shard_nodes[-1]
        self.progress(f"actors: {count} shard{'s' if count > 1 else ''} added on node {node_id[:8]}; partition "
                      f"table epoch {table.epoch} spreads {table.partitions} partitions over {table.shards} shards")

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
        if self._snmp:
            import ray

            for handle in self._snmp:  # before the shards: it closes its devices' sessions through them
                try:
                    ray.get(handle.stop.remote(), timeout=10)
                    ray.kill(handle, no_restart=True)
                except Exception:
                    log.exception("stopping an SNMP transport failed")
            self._snmp = []
        if self.placement is not None:
            self.placement.stop()
            self.placement = None
        if self._shards or self._directory is not None:
            import ray

            for handle in self._shards:
                try:
                    ray.get(handle.stop.remote(), timeout=10)
                    ray.kill(handle, no_restart=True)
                except Exception:
                    log.exception("stopping a shard failed")
            if self._directory is not None:
                ray.kill(self._directory, no_restart=True)
            self._shards, self._directory = [], None
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

                from thingsray.status import forget_ray_address

                ray.shutdown()
                self._started_ray = False
                forget_ray_address(self.settings.data_path)
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
