"""The scenarios of ``thingsray bench``; each returns its figures as a flat dict.

A scenario gets a ``Target`` (where the platform answers and, when the bench started it, its
processes) and a ``Plan`` (the sizes asked for); every loop is bounded in count and time.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import httpx
import psutil

from thingsray.benchmarks import fleet
from thingsray.benchmarks.ingest import Consumer, find_mosquitto, mosquitto, rest_tokens, stored_counts
from thingsray.benchmarks.load import LoadResult, LoadSpec, raise_fd_limit, run_load

TENANT = ("tenant@thingsboard.org", "tenant")
GIB = 1 << 30
ACTOR_BYTES_ESTIMATE = 4096
"""What the actors scenario reserves per actor (shards and database) when it checks free memory."""
REST_VIA_API_UP_TO = 100
"""Ingest devices up to this many are created through REST, more in bulk SQL."""


@dataclass
class Plan:
    devices: int = 200
    window: int = 10
    duration: float = 10.0
    workers: int = 2
    actors: int = 1_000_000
    actor_window: int = 5_000
    sessions: int = 10_000
    session_hold: float = 5.0
    rest_duration: int = 10
    rest_connections: int = 64
    rest_samples: int = 10
    outside_devices: int = 100
    outside_messages: int = 1_000
    matrix: str = "1x1,2x1,1x2,2x2"
    """shards x MQTT transports of the scale scenario's platforms"""
    ws_subscribers: str = "1,100,1000"
    """WebSocket subscriber counts of the ws scenario (each on one device, and on one device each)"""
    ws_rate: float = 20.0
    """messages per second the ws scenario's one device publishes"""
    ws_many_rate: float = 200.0
    """messages per second the ws scenario's N devices publish in all"""


@dataclass
class Target:
    mqtt_port: int
    http_url: str
    database_url: str
    shards: int = 2
    shard_handles: list = field(default_factory=list)
    transport_handles: list = field(default_factory=list)
    settings: Any = None

    @property
    def own(self) -> bool:
        """Whether the bench started the platform (and so can see its processes)."""
        return bool(self.shard_handles)


class Skipped(Exception):
    """The scenario cannot run here; the message says why."""


def _spec(port: int, tokens: list[str], plan: Plan, rate: float | None = None, **extra: Any) -> LoadSpec:
    return LoadSpec("127.0.0.1", port, tuple(tokens), workers=plan.workers, window=plan.window,
                    duration=plan.duration, rate=rate, payload_ts=True, **extra)


def _figures(result: LoadResult) -> dict[str, Any]:
    return {k: v for k, v in result.summary().items() if k != "error_samples"} | {
        "error_samples": result.error_samples[:3]}


# --- ceiling ---------------------------------------------------------------------------------
def ceiling(plan: Plan, half_rate: float | None = None) -> dict[str, Any]:
    """Mosquitto with one '#' consumer: max rate, and (given) the latency at ``half_rate``."""
    if find_mosquitto() is None:
        raise Skipped("no mosquitto binary (apt-get install mosquitto)")
    tokens = [f"ceiling-token-{i}" for i in range(plan.devices)]
    with mosquitto() as port, Consumer(port) as consumer:
        result = run_load(_spec(port, tokens, plan))
        received = consumer.settle(result.acked)
        figures = _figures(result) | {"consumer_received": received}
        if half_rate:
            half = run_load(_spec(port, tokens, plan, rate=half_rate))
            figures |= {"half_rate": half_rate, "half_p50_ms": half.summary()["p50_ms"],
                        "half_p99_ms": half.summary()["p99_ms"]}
    return figures


# --- ingest and latency ----------------------------------------------------------------------
def _tokens(target: Target, count: int, via_rest: bool) -> list[str]:
    """Devices bench-<i> with token bench-token-<i>."""
    if via_rest:
        return asyncio.run(rest_tokens(target.http_url, *TENANT, count))
    return asyncio.run(fleet.bulk_devices(target.database_url, "bench", count))


def _checked_run(target: Target, spec: LoadSpec) -> tuple[LoadResult, dict[str, Any]]:
    started_ms = time.time_ns() // 1_000_000
    result = run_load(spec)
    acked = {t: n for t, n in result.acked_by_token.items() if n}
    stored = asyncio.run(stored_counts(target.database_url, acked, started_ms))
    return result, {"db_" + k: v for k, v in stored.items()} | {"started_ms": started_ms}


