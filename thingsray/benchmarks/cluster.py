"""thingsray on a Ray cluster of several nodes on this machine (``ray.cluster_utils.Cluster``, every
raylet on 127.0.0.1): a device on one node's listener served by a shard on another, a node lost
under QoS 1 load, a node added, and ingest by node count.

Run as ``python -m thingsray.benchmarks.cluster --scenario failover|join|ingest --database-server
postgresql://...``; it prints (and with ``--json`` writes) what it measured. Each run creates and
drops a database of its own on that server. tests/test_cluster.py runs the first two and asserts on
what they report; ``thingsray bench``-style figures come from ``ingest``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

WAIT_S = 60.0
"""A bound on waiting for what should happen (a reconnect, a rebalance); never a speed figure."""


# --- a cluster and a platform on it --------------------------------------------------------------
@contextmanager
def fresh_database(server_url: str) -> Iterator[str]:
    from thingsray.benchmarks.fleet import create_database, drop_database

    url, name = asyncio.run(create_database(server_url))
    try:
        yield url
    finally:
        asyncio.run(drop_database(server_url, name))


@contextmanager
def local_cluster(nodes: int, cpus: int = 1) -> Iterator[Any]:
    """``nodes`` raylets on 127.0.0.1 (the head first); shut down after."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": cpus})
    try:
        for _ in range(nodes - 1):
            cluster.add_node(num_cpus=cpus)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def start_platform(cluster: Any, database_url: str, shards: int, **overrides: Any) -> Any:
    from thingsray.config import Settings
    from thingsray.platform import Platform, pick_free_port

    settings = Settings.load({
        "address": cluster.address, "database_url": database_url, "host": "127.0.0.1",
        "http_port": pick_free_port(), "mqtt_port": 0, "coap_port": 0, "shards": shards, "demo": True,
        "snmp_enabled": False, "log_level": "WARNING", "data_dir": f"/tmp/thingsray-cluster-{uuid.uuid4().hex[:6]}",
        **overrides}, environ={})
    platform = Platform(settings, progress=lambda m: print(f"  [platform] {m}", flush=True))
    platform.start()
    return platform


def node_ports(platform: Any) -> list[tuple[str, int]]:
    """(node id, MQTT port) of every node with listeners, the head first."""
    assert platform.placement is not None
    return [(node_id, node.mqtt_port) for node_id, node in platform.placement.nodes.items()]


def create_devices(platform: Any, count: int) -> list[tuple[str, str]]:
    """(device id, token) of ``count`` new devices, made over REST."""
    import httpx

    headers = {"X-Authorization": f"Bearer {tenant_jwt(platform)}"}
    devices = []
    with httpx.Client(base_url=platform.http_url, headers=headers, timeout=30) as client:
        for _ in range(count):
            token = f"CL-{uuid.uuid4().hex[:12]}"
            created = client.post("/api/device", params={"accessToken": token},
                                  json={"name": f"cluster {uuid.uuid4().hex[:8]}"})
            created.raise_for_status()
            devices.append((created.json()["id"]["id"], token))
    return devices


def stored_seqs(database_url: str, device_ids: list[str]) -> dict[str, list[int]]:
    """The ``seq`` values stored for each device, in timestamp order."""
    import asyncpg

    async def read() -> dict[str, list[int]]:
        conn = await asyncpg.connect(database_url)
        try:
            rows = await conn.fetch(
                "SELECT t.entity_id::text AS id, t.long_v FROM ts_kv t JOIN key_dictionary k ON k.key_id = t.key"
                " WHERE k.key = 'seq' AND t.entity_id = ANY($1::uuid[]) ORDER BY t.ts",
                [uuid.UUID(d) for d in device_ids])
        finally:
            await conn.close()
        out: dict[str, list[int]] = {d: [] for d in device_ids}
        for row in rows:
            out[row["id"]].append(row["long_v"])
        return out

    return asyncio.run(read())


