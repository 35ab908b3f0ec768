"""Where the device-facing transports run: MQTT and CoAP listeners on every node of the cluster,
each pinned to its node (its sockets are that node's ports), placed when the node joins and
dropped when it dies. Devices of a lost node reconnect to another node's listeners."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from thingsray.config import Settings
from thingsray.runtime import PartitionTable
from thingsray.transports.mqtt.tls import TlsFiles

log = logging.getLogger(__name__)


def mqtt_transport_name(index: int) -> str:
    """The Ray actor name of an MQTT transport process; device actors push to it by name."""
    return f"thingsray-mqtt-{index}"


def coap_transport_name(index: int) -> str:
    return f"thingsray-coap-{index}"


@dataclass
class NodeTransports:
    """The listeners of one node, and the ports they bound there."""

    node_id: str
    address: str
    mqtt: list[Any] = field(default_factory=list)
    coap: list[Any] = field(default_factory=list)
    mqtt_port: int | None = None
    mqtt_tls_port: int | None = None
    coap_port: int | None = None


def alive_nodes() -> list[tuple[str, str]]:
    """(node id, address) of every alive node, the head first."""
    import ray

    nodes = [n for n in ray.nodes() if n.get("Alive")]
    nodes.sort(key=lambda n: (not n.get("Resources", {}).get("node:__internal_head__"), n["NodeID"]))
    return [(n["NodeID"], n["NodeManagerAddress"]) for n in nodes]


class TransportPlacement:
    def __init__(self, settings: Settings, database_url: str, table: PartitionTable, tls: TlsFiles | None,
                 progress: Callable[[str], None]) -> None:
        self.settings = settings
        self.database_url = database_url
        self.table = table
        self.tls = tls
        self.progress = progress
        self.nodes: dict[str, NodeTransports] = {}
        self._mqtt_names = itertools.count()
        self._coap_names = itertools.count()

    def log_target(self, name: str) -> Any:
        from thingsray.actors.env import LogTarget

        return LogTarget(self.settings.log_level, str(self.settings.data_path / "logs" / f"{name}.log"))

    @property
    def mqtt_handles(self) -> list[Any]:
        return [h for node in self.nodes.values() for h in node.mqtt]

    @property
    def coap_handles(self) -> list[Any]:
        return [h for node in self.nodes.values() for h in node.coap]

    def place_everywhere(self) -> None:
        for node_id, address in alive_nodes():
            self.place(node_id, address)

    def place(self, node_id: str, address: str) -> NodeTransports:
        """``mqtt_transports`` MQTT processes sharing the node's MQTT port (SO_REUSEPORT: the kernel
        spreads connections over them) and one CoAP process, pinned to the node."""
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        from thingsray.actors.coap_transport import CoapTransportActor
        from thingsray.actors.mqtt_transport import MqttTransportActor

        node = self.nodes[node_id] = NodeTransports(node_id, address)
        pinned = NodeAffinitySchedulingStrategy(node_id, soft=False)
        settings = self.settings
        port, tls_port = settings.mqtt_port, settings.mqtt_tls_port
        for _ in range(settings.mqtt_transports):
            name = mqtt_transport_name(next(self._mqtt_names))
            handle = ray.remote(MqttTransportActor).options(
                name=name, num_cpus=0, max_restarts=-1, max_concurrency=100_000, scheduling_strategy=pinned,
            ).remote(name, settings.host, port, self.database_url, settings.shards, self.table,
                     settings.redis_url, self.tls, tls_port, log_target=self.log_target(name))
            node.mqtt.append(handle)
            port, bound_tls = ray.get(handle.start.remote())  # the next ones join the port the first bound
            tls_port = bound_tls if bound_tls is not None else tls_port
            if node.mqtt_port is None:
                node.mqtt_port, node.mqtt_tls_port = port, bound_tls
        name = coap_transport_name(next(self._coap_names))
        coap = ray.remote(CoapTransportActor).options(
            name=name, num_cpus=0, max_restarts=-1, max_concurrency=100_000, scheduling_strategy=pinned,
        ).remote(name, settings.host, settings.coap_port, self.database_url, settings.shards, self.table,
                 settings.redis_url, log_target=self.log_target(name))
        node.coap.append(coap)
        node.coap_port = ray.get(coap.start.remote())
        where = f" on node {node_id[:8]} ({address})" if len(self.nodes) > 1 or settings.address else ""
        count = settings.mqtt_transports
        self.progress(f"mqtt: listening on {settings.host}:{node.mqtt_port}{where}"
                      + (f" ({count} transport processes)" if count > 1 else ""))
        if node.mqtt_tls_port is not None:
            self.progress(f"mqtt: TLS listening on {settings.host}:{node.mqtt_tls_port}{where}")
        self.progress(f"coap: listening on {settings.host}:{node.coap_port}{where}")
        return node

    def supervise(self) -> tuple[int, list[str]]:
        """Bring back listeners Ray restarted (it runs only their constructor), drop those of dead
        nodes, place listeners on nodes that joined; (listening processes, ids of joined nodes)."""
        import ray

        alive = dict(alive_nodes())
        for node_id in [n for n in self.nodes if n not in alive]:
            lost = self.nodes.pop(node_id)
            log.warning("node %s (%s) is gone with its %d MQTT and %d CoAP listeners; its devices reconnect "
                        "elsewhere", node_id[:8], lost.address, len(lost.mqtt), len(lost.coap))
            self.progress(f"node {node_id[:8]} ({lost.address}) lost: its listeners are gone")
        listening = 0
        for node in self.nodes.values():
            for handle in node.mqtt + node.coap:
                try:
                    ray.get(handle.start.remote(), timeout=30)
                except Exception as exc:
                    log.warning("a transport process on node %s is not back yet: %r", node.node_id[:8], exc)
                    continue
                listening += 1
        joined = [node_id for node_id in alive if node_id not in self.nodes]
        for node_id in joined:
            self.progress(f"node {node_id[:8]} ({alive[node_id]}) joined")
            try:
                self.place(node_id, alive[node_id])
            except Exception:
                log.exception("placing listeners on node %s failed; trying again", node_id[:8])
                self.nodes.pop(node_id, None)
        return listening, joined

    def stop(self) -> None:
        import ray

        alive = dict(alive_nodes())
        for node in self.nodes.values():
            if node.node_id not in alive:
                continue  # its listeners went with it
            for handle in node.coap + node.mqtt:
                try:
                    ray.get(handle.stop.remote(), timeout=10)
                    ray.kill(handle, no_restart=True)
                except Exception:
                    log.exception("stopping a transport on node %s failed", node.node_id[:8])
        self.nodes = {}