def _rest_readable(target: Target, acked: dict[str, int], since_ms: int, samples: int) -> dict[str, Any]:
    """Read the pulseCounter series of ``samples`` devices over REST: every acknowledged value must be there."""
    chosen = sorted((t for t, n in acked.items() if n), key=lambda t: -acked[t])[:samples]
    ids = asyncio.run(fleet.device_ids(target.database_url, chosen))
    checked, complete, missing = 0, 0, 0
    with httpx.Client(base_url=target.http_url, timeout=30) as client:
        token = client.post("/api/auth/login", json=dict(zip(("username", "password"), TENANT, strict=True)))
        token.raise_for_status()
        client.headers["X-Authorization"] = f"Bearer {token.json()['token']}"
        for t in chosen:
            answer = client.get(f"/api/plugins/telemetry/DEVICE/{ids[t]}/values/timeseries", params={
                "keys": "pulseCounter", "startTs": since_ms, "endTs": time.time_ns() // 1_000_000 + 3_600_000,
                "limit": acked[t] + 100})
            checked += 1
            values = answer.json().get("pulseCounter", []) if answer.status_code == 200 else []
            seen = {int(float(v["value"])) for v in values}
            lacking = sum(1 for n in range(1, acked[t] + 1) if n not in seen)
            missing += lacking
            complete += lacking == 0
    return {"rest_checked_devices": checked, "rest_complete_devices": complete, "rest_missing": missing}


def ingest(target: Target, plan: Plan) -> dict[str, Any]:
    via_rest = plan.devices <= REST_VIA_API_UP_TO
    tokens = _tokens(target, plan.devices, via_rest)
    result, checked = _checked_run(target, _spec(target.mqtt_port, tokens, plan))
    figures = _figures(result) | checked | {"devices_created_via": "REST" if via_rest else "bulk SQL"}
    figures |= _rest_readable(target, result.acked_by_token, checked["started_ms"], plan.rest_samples)
    return figures


def latency(target: Target, plan: Plan, rate: float) -> dict[str, Any]:
    """Publish-to-PUBACK at ``rate`` (half the ingest maximum), on devices of its own (their rows
    cannot be confused with the ingest run's)."""
    tokens = asyncio.run(fleet.bulk_devices(target.database_url, "latency", plan.devices))
    result, checked = _checked_run(target, _spec(target.mqtt_port, tokens, plan, rate=rate))
    return _figures(result) | checked | {"rate_target": round(rate, 1)}


# --- an outside generator --------------------------------------------------------------------
def outside_load(target: Target, plan: Plan) -> dict[str, Any]:
    """Mosquitto's ``mosquitto_pub`` drives thingsray's devices, then a bench Mosquitto (with one
    '#' consumer) in the same run; every value the generator had acknowledged is then read back
    over REST, device by device."""
    from thingsray.benchmarks import outside

    if outside.find_mosquitto_pub() is None:
        raise Skipped("no mosquitto_pub binary (apt-get install mosquitto-clients)")
    tokens = asyncio.run(fleet.bulk_devices(target.database_url, "outside", plan.outside_devices))
    started_ms = time.time_ns() // 1_000_000
    result = outside.run(target.mqtt_port, tokens, plan.outside_messages, started_ms)
    figures = result.summary()
    acked = {t: plan.outside_messages for t in tokens if t not in result.failed}
    figures |= {"db_" + k: v for k, v in asyncio.run(stored_counts(target.database_url, acked, started_ms)).items()}
    figures |= _rest_readable(target, acked, started_ms, len(acked))
    if find_mosquitto() is not None:
        with mosquitto() as port, Consumer(port) as consumer:
            ceiling = outside.run(port, tokens, plan.outside_messages, started_ms)
            figures |= {"ceiling_" + k: v for k, v in ceiling.summary().items() if k != "generator"}
            figures["ceiling_consumer_received"] = consumer.settle(ceiling.acked)
    return figures


# --- scale: shards x transports ---------------------------------------------------------------
def scale(plan: Plan, database_server: str | None, note: Any) -> dict[str, Any]:
    """Ingest on platforms of several shapes, one after another, each ``thingsray bench --scenarios
    ingest`` in a process (and a Ray) of its own, so shapes never share a warm cache or a core."""
    import json
    import tempfile
    from pathlib import Path

    shapes = [tuple(int(n) for n in shape.split("x")) for shape in plan.matrix.split(",") if shape.strip()]
    figures: dict[str, Any] = {"shapes": plan.matrix}
    for shards, transports in shapes:
        label = f"{shards}x{transports}"
        note(f"scale: {shards} shard(s), {transports} MQTT transport(s)")
        with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
            out = Path(tmp) / "summary.json"
            command = [sys.executable, "-m", "thingsray", "bench", "--scenarios", "ingest", "--shards", str(shards),
                       "--mqtt-transports", str(transports), "--devices", str(plan.devices), "--window",
                       str(plan.window), "--duration", str(plan.duration), "--workers", str(plan.workers),
                       "--json", str(out)]
            if database_server:
                command += ["--database-url", database_server]
            done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
            if done.returncode != 0 or not out.exists():
                figures[label] = {"failed": done.stderr.decode(errors="replace")[-300:]}
                continue
            ingest_figures = json.loads(out.read_text())["scenarios"].get("ingest", {})
            figures[label] = {k: ingest_figures.get(k) for k in ("msg_per_s", "p50_ms", "p99_ms", "db_lost")}
    return figures


