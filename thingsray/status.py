"""``thingsray status``: what a running platform is made of, read from its Ray cluster: the nodes,
the partition table, each shard (its node, partitions, active actors) and each transport (its
node, port, sessions)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from thingsray.config import ConfigError, Settings

RAY_ADDRESS_FILE = "ray-address"
"""Beside the data: the address of the private Ray a single-machine ``up`` started."""
CALL_TIMEOUT_S = 10.0


@dataclass
class NodeStatus:
    node_id: str
    address: str
    alive: bool
    cpus: float


@dataclass
class ActorStatus:
    name: str
    node_id: str | None
    stats: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class PlatformStatus:
    nodes: list[NodeStatus]
    epoch: int | None
    partitions: int | None
    shards: list[ActorStatus]
    transports: list[ActorStatus]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def ray_address(settings: Settings) -> str:
    """The cluster to read: ``--address``, else the private Ray of this machine's ``up``."""
    if settings.address:
        return settings.address
    path = settings.data_path / RAY_ADDRESS_FILE
    if not path.is_file():
        raise ConfigError(f"no platform runs from {settings.data_path} (no {path.name} there): start one with "
                          "`thingsray up`, or name a cluster with --address")
    return path.read_text().strip()


def write_ray_address(data_dir: Path, address: str) -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / RAY_ADDRESS_FILE).write_text(address + "\n")


def forget_ray_address(data_dir: Path) -> None:
    (data_dir / RAY_ADDRESS_FILE).unlink(missing_ok=True)


def collect() -> PlatformStatus:
    """Read the status from the Ray cluster this process is connected to."""
    import ray
    from ray.util import list_named_actors

    from thingsray.runtime.cluster import DIRECTORY, SHARD_PREFIX

    nodes = [NodeStatus(n["NodeID"], n["NodeManagerAddress"], bool(n["Alive"]), n["Resources"].get("CPU", 0.0))
             for n in ray.nodes()]
    names = sorted(list_named_actors())
    epoch = partitions = None
    owners: tuple[int, ...] = ()
    if DIRECTORY in names:
        table = ray.get(ray.get_actor(DIRECTORY).current.remote(), timeout=CALL_TIMEOUT_S)
        epoch, partitions, owners = table.epoch, table.partitions, table.owners
    shards = [_actor(name) for name in names if name.startswith(SHARD_PREFIX + "-")]
    for shard in shards:
        index = int(shard.name.rsplit("-", 1)[1])
        shard.stats.setdefault("partitions", sum(1 for owner in owners if owner == index))
    shards.sort(key=lambda s: int(s.name.rsplit("-", 1)[1]))
    transports = [_actor(name) for name in names
                  if name.startswith("thingsray-") and not name.startswith(SHARD_PREFIX + "-") and name != DIRECTORY]
    return PlatformStatus(nodes, epoch, partitions, shards, transports)


def _actor(name: str) -> ActorStatus:
    import ray

    try:
        handle = ray.get_actor(name)
        node = ray.get(handle.__ray_call__.remote(lambda _self: ray.get_runtime_context().get_node_id()),
                       timeout=CALL_TIMEOUT_S)
        stats = ray.get(handle.stats.remote(), timeout=CALL_TIMEOUT_S) if hasattr(handle, "stats") else {}
    except Exception as exc:
        return ActorStatus(name, None, error=f"{type(exc).__name__}: {exc}"[:200])
    return ActorStatus(name, node, stats if isinstance(stats, dict) else {"stats": stats})


def render(status: PlatformStatus) -> str:
    short = {n.node_id: f"{n.node_id[:8]} ({n.address})" for n in status.nodes}
    lines = [f"nodes: {sum(n.alive for n in status.nodes)} alive of {len(status.nodes)}"]
    lines += [f"  {n.node_id[:8]}  {n.address:<15}  {'alive' if n.alive else 'dead '}  {n.cpus:g} CPU"
              for n in status.nodes]
    if status.epoch is not None:
        lines.append(f"partition table: epoch {status.epoch}, {status.partitions} partitions over "
                     f"{len(status.shards)} shards")
    lines.append("shards:")
    for shard in status.shards:
        where = short.get(shard.node_id or "", shard.node_id or "?")
        if shard.error:
            lines.append(f"  {shard.name:<20} {where}  unavailable: {shard.error}")
            continue
        lines.append(f"  {shard.name:<20} {where}  partitions {shard.stats.get('partitions', '?'):>3}  "
                     f"active actors {shard.stats.get('active_actors', '?'):>8}  "
                     f"processed {shard.stats.get('processed', '?')}")
    lines.append("transports:")
    for transport in status.transports:
        where = short.get(transport.node_id or "", transport.node_id or "?")
        if transport.error:
            lines.append(f"  {transport.name:<20} {where}  unavailable: {transport.error}")
            continue
        stats = transport.stats
        port = stats.get("port", "")
        detail = "  ".join(f"{k} {v}" for k, v in stats.items()
                           if k in ("sessions", "devices", "bridges", "received", "polled") and v is not None)
        lines.append(f"  {transport.name:<20} {where}  {'port ' + str(port) if port else ''}  {detail}".rstrip())
    return "\n".join(lines)


def run(settings: Settings, as_json: bool = False) -> int:
    address = ray_address(settings)
    if not settings.address:
        from thingsray.platform import use_loopback_ray

        use_loopback_ray()
        # a private Ray started by ray.init() authenticates with the token it left in ~/.ray (Ray 2.60);
        # Ray reads the mode when it is first imported
        os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    ray.init(address=address, namespace="thingsray", log_to_driver=False, logging_level="ERROR")
    try:
        status = collect()
    finally:
        ray.shutdown()
    print(json.dumps(status.to_json(), indent=2) if as_json else render(status))
    return 0
