"""Throughput of a trivial REST call through Ray Serve's ingress options versus plain uvicorn.

Each configuration runs in its own process (Serve reads RAY_SERVE_* when Ray is imported), on a
fresh database on the PostgreSQL server given, on 127.0.0.1 only. The load is many concurrent
keep-alive connections: ``wrk`` when installed, else an httpx.AsyncClient pool. For every
configuration it also lists the sockets its processes listen on, flagging any beyond loopback.

    /work/venv/bin/python bench/rest_serve_vs_uvicorn.py [--duration 10] [--connections 64]
        [--configs uvicorn,serve,serve-2,throughput,direct,haproxy,haproxy-2]
        [--database-server postgresql://postgres@127.0.0.1:5432/test]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import psutil

from thingsray.benchmarks import http_load

REPO = Path(__file__).resolve().parents[1]
TENANT = ("tenant@thingsboard.org", "tenant")
LOGS = Path(tempfile.gettempdir()) / "thingsray-bench"
sys.path.insert(0, str(REPO))  # measure the checkout this file is in


@dataclass(frozen=True)
class Config:
    name: str
    server: str  # "uvicorn" or "serve"
    replicas: int = 1
    env: tuple[tuple[str, str], ...] = ()


CONFIGS = {c.name: c for c in (
    Config("uvicorn", "uvicorn"),
    Config("serve", "serve"),
    Config("serve-2", "serve", 2),
    Config("throughput", "serve", 1, (("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1"),)),
    Config("direct", "serve", 1, (("RAY_SERVE_ENABLE_DIRECT_INGRESS", "1"),)),
    Config("haproxy", "serve", 1, (("RAY_SERVE_ENABLE_HA_PROXY", "1"),)),
    Config("haproxy-2", "serve", 2, (("RAY_SERVE_ENABLE_HA_PROXY", "1"),)),
    Config("haproxy-throughput", "serve", 1, (("RAY_SERVE_ENABLE_HA_PROXY", "1"),
                                              ("RAY_SERVE_THROUGHPUT_OPTIMIZED", "1"))),
)}
DEFAULT_CONFIGS = "uvicorn,serve,serve-2,throughput,direct,haproxy,haproxy-2"


@dataclass
class Result:
    config: str
    endpoint: str
    generator: str
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    errors: int


# --- the server processes --------------------------------------------------------------------
def run_server(kind: str, port: int, database_url: str, replicas: int) -> None:
    """Child process: serve until SIGTERM; print READY when answering."""
    from thingsray.config import Settings

    settings = Settings(host="127.0.0.1", http_port=port, database_url=database_url, demo=True,
                        serve_replicas=replicas, data_dir=tempfile.gettempdir())
    if kind == "uvicorn":
        import uvicorn

        from thingsray.serve_app.app import create_app

        print("READY", flush=True)  # uvicorn answers within a second; the parent polls anyway
        uvicorn.run(create_app(settings, database_url), host="127.0.0.1", port=port, log_level="warning",
                    access_log=False)
        return
    from thingsray.platform import Platform, use_loopback_ray

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    use_loopback_ray()
    platform = Platform(settings, progress=lambda m: print(m, file=sys.stderr, flush=True))
    platform.start()
    try:
        print("READY", flush=True)
        stop.wait()
    finally:
        platform.stop()


class Server:
    def __init__(self, config: Config, port: int, database_url: str) -> None:
        self.config = config
        self.port = port
        env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_SERVE_", "THINGSRAY_"))}
        env.update(config.env)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
        self.log = open(LOGS / f"{config.name}.log", "w")
        self.popen = subprocess.Popen(
            [sys.executable, __file__, "--server", config.server, "--port", str(port), "--database-url",
             database_url, "--replicas", str(config.replicas)],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=self.log, text=True, start_new_session=True)
        self.seen: dict[int, psutil.Process] = {}

    def wait_ready(self, timeout_s: float = 240.0) -> None:
        deadline = time.monotonic() + timeout_s
        assert self.popen.stdout is not None
        if self.popen.stdout.readline().strip() != "READY":
            raise RuntimeError(f"{self.config.name} did not start; see {self.log.name}")
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/api/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        raise TimeoutError(f"{self.config.name} did not answer within {timeout_s:.0f} s")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.popen.pid)
        found = [root, *root.children(recursive=True)]
        self.seen.update((p.pid, p) for p in found)
        return found

    def listeners(self) -> list[tuple[str, str, int]]:
        sockets = set()
        for process in self.processes():
            try:
                for conn in process.net_connections(kind="inet"):
                    if conn.status == psutil.CONN_LISTEN or (conn.type == socket.SOCK_DGRAM and not conn.raddr):
                        sockets.add((process.name(), conn.laddr.ip, conn.laddr.port))
            except psutil.Error:
                pass
        return sorted(sockets)

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.processes()
            self.popen.send_signal(signal.SIGTERM)
            try:
                self.popen.wait(timeout=120)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(timeout=30)
        for process in self.seen.values():  # Ray workers live in their own sessions
            try:
                if process.is_running() and process.status() != psutil.STATUS_ZOMBIE:
                    process.kill()
            except psutil.Error:
                pass
        self.log.close()


def is_loopback(ip: str) -> bool:
    address = ipaddress.ip_address(ip.split("%", 1)[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


# --- the load ----------------------------------------------------------------------------------
def measure(url: str, headers: dict[str, str], connections: int, duration: int) -> Result:
    """wrk when installed, else an httpx pool (thingsray.benchmarks.http_load, shared with ``thingsray bench``)."""
    figures, tool = http_load.measure(url, headers, connections, duration, warmup=2)
    return Result("", "", tool, figures["req_per_s"], figures["p50_ms"], figures["p99_ms"], figures["errors"])


# --- the run -----------------------------------------------------------------------------------
async def fresh_database(server: str) -> tuple[str, str]:
    """A new database with the schema and demo data; returns (url, name)."""
    from thingsray.demo import load_demo
    from thingsray.install import ensure_system_admin
    from thingsray.storage import connect, ensure_ts_partitions, migrate
    from thingsray.storage.entities import now_ms

    name = f"thingsray_bench_{uuid.uuid4().hex[:10]}"
    parts = urlsplit(server)
    admin = await asyncpg.connect(urlunsplit(parts._replace(path="/postgres")))
    try:
        await admin.execute(f"CREATE DATABASE {name}")
    finally:
        await admin.close()
    url = urlunsplit(parts._replace(path=f"/{name}"))
    db = await connect(url, min_size=1, max_size=1)  # with the JSON codecs the install code relies on
    try:
        async with db.pool.acquire() as conn:
            await migrate(conn)
            await ensure_ts_partitions(conn, now_ms())
            await ensure_system_admin(conn)
            await load_demo(conn)
    finally:
        await db.close()
    return url, name


async def drop_database(server: str, name: str) -> None:
    admin = await asyncpg.connect(urlunsplit(urlsplit(server)._replace(path="/postgres")))
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await admin.close()


def free_port() -> int:
    """A free port outside the ranges Ray binds in (see ``pick_free_port``)."""
    from thingsray.platform import pick_free_port

    return pick_free_port()


def run_config(config: Config, database_url: str, connections: int, duration: int) -> tuple[list[Result], list]:
    server = Server(config, free_port(), database_url)
    try:
        server.wait_ready()
        listeners = server.listeners()
        token = httpx.post(f"{server.url}/api/auth/login",
                           json={"username": TENANT[0], "password": TENANT[1]}).json()["token"]
        auth = {"X-Authorization": f"Bearer {token}"}
        results = []
        for endpoint, headers in (("/api/auth/user", auth), ("/api/health", {})):
            assert httpx.get(server.url + endpoint, headers=headers).status_code == 200
            result = measure(server.url + endpoint, headers, connections, duration)
            result.config, result.endpoint = config.name, endpoint
            results.append(result)
            print(f"  {config.name:<20} {endpoint:<15} {result.requests_per_s:8.0f} req/s "
                  f"p50 {result.p50_ms:6.1f} ms  p99 {result.p99_ms:6.1f} ms  errors {result.errors}", flush=True)
        return results, listeners
    finally:
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=int, default=10, help="seconds of load per endpoint")
    parser.add_argument("--connections", type=int, default=64, help="concurrent keep-alive connections")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help=f"of: {', '.join(CONFIGS)}")
    parser.add_argument("--database-server", default="postgresql://postgres@127.0.0.1:5432/test")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--server", help=argparse.SUPPRESS)  # child process mode
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--replicas", type=int, default=1, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.server:
        run_server(args.server, args.port, args.database_url, args.replicas)
        return 0
    configs = [CONFIGS[name] for name in args.configs.split(",")]
    LOGS.mkdir(exist_ok=True)
    generator = "wrk" if shutil.which("wrk") else "httpx.AsyncClient (install wrk for higher ceilings)"
    print(f"load: {generator}, {args.connections} connections, {args.duration} s per endpoint, "
          f"{os.cpu_count()} CPUs", flush=True)
    database_url, name = asyncio.run(fresh_database(args.database_server))
    results: list[Result] = []
    exposure: dict[str, list] = {}
    try:
        for config in configs:
            try:
                measured, listeners = run_config(config, database_url, args.connections, args.duration)
            except Exception as exc:  # one broken mode must not hide the others' figures
                print(f"  {config.name:<20} failed: {exc}", flush=True)
                continue
            results += measured
            exposure[config.name] = listeners
    finally:
        asyncio.run(drop_database(args.database_server, name))
    print_table(results, exposure)
    if args.json:
        Path(args.json).write_text(json.dumps({"results": [r.__dict__ for r in results],
                                               "listeners": exposure}, indent=2))
    return 0


def print_table(results: list[Result], exposure: dict[str, list]) -> None:
    baseline = {r.endpoint: r.requests_per_s for r in results if r.config == "uvicorn"}
    print("\n| configuration | endpoint | req/s | p50 ms | p99 ms | errors | vs uvicorn |")
    print("|---|---|---|---|---|---|---|")
    for r in results:
        ratio = f"{r.requests_per_s / baseline[r.endpoint]:.2f}" if baseline.get(r.endpoint) else "-"
        print(f"| {r.config} | {r.endpoint} | {r.requests_per_s:,.0f} | {r.p50_ms:.1f} | {r.p99_ms:.1f} | "
              f"{r.errors} | {ratio} |")
    print("\nlisteners (process ip:port); beyond loopback marked !")
    for config, listeners in exposure.items():
        exposed = [f"! {name} {ip}:{port}" for name, ip, port in listeners if not is_loopback(ip)]
        print(f"  {config}: {len(listeners)} listening, {len(exposed)} beyond loopback")
        for line in exposed:
            print(f"    {line}")


if __name__ == "__main__":
    sys.exit(main())