# --- actors ----------------------------------------------------------------------------------
def scaled_actor_count(asked: int, note: Any) -> int:
    available = psutil.virtual_memory().available
    room = int(available * 0.8) - GIB
    fits = max(0, room // ACTOR_BYTES_ESTIMATE)
    if asked > fits:
        note(f"actors: {asked:,} asked but {available / GIB:.1f} GiB available; running {fits:,}")
        return fits
    return asked


def actors(target: Target, plan: Plan, note: Any) -> dict[str, Any]:
    if not target.own:
        raise Skipped("needs the bench's own platform (its shard processes)")
    import ray

    count = scaled_actor_count(plan.actors, note)
    if count < 1:
        raise Skipped("not enough free memory")
    started = time.perf_counter()
    asyncio.run(fleet.bulk_devices(target.database_url, "actor", count))
    created_s = time.perf_counter() - started
    note(f"actors: {count:,} devices created in {created_s:.1f} s")
    pids = list(ray.get([h.pid.remote() for h in target.shard_handles], timeout=30))
    before = fleet.rss(pids)
    started = time.perf_counter()
    failures = asyncio.run(_activate(target, count, plan.actor_window, note))
    activate_s = time.perf_counter() - started
    time.sleep(1.0)  # let the shards settle what the last replies left
    grown = fleet.rss(pids) - before
    return {"actors": count, "asked": plan.actors, "failures": failures, "lost": failures,
            "devices_create_s": round(created_s, 2), "activate_s": round(activate_s, 2),
            "activations_per_s": round(count / activate_s, 1) if activate_s else 0.0,
            "rss_before_mib": round(before / 2**20, 1), "rss_growth_mib": round(grown / 2**20, 1),
            "bytes_per_actor": round(grown / count, 1), "budget_mib": round(2048 * count / 1_000_000, 1)}


async def _activate(target: Target, count: int, window: int, note: Any) -> int:
    """One PostTelemetry to each bulk-created actor device, through a Router as a transport sends it."""
    import asyncpg

    from thingsray.actors.env import device_address
    from thingsray.actors.messages import PostTelemetry
    from thingsray.platform import partition_table
    from thingsray.runtime.cluster import connect_router
    from thingsray.transports.payloads import TelemetryGroup

    router = connect_router(target.shards, partition_table(target.settings))
    conn = await asyncpg.connect(target.database_url)
    failures, done, last_note = 0, 0, time.monotonic()
    try:
        async with conn.transaction():
            cursor = await conn.cursor("SELECT id FROM device WHERE name LIKE 'actor-%'")
            while done < count:
                rows = await cursor.fetch(window)
                if not rows:
                    break
                now = time.time_ns() // 1_000_000
                asks = [router.ask(device_address(r["id"]), PostTelemetry(
                    uuid.uuid4(), now, (TelemetryGroup(None, {"pulseCounter": 1}),))) for r in rows]
                async with asyncio.timeout(300):
                    answers = await asyncio.gather(*asks, return_exceptions=True)
                failures += sum(isinstance(a, BaseException) for a in answers)
                done += len(rows)
                if time.monotonic() - last_note > 10:
                    note(f"actors: {done:,} of {count:,} active")
                    last_note = time.monotonic()
    finally:
        await conn.close()
        await router.close()
    return failures + (count - done)


# --- sessions --------------------------------------------------------------------------------
def sessions(target: Target, plan: Plan, note: Any) -> dict[str, Any]:
    if not target.own:
        raise Skipped("needs the bench's own platform (its transport processes)")
    from thingsray.benchmarks.load import FD_HEADROOM, LoadRefused
    count = plan.sessions
    try:
        raise_fd_limit(count)
    except LoadRefused as exc:
        import resource

        count = max(1, resource.getrlimit(resource.RLIMIT_NOFILE)[1] - 2 * FD_HEADROOM)
        note(f"sessions: {exc}; running {count:,}")
    tokens = asyncio.run(fleet.bulk_devices(target.database_url, "session", count))
    pids = fleet.actor_pids(target.transport_handles, "MqttTransportActor")
    before = fleet.rss(pids)
    peak = [before]
    spec = LoadSpec("127.0.0.1", target.mqtt_port, tuple(tokens), workers=max(plan.workers, count // 2500 + 1),
                    window=1, duration=plan.session_hold, payload_ts=True, max_messages=1, connect_timeout=60)
    box: dict[str, Any] = {}

    def run() -> None:
        try:
            box["result"] = run_load(spec)
        except BaseException as exc:
            box["error"] = exc

    import threading

    runner = threading.Thread(target=run, name="sessions-load", daemon=True)
    started = time.perf_counter()
    runner.start()
    while runner.is_alive():  # the peak is while every session is connected
        peak[0] = max(peak[0], fleet.rss(pids))
        runner.join(0.2)
    if "error" in box:
        raise box["error"]
    result: LoadResult = box["result"]
    grown = peak[0] - before
    return {"sessions": count, "asked": plan.sessions, "connected": result.connected,
            "connect_failures": result.connect_failures, "acked": result.acked, "unacked": result.unacked,
            "lost": count - result.acked, "errors": result.errors, "run_s": round(time.perf_counter() - started, 1),
            "transport_processes": len(pids), "rss_before_mib": round(before / 2**20, 1),
            "rss_growth_mib": round(grown / 2**20, 1), "bytes_per_session": round(grown / max(1, result.connected), 1),
            "budget_mib": round(1024 * count / 10_000, 1), "error_samples": result.error_samples[:3]}


# --- rest ------------------------------------------------------------------------------------
def rest(target: Target, plan: Plan) -> dict[str, Any]:
    """Latest telemetry through Serve's ingress versus the same app on plain uvicorn."""
    device = asyncio.run(fleet.bulk_devices(target.database_url, "rest", 1))[0]
    device_id = asyncio.run(fleet.device_ids(target.database_url, [device]))[device]
    path = f"/api/plugins/telemetry/DEVICE/{device_id}/values/timeseries?keys=pulseCounter,batteryLevel"
    port = fleet.free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "THINGSRAY_"))}
    server = subprocess.Popen([sys.executable, "-m", "thingsray.benchmarks.uvicorn_app", str(port),
                               target.database_url], env=env, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        uvicorn_url = f"http://127.0.0.1:{port}"
        _wait_answering(uvicorn_url, server)
        figures: dict[str, Any] = {}
        for name, url in (("serve", target.http_url), ("uvicorn", uvicorn_url)):
            headers = {"X-Authorization": f"Bearer {_login(url)}"}
            first = httpx.get(url + path, headers=headers, timeout=30)
            if first.status_code != 200:
                raise RuntimeError(f"{name}: GET {path} answered {first.status_code} {first.text[:200]}")
            measured = _load(url + path, headers, plan.rest_connections, plan.rest_duration)
            figures |= {f"{name}_{k}": v for k, v in measured.items()}
        figures["generator"] = "wrk" if shutil.which("wrk") else "httpx"
        return figures
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=10)