# --- a device that keeps its acknowledged messages ------------------------------------------------
@dataclass
class Publisher:
    """Publishes ``{"ts", "values": {"seq"}}`` at QoS 1, one in flight; when its listener goes
    away it reconnects to the next node's and sends again what was not acknowledged, as device
    firmware does. ``acked`` holds every sequence number the platform acknowledged."""

    device_id: str
    token: str
    ports: list[int]
    first: int
    acked: list[tuple[int, float]] = field(default_factory=list)
    reconnects: list[float] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _client(self, port: int) -> Any:
        import paho.mqtt.client as paho

        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"cl-{uuid.uuid4().hex[:8]}")
        client.username_pw_set(self.token)
        client.connect("127.0.0.1", port, keepalive=10)
        client.loop_start()
        return client

    def _run(self) -> None:
        seq, attempt = 0, self.first
        base_ms = int(time.time() * 1000)
        client = None
        while not self.stop.is_set():
            try:
                if client is None:
                    client = self._client(self.ports[attempt % len(self.ports)])
                info = client.publish("v1/devices/me/telemetry",
                                      json.dumps({"ts": base_ms + seq, "values": {"seq": seq}}), qos=1)
                info.wait_for_publish(5.0)
                if info.is_published():
                    self.acked.append((seq, time.monotonic()))
                    seq += 1
                    continue
                raise TimeoutError("no PUBACK")
            except Exception:
                if client is not None:
                    client.loop_stop()
                    client.disconnect()
                    client = None
                attempt += 1
                self.reconnects.append(time.monotonic())
                time.sleep(0.2)
        if client is not None:
            client.disconnect()
            client.loop_stop()

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(WAIT_S)