def _login(url: str) -> str:
    answer = httpx.post(f"{url}/api/auth/login", json={"username": TENANT[0], "password": TENANT[1]}, timeout=30)
    answer.raise_for_status()
    return str(answer.json()["token"])


def _wait_answering(url: str, server: subprocess.Popen[bytes], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"uvicorn exited: {(server.stderr.read() if server.stderr else b'').decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/api/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise TimeoutError(f"uvicorn did not answer within {timeout:.0f} s")


def _load(url: str, headers: dict[str, str], connections: int, duration: int) -> dict[str, Any]:
    from thingsray.benchmarks import http_load

    return http_load.measure(url, headers, connections, duration)[0]


# --- ws --------------------------------------------------------------------------------------
def ws(target: Target, plan: Plan, note: Any) -> dict[str, Any]:
    """Publish-to-WebSocket latency, updates/s and completeness for N subscribers of one device and
    of N devices (thingsray.benchmarks.ws_fanout)."""
    from thingsray.benchmarks import ws_fanout

    counts = [int(n) for n in plan.ws_subscribers.split(",") if n.strip()]
    raise_fd_limit(max(counts) * 2 + 64)
    cases = [ws_fanout.Case(shape, n, plan.ws_rate if shape == "one" else plan.ws_many_rate, plan.duration,
                            plan.workers)
             for shape in ("one", "many") for n in counts]
    found = ws_fanout.run_all(target.http_url, target.mqtt_port, target.database_url, cases, note)
    lost = sum(r.get("missing", 0) + r.get("closed_sockets", 0) for r in found if "failed" not in r)
    return {"cases": found, "lost": lost, "failed_cases": sum("failed" in r for r in found)}