@dataclass
class LiveWatcher:
    """One WebSocket (``/api/ws/plugins/telemetry``) subscribed to every device's ``seq``: when
    each update arrived, per device, to see live updates go on after a device's partition moved."""

    http_url: str
    jwt: str
    device_ids: list[str]
    arrivals: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None
    stop: threading.Event = field(default_factory=threading.Event)
    ready: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> None:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        self.ready.wait(WAIT_S)

    def _run(self) -> None:
        from websockets.sync.client import connect

        url = f"{self.http_url.replace('http://', 'ws://')}/api/ws/plugins/telemetry?token={self.jwt}"
        by_cmd = dict(enumerate(self.device_ids, start=1))
        try:
            with connect(url, open_timeout=60) as ws:
                ws.send(json.dumps({"tsSubCmds": [{"cmdId": cmd, "entityType": "DEVICE", "entityId": device,
                                                   "keys": "seq"} for cmd, device in by_cmd.items()]}))
                self.ready.set()
                while not self.stop.is_set():
                    try:
                        frame = json.loads(ws.recv(timeout=0.5))
                    except TimeoutError:
                        continue
                    device = by_cmd.get(frame.get("subscriptionId"))
                    if device is not None and (frame.get("data") or {}).get("seq"):
                        self.arrivals.setdefault(device, []).append(time.monotonic())
        except Exception as exc:
            self.error = repr(exc)
            self.ready.set()

    def finish(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(WAIT_S)


def tenant_jwt(platform: Any) -> str:
    import httpx

    login = httpx.post(f"{platform.http_url}/api/auth/login",
                       json={"username": "tenant@thingsboard.org", "password": "tenant"}, timeout=30)
    return str(login.json()["token"])


def rate(publishers: list[Publisher], start: float, end: float) -> float:
    count = sum(1 for p in publishers for _, at in p.acked if start <= at < end)
    return count / max(end - start, 1e-9)


def checked(database_url: str, publishers: list[Publisher]) -> dict[str, Any]:
    stored = stored_seqs(database_url, [p.device_id for p in publishers])
    lost = sum(len({s for s, _ in p.acked} - set(stored[p.device_id])) for p in publishers)
    duplicated = sum(len(stored[p.device_id]) - len(set(stored[p.device_id])) for p in publishers)
    return {"acked": sum(len(p.acked) for p in publishers), "stored": sum(len(v) for v in stored.values()),
            "lost": lost, "duplicated": duplicated}


def shard_nodes() -> dict[int, str]:
    import ray

    from thingsray.runtime.cluster import SHARD_PREFIX, shard_name

    out = {}
    index = 0
    while True:
        try:
            handle = ray.get_actor(shard_name(SHARD_PREFIX, index))
        except ValueError:
            return out
        out[index] = ray.get(handle.__ray_call__.remote(lambda _s: ray.get_runtime_context().get_node_id()))
        index += 1


def current_table() -> Any:
    import ray

    from thingsray.runtime.cluster import DIRECTORY

    return ray.get(ray.get_actor(DIRECTORY).current.remote())


# --- scenarios -------------------------------------------------------------------------------------
def failover(server_url: str, devices: int = 12, before_s: float = 6.0) -> dict[str, Any]:
    """Three nodes; devices spread over their listeners; a worker node killed under load."""
    from thingsray.actors.messages import DEVICE
    from thingsray.runtime import Address

    with fresh_database(server_url) as database_url, local_cluster(3) as cluster:
        platform = start_platform(cluster, database_url, shards=3)
        try:
            ports = node_ports(platform)
            placed = shard_nodes()
            table = current_table()
            made = create_devices(platform, devices)
            publishers = [Publisher(d, t, [p for _, p in ports], i % len(ports)) for i, (d, t) in enumerate(made)]
            cross = [p for p in publishers
                     if placed[table.shard_of(Address(DEVICE, p.device_id))] != ports[p.first][0]]
            for p in publishers:
                p.start()
            time.sleep(before_s)
            workers = {n.node_id: n for n in cluster.worker_nodes}
            # the worker that hosts the most shards: its loss costs shards and listeners both
            victim_id = max(workers, key=lambda n: sum(1 for node in placed.values() if node == n))
            victim = workers[victim_id]
            on_victim = [i for i, node in placed.items() if node == victim_id]
            victim_port = next(i for i, (node, _) in enumerate(ports) if node == victim_id)
            killed_at = time.monotonic()
            rate_before = rate(publishers, killed_at - before_s / 2, killed_at)
            cluster.remove_node(victim, allow_graceful=False)
            deadline = killed_at + WAIT_S * 3
            # until Ray declares the node dead and the platform has started its shards elsewhere
            while time.monotonic() < deadline and victim_id in platform._shard_nodes:
                platform.supervise()
                time.sleep(0.5)
            replaced_s = time.monotonic() - killed_at
            replaced_at = time.monotonic()
            while time.monotonic() < deadline and not all(
                    sum(1 for _, at in p.acked if at > replaced_at) >= 20 for p in publishers):
                platform.supervise()
                time.sleep(0.5)
            recovered = [min((at for _, at in p.acked if at > killed_at), default=float("inf")) - killed_at
                         for p in publishers]
            served_by_lost = [r for p, r in zip(publishers, recovered, strict=True)
                              if table.shard_of(Address(DEVICE, p.device_id)) in on_victim]
            # the longest a device waited for an acknowledgement after the kill: the outage it saw
            stalls = [max((b - a for a, b in itertools.pairwise(times)), default=0.0)
                      for times in ([killed_at] + [at for _, at in p.acked if at > killed_at] for p in publishers)]
            settle = time.monotonic()
            time.sleep(3.0)
            rate_after = rate(publishers, settle, time.monotonic())
            for p in publishers:
                p.finish()
            figures = checked(database_url, publishers)
            return {
                "nodes": 3, "shards": 3, "devices": devices,
                "cross_node_devices": len(cross),
                "shards_on_lost_node": len(on_victim),
                "shards_started_again_s": round(replaced_s, 2),
                "shards_on_lost_node_after": sum(1 for n in platform._shard_nodes if n == victim_id),
                "shard_nodes": len(set(placed.values())),
                "devices_on_lost_node": sum(1 for p in publishers if p.first == victim_port),
                "devices_served_by_lost_shards": len(served_by_lost),
                "recovery_s_median": round(statistics.median(recovered), 2),
                "recovery_s_max": round(max(recovered), 2),
                "recovery_s_max_lost_shards": round(max(served_by_lost), 2) if served_by_lost else None,
                "longest_stall_s_median": round(statistics.median(stalls), 2),
                "longest_stall_s_max": round(max(stalls), 2),
                "msg_per_s_before": round(rate_before, 1), "msg_per_s_after": round(rate_after, 1),
                **figures,
            }
        finally:
            platform.stop()


def join(server_url: str, devices: int = 9, before_s: float = 5.0) -> dict[str, Any]:
    """Two nodes under load; a third joins: listeners and a shard there, partitions move to it."""
    with fresh_database(server_url) as database_url, local_cluster(2) as cluster:
        platform = start_platform(cluster, database_url, shards=2, join_shards=1)
        try:
            ports = node_ports(platform)
            made = create_devices(platform, devices)
            publishers = [Publisher(d, t, [p for _, p in ports], i % len(ports)) for i, (d, t) in enumerate(made)]
            watcher = LiveWatcher(platform.http_url, tenant_jwt(platform), [d for d, _ in made])
            watcher.start()
            for p in publishers:
                p.start()
            time.sleep(before_s)
            before = current_table()
            joined_at = time.monotonic()
            cluster.add_node(num_cpus=1)
            cluster.wait_for_nodes()
            deadline = joined_at + WAIT_S * 2
            after = before
            while time.monotonic() < deadline and after.epoch == before.epoch:
                platform.supervise()
                after = current_table()
                time.sleep(0.5)
            rebalanced_s = time.monotonic() - joined_at
            rebalanced_at = time.monotonic()
            time.sleep(6.0)
            for p in publishers:
                p.finish()
            watcher.finish()
            figures = checked(database_url, publishers)
            new_shard = after.shards - 1
            from thingsray.actors.messages import DEVICE
            from thingsray.runtime import Address

            moved = [d for d, _ in made if before.shard_of(Address(DEVICE, d)) != after.shard_of(Address(DEVICE, d))]
            live_after = [d for d in moved if any(at > rebalanced_at for at in watcher.arrivals.get(d, ()))]
            return {
                "nodes_before": 2, "nodes_after": len(node_ports(platform)),
                "epoch_before": before.epoch, "epoch_after": after.epoch,
                "shards_after": after.shards, "partitions_on_new_shard": after.owners.count(new_shard),
                "partitions_moved": len(before.moved(after)) if after.partitions == before.partitions else None,
                "rebalanced_s": round(rebalanced_s, 2),
                "devices_moved": len(moved), "moved_devices_with_live_updates_after": len(live_after),
                "live_watch_error": watcher.error,
                **figures,
            }
        finally:
            platform.stop()


def ingest(server_url: str, counts: tuple[int, ...] = (1, 2, 3), devices: int = 60,
           duration: float = 10.0) -> dict[str, Any]:
    """Acknowledged msg/s with the load spread over every node's listener, for each node count."""
    from thingsray.benchmarks.load import LoadSpec

    figures: dict[str, Any] = {}
    for nodes in counts:
        with fresh_database(server_url) as database_url, local_cluster(nodes) as cluster:
            platform = start_platform(cluster, database_url, shards=nodes)
            try:
                ports = [p for _, p in node_ports(platform)]
                tokens = [t for _, t in create_devices(platform, devices)]
                specs = [LoadSpec("127.0.0.1", port, tuple(tokens[i::len(ports)]), workers=1, duration=duration)
                         for i, port in enumerate(ports)]
                results: list[Any] = [None] * len(specs)
                threads = [threading.Thread(target=_run_into, args=(results, i, s)) for i, s in enumerate(specs)]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                acked = sum(r.acked for r in results)
                figures[f"{nodes}_nodes"] = {"msg_per_s": round(acked / duration, 1), "listeners": len(ports)}
            finally:
                platform.stop()
    return figures


def _run_into(results: list[Any], index: int, spec: Any) -> None:
    from thingsray.benchmarks.load import run_load

    results[index] = run_load(spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", choices=("failover", "join", "ingest"), required=True)
    parser.add_argument("--database-server", default=os.environ.get(
        "THINGSRAY_TEST_DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test"),
        help="a PostgreSQL server (a database of it) where the run creates its own database")
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    run = {"failover": failover, "join": join, "ingest": ingest}[args.scenario]
    figures = run(args.database_server)
    text = json.dumps(figures, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w") as out:
            out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
