"""Ingest over the CoAP and HTTP device APIs (``POST /api/v1/{token}/telemetry``), each beside a
baseline server driven by the same client code in the same run.

For each protocol, N devices are created over REST; G spawned worker processes share them, and
every device keeps ``window`` requests in flight for ``duration`` seconds (a lane per request: it
sends, waits for the answer, sends the next). Each payload is ThingsBoard's smart-meter telemetry
``{"ts":ms,"values":{"pulseCounter":n,..}}`` with ``n`` = 1, 2, 3 .. per device and a per-device
strictly increasing ``ts`` (two values of a device never share a row).

- CoAP: aiocoap clients, confirmable POSTs; success is 2.01 Created, which thingsray sends once the
  value is durably stored. aiocoap keeps NSTART = 1 (RFC 7252: one outstanding confirmable request
  per client endpoint and server), so each lane is an aiocoap context (a UDP endpoint) of its own,
  as W devices would be. Baseline: an aiocoap server on 127.0.0.1 answering 2.01 at once.
- HTTP: ``httpx.AsyncClient``, HTTP/1.1 keep-alive, a client of one connection per lane; success
  is 200. Baseline: uvicorn serving a FastAPI route of the same path that reads the body and
  answers 200 at once.

After a platform run, every acknowledged value is looked up in PostgreSQL (``lost`` = acknowledged
but not stored, must be 0), and a sample of devices' latest ``pulseCounter`` is read over REST
(it must be at least the highest value acknowledged). Latencies are request-to-answer, in a
log-linear histogram per worker (``load.Histogram``). The figures include the workers' CPU share,
the load average and (CoAP) the machine's count of UDP datagrams dropped for a full receive buffer
(a dropped request or answer is retransmitted after 2 s or more), so that a saturated generator,
a busy machine or a full socket buffer is seen rather than mistaken for the platform.

    /work/venv/bin/python bench/device_api_ingest.py [--protocol coap,http] [--devices 100] [--window 4]
        [--duration 15] [--workers 2] [--database-url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import socket
import sys
import threading
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import Request, Response

from thingsray.benchmarks.load import Histogram, raise_fd_limit

PROTOCOLS = ("coap", "http")
TENANT = ("tenant@thingsboard.org", "tenant")
KEY = "pulseCounter"
REQUEST_TIMEOUT_S = 30.0
"""An answer later than this counts as an error (CoAP's own retransmissions fit well within it)."""
START_TIMEOUT_S = 120.0
"""Worker processes' and baseline servers' time to get ready."""
CREATE_CONCURRENCY = 8


@dataclass(frozen=True, slots=True)
class Case:
    protocol: str
    devices: int = 100
    window: int = 4
    """Requests in flight per device."""
    duration: float = 15.0
    """Seconds of sending (after one warm-up request per lane)."""
    workers: int = 2
    samples: int = 10
    """Devices whose latest value is read back over REST."""


@dataclass(frozen=True, slots=True)
class Endpoints:
    """Where the platform answers: its REST base URL, its CoAP port (UDP, 127.0.0.1) and its database."""

    http_url: str
    coap_port: int
    database_url: str


@dataclass(frozen=True, slots=True)
class _Job:
    """What one worker process drives: ``base`` is ``coap://127.0.0.1:PORT`` or ``http://127.0.0.1:PORT``."""

    protocol: str
    base: str
    tokens: tuple[str, ...]
    window: int
    duration: float


# --- the client (in spawned worker processes) -------------------------------------------------
class _Device:
    __slots__ = ("acked", "counter", "last_ms", "path", "token")

    def __init__(self, token: str) -> None:
        self.token = token
        self.path = f"/api/v1/{token}/telemetry"
        self.counter = 0
        self.last_ms = 0
        self.acked: list[int] = []

    def next(self) -> tuple[int, bytes]:
        self.counter += 1
        n = self.counter
        self.last_ms = max(time.time_ns() // 1_000_000, self.last_ms + 1)
        return n, b'{"ts":%d,"values":{"%s":%d,"leakage":false,"batteryLevel":%d}}' % (
            self.last_ms, KEY.encode(), n, 100 - n % 100)


class _Coap:
    """A confirmable POST per call; one aiocoap context per lane (aiocoap keeps NSTART = 1 per context)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.contexts: list[Any] = []

    async def lane(self) -> Any:
        import aiocoap
        from aiocoap.numbers.codes import Code
        from aiocoap.numbers.contentformat import ContentFormat

        context = await aiocoap.Context.create_client_context(transports=["udp6"])
        self.contexts.append(context)
        base = self.base

        async def post(device: _Device, body: bytes) -> tuple[bool, str]:
            request = aiocoap.Message(code=Code.POST, uri=base + device.path, payload=body,
                                      content_format=ContentFormat.JSON)
            answer = await context.request(request).response
            return answer.code == Code.CREATED, str(answer.code)

        return post

    async def close(self) -> None:
        await asyncio.gather(*(c.shutdown() for c in self.contexts), return_exceptions=True)


class _Http:
    """POST over HTTP/1.1 keep-alive: an ``httpx.AsyncClient`` of one connection per lane (httpcore's pool
    scans every connection per request, which with hundreds in one pool costs more than the request)."""

    def __init__(self, base: str) -> None:
        self.base = base
        self.clients: list[httpx.AsyncClient] = []

    async def lane(self) -> Any:
        client = httpx.AsyncClient(base_url=self.base, timeout=REQUEST_TIMEOUT_S, verify=False,  # plain HTTP
                                   limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                                   headers={"content-type": "application/json"})
        self.clients.append(client)

        async def post(device: _Device, body: bytes) -> tuple[bool, str]:
            answer = await client.post(device.path, content=body)
            return answer.status_code == 200, str(answer.status_code)

        return post

    async def close(self) -> None:
        await asyncio.gather(*(c.aclose() for c in self.clients), return_exceptions=True)


class _Tally:
    """One worker's counts: answers by code, errors (with samples), latencies of the measured window."""

    def __init__(self) -> None:
        self.histogram = Histogram()
        self.answers: Counter[str] = Counter()
        self.sent = self.acked_in_window = self.errors = 0
        self.error_samples: list[str] = []
        self.deadline_ns = 0
        self.measuring = False

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 10:
            self.error_samples.append(text)

    async def send(self, post: Any, device: _Device) -> None:
        n, body = device.next()
        self.sent += 1
        started = time.perf_counter_ns()
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT_S):
                ok, code = await post(device, body)
        except Exception as exc:  # counted and sampled: the run reports it and fails
            self.error(f"{device.token} #{n}: {type(exc).__name__}: {exc}")
            await asyncio.sleep(0.01)
            return
        now = time.perf_counter_ns()
        self.answers[code] += 1
        if not ok:
            self.error(f"{device.token} #{n}: answered {code}")
            return
        device.acked.append(n)
        if self.measuring:
            self.histogram.record((now - started) // 1000)
            if now <= self.deadline_ns:
                self.acked_in_window += 1


async def _drive(job: _Job, barrier: Any) -> dict[str, Any]:
    devices = [_Device(t) for t in job.tokens]
    lanes = len(devices) * job.window
    client: _Coap | _Http = _Coap(job.base) if job.protocol == "coap" else _Http(job.base)
    tally = _Tally()
    try:
        posts = [await client.lane() for _ in range(lanes)]
        plan = [(posts[i * job.window + k], d) for i, d in enumerate(devices) for k in range(job.window)]
        await asyncio.gather(*(tally.send(post, device) for post, device in plan))  # warm-up: not measured
        warmup_errors = tally.errors
        await asyncio.to_thread(barrier.wait, START_TIMEOUT_S)
        cpu0, wall0 = os.times(), time.perf_counter()
        tally.deadline_ns = time.perf_counter_ns() + int(job.duration * 1e9)
        tally.measuring = True

        async def lane(post: Any, device: _Device) -> None:
            while time.perf_counter_ns() < tally.deadline_ns:
                await tally.send(post, device)

        await asyncio.gather(*(lane(post, device) for post, device in plan))
        cpu1, wall = os.times(), time.perf_counter() - wall0
    finally:
        await client.close()
    return {"sent": tally.sent, "acked": sum(len(d.acked) for d in devices), "acked_in_window": tally.acked_in_window,
            "answers": dict(tally.answers), "errors": tally.errors, "warmup_errors": warmup_errors,
            "error_samples": tally.error_samples, "histogram": tally.histogram.counts,
            "max_us": tally.histogram.max_us, "total": tally.histogram.total,
            "acked_by_token": {d.token: d.acked for d in devices},
            "cpu_share": round((cpu1.user - cpu0.user + cpu1.system - cpu0.system) / wall, 3) if wall else None}


def _worker_main(job: _Job, barrier: Any, results: Any) -> None:
    """Child process entry: drive the job's devices, put the result (or the error) on ``results``."""
    try:
        raise_fd_limit(len(job.tokens) * job.window)
        try:
            import uvloop
        except ImportError:
            pass
        else:
            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        results.put(asyncio.run(_drive(job, barrier)))
    except BaseException as exc:
        barrier.abort()
        results.put({"failed": f"{type(exc).__name__}: {exc}"})


def udp_receive_drops() -> int | None:
    """The machine's count of UDP datagrams dropped for a full socket receive buffer (Linux), else None."""
    try:
        lines = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")]
        return int(dict(zip(lines[0], lines[1], strict=True))["RcvbufErrors"])
    except (OSError, IndexError, KeyError, ValueError):
        return None


def drive(protocol: str, base: str, tokens: list[str], case: Case) -> dict[str, Any]:
    """Run the load across ``case.workers`` spawned processes; the merged figures, with per-token acked values."""
    drops_before = udp_receive_drops()
    workers = max(1, min(case.workers, len(tokens)))
    ctx = mp.get_context("spawn")
    barrier, results = ctx.Barrier(workers + 1), ctx.Queue()
    procs = [ctx.Process(target=_worker_main, daemon=True, name=f"{protocol}-load-{i}",
                         args=(_Job(protocol, base, tuple(tokens[i::workers]), case.window, case.duration),
                               barrier, results)) for i in range(workers)]
    for proc in procs:
        proc.start()
    try:
        try:
            barrier.wait(START_TIMEOUT_S + 30)
        except threading.BrokenBarrierError:
            pass  # a worker failed: its error is on the queue
        outcomes = [results.get(timeout=START_TIMEOUT_S + case.duration + REQUEST_TIMEOUT_S + 60) for _ in procs]
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
                proc.join(timeout=5)
    failed = [o["failed"] for o in outcomes if "failed" in o]
    if failed:
        raise RuntimeError(f"{protocol} load worker failed: {failed[0]}")
    histogram, answers = Histogram(), Counter[str]()
    for o in outcomes:
        histogram.merge(Histogram(o["histogram"], o["max_us"], o["total"]))
        answers.update(o["answers"])
    in_window = sum(o["acked_in_window"] for o in outcomes)
    drops_after = udp_receive_drops()
    return {"msg_per_s": round(in_window / case.duration, 1), "p50_ms": round(histogram.percentile(50) / 1000, 2),
            "p99_ms": round(histogram.percentile(99) / 1000, 2), "max_ms": round(histogram.max_us / 1000, 2),
            "sent": sum(o["sent"] for o in outcomes), "acked": sum(o["acked"] for o in outcomes),
            "answers": dict(answers), "errors": sum(o["errors"] for o in outcomes),
            "warmup_errors": sum(o["warmup_errors"] for o in outcomes),
            "error_samples": [s for o in outcomes for s in o["error_samples"]][:5],
            "client_cpu": [o["cpu_share"] for o in outcomes],
            "udp_drops": None if drops_before is None or drops_after is None else drops_after - drops_before,
            "acked_by_token": {t: v for o in outcomes for t, v in o["acked_by_token"].items()}}


# --- the baselines (spawned server processes) -------------------------------------------------
def _serve_coap_baseline(ready: Any, stop: Any) -> None:
    """An aiocoap server (thingsray's CoAP stack) whose one site answers every request 2.01 at once."""
    from aiocoap import Message
    from aiocoap.numbers.codes import Code

    from thingsray.transports.coap.stack import CoapStack

    class Created:
        async def render_to_pipe(self, pipe: Any) -> None:
            pipe.add_response(Message(code=Code.CREATED), is_last=True)

    async def serve() -> None:
        stack = CoapStack(Created(), "127.0.0.1", 0)
        ready.put(await stack.start())
        await asyncio.to_thread(stop.wait)
        await stack.stop()

    asyncio.run(serve())


async def _baseline_telemetry(token: str, request: Request) -> Response:
    await request.body()
    return Response(status_code=200)


def _serve_http_baseline(port: int) -> None:
    """uvicorn serving ``POST /api/v1/{token}/telemetry`` (FastAPI, as thingsray's app): read the body, answer 200."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()
    app.add_api_route("/api/v1/{token}/telemetry", _baseline_telemetry, methods=["POST"])
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)


class baseline_server:
    """``with baseline_server("coap") as base:`` the base URL of a baseline server, stopped on exit."""

    def __init__(self, protocol: str) -> None:
        self.protocol = protocol
        self.ctx = mp.get_context("spawn")
        self.proc: Any = None
        self.stop = self.ctx.Event()

    def __enter__(self) -> str:
        if self.protocol == "coap":
            ready = self.ctx.Queue()
            self.proc = self.ctx.Process(target=_serve_coap_baseline, args=(ready, self.stop), daemon=True,
                                         name="coap-baseline")
            self.proc.start()
            try:
                return f"coap://127.0.0.1:{ready.get(timeout=START_TIMEOUT_S)}"
            except BaseException:
                self.__exit__()
                raise
        from thingsray.benchmarks.fleet import free_port

        port = free_port()
        self.proc = self.ctx.Process(target=_serve_http_baseline, args=(port,), daemon=True, name="http-baseline")
        self.proc.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return f"http://127.0.0.1:{port}"
            except OSError:
                if not self.proc.is_alive() or time.monotonic() > deadline:
                    self.__exit__()
                    raise RuntimeError(f"the HTTP baseline did not listen on {port}") from None
                time.sleep(0.1)

    def __exit__(self, *_: object) -> None:
        if self.proc is None:
            return
        self.stop.set()
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(timeout=5)
        self.proc = None


# --- where the CPU went -------------------------------------------------------------------------
def _cpu_seconds() -> dict[int, tuple[str, float]]:
    """CPU seconds so far of this process's descendants (Ray's by their title) and of every PostgreSQL process."""
    import psutil

    found: dict[int, tuple[str, float]] = {}
    me = psutil.Process()
    for process in [*me.children(recursive=True), *(p for p in psutil.process_iter(["name"])
                                                    if p.info["name"] == "postgres")]:
        try:
            with process.oneshot():
                title = (process.cmdline() or [process.name()])[0]
                times = process.cpu_times()
        except psutil.Error:
            continue
        if title.startswith("ray::"):
            label = title.split(".")[0]  # ray::ShardActor.poll -> ray::ShardActor
        elif process.name() == "postgres":
            label = "postgres"
        elif "multiprocessing" in " ".join(process.cmdline()[:3]):
            label = "bench clients"
        else:
            label = process.name()
        found[process.pid] = (label, times.user + times.system)
    return found


def cpu_shares(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], wall: float,
               top: int = 8) -> dict[str, float]:
    """Cores used per process kind between two ``_cpu_seconds`` snapshots, the busiest first (for the platform
    run: its spawn, warm-up and last answers included)."""
    used: Counter[str] = Counter()
    for pid, (label, seconds) in after.items():
        used[label] += seconds - before.get(pid, (label, 0.0))[1]
    return {label: round(seconds / wall, 2) for label, seconds in used.most_common(top) if seconds > 0}


# --- the platform's devices and what it stored ------------------------------------------------
async def create_devices(http_url: str, prefix: str, count: int) -> dict[str, str]:
    """Devices ``<prefix>-<i>`` (token ``<prefix>-token-<i>``) of the demo tenant, made over REST; token -> id."""
    async with httpx.AsyncClient(base_url=http_url, timeout=30) as client:
        login = await client.post("/api/auth/login", json=dict(zip(("username", "password"), TENANT, strict=True)))
        login.raise_for_status()
        client.headers["X-Authorization"] = f"Bearer {login.json()['token']}"
        gate = asyncio.Semaphore(CREATE_CONCURRENCY)

        async def one(i: int) -> tuple[str, str]:
            token = f"{prefix}-token-{i}"
            async with gate:
                made = await client.post("/api/device", params={"accessToken": token},
                                         json={"name": f"{prefix}-{i}", "type": "default"})
            if made.status_code != 200:
                raise RuntimeError(f"creating device {prefix}-{i}: {made.status_code} {made.text[:200]}")
            return token, str(made.json()["id"]["id"])

        return dict(await asyncio.gather(*(one(i) for i in range(count))))


async def stored(database_url: str, ids: dict[str, str], acked: dict[str, list[int]], since_ms: int) -> dict[str, Any]:
    """How many acknowledged values are in ts_kv (rows since ``since_ms``); ``lost`` = acknowledged, not stored."""
    import asyncpg

    conn = await asyncpg.connect(database_url)
    try:
        key_id = await conn.fetchval("SELECT key_id FROM key_dictionary WHERE key = $1", KEY)
        rows = [] if key_id is None else await conn.fetch(
            "SELECT entity_id, array_agg(coalesce(long_v, dbl_v::bigint)) AS v FROM ts_kv"
            " WHERE entity_id = ANY($1::uuid[]) AND key = $2 AND ts >= $3 GROUP BY entity_id",
            [uuid.UUID(ids[t]) for t in acked], key_id, since_ms)
    finally:
        await conn.close()
    found = {str(r["entity_id"]): set(r["v"]) for r in rows}
    missing = {t: sorted(set(values) - found.get(ids[t], set())) for t, values in acked.items()}
    missing = {t: m for t, m in missing.items() if m}
    total = sum(len(v) for v in acked.values())
    lost = sum(len(m) for m in missing.values())
    return {"db_acked": total, "db_stored": total - lost, "lost": lost, "devices_losing": len(missing),
            "lost_samples": {t: m[:5] for t, m in list(missing.items())[:5]}}


def rest_latest(http_url: str, ids: dict[str, str], acked: dict[str, list[int]], samples: int) -> dict[str, Any]:
    """Read the latest pulseCounter of ``samples`` devices over REST: each must be at least its highest acked value."""
    chosen = sorted((t for t, v in acked.items() if v), key=lambda t: -len(acked[t]))[:samples]
    ok, bad = 0, []
    with httpx.Client(base_url=http_url, timeout=30) as client:
        login = client.post("/api/auth/login", json=dict(zip(("username", "password"), TENANT, strict=True)))
        login.raise_for_status()
        client.headers["X-Authorization"] = f"Bearer {login.json()['token']}"
        for token in chosen:
            answer = client.get(f"/api/plugins/telemetry/DEVICE/{ids[token]}/values/timeseries", params={"keys": KEY})
            values = answer.json().get(KEY, []) if answer.status_code == 200 else []
            latest = int(float(values[0]["value"])) if values else None
            if latest is not None and latest >= max(acked[token]):
                ok += 1
            else:
                bad.append(f"{token}: latest {latest} (HTTP {answer.status_code}), highest acked {max(acked[token])}")
    return {"rest_checked_devices": len(chosen), "rest_latest_ok": ok, "rest_bad_samples": bad[:3]}


# --- one protocol -----------------------------------------------------------------------------
def run_protocol(target: Endpoints, case: Case, note: Any = print) -> dict[str, Any]:
    """The baseline run, then the platform run on ``case.devices`` new devices, then the checks."""
    if case.protocol not in PROTOCOLS:
        raise ValueError(f"protocol {case.protocol!r} is not one of {', '.join(PROTOCOLS)}")
    prefix = f"{case.protocol}-bench-{uuid.uuid4().hex[:6]}"
    ids = asyncio.run(create_devices(target.http_url, prefix, case.devices))
    tokens = list(ids)
    note(f"{case.protocol}: {len(tokens)} devices created over REST; baseline run")
    load_before = os.getloadavg()
    with baseline_server(case.protocol) as base:
        baseline = drive(case.protocol, base, tokens, case)
    note(f"{case.protocol}: baseline {baseline['msg_per_s']:,.0f} msg/s; platform run")
    base = f"coap://127.0.0.1:{target.coap_port}" if case.protocol == "coap" else target.http_url
    since_ms = time.time_ns() // 1_000_000
    cpu_before, started = _cpu_seconds(), time.perf_counter()
    found = drive(case.protocol, base, tokens, case)
    found["cpu_cores"] = cpu_shares(cpu_before, _cpu_seconds(), time.perf_counter() - started)
    load_after = os.getloadavg()
    acked = {t: v for t, v in found.pop("acked_by_token").items() if v}
    checked = asyncio.run(stored(target.database_url, ids, acked, since_ms))
    checked |= rest_latest(target.http_url, ids, acked, case.samples)
    note(f"{case.protocol}: {found['msg_per_s']:,.0f} msg/s, {checked['lost']} lost")
    return {"protocol": case.protocol, **{k: v for k, v in asdict(case).items() if k != "protocol"}, **found,
            **checked, "baseline_msg_per_s": baseline["msg_per_s"], "baseline_p50_ms": baseline["p50_ms"],
            "baseline_p99_ms": baseline["p99_ms"], "baseline_errors": baseline["errors"],
            "baseline_client_cpu": baseline["client_cpu"], "baseline_udp_drops": baseline["udp_drops"],
            "ratio": round(found["msg_per_s"] / baseline["msg_per_s"], 3) if baseline["msg_per_s"] else None,
            "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in load_after]}


# --- the report -------------------------------------------------------------------------------
HEAD = ("protocol", "devices x window", "msg/s", "p50 ms", "p99 ms", "baseline msg/s", "baseline p50/p99 ms",
        "ratio", "acked", "lost", "errors", "REST latest ok", "UDP drops", "client cpu", "load 1m")


def table(results: list[dict[str, Any]]) -> str:
    lines = [list(HEAD)]
    for r in results:
        if "failed" in r:
            lines.append([r["protocol"], "FAILED", r["failed"][:100]])
            continue
        lines.append([r["protocol"], f"{r['devices']} x {r['window']}", f"{r['msg_per_s']:,.0f}", f"{r['p50_ms']:.2f}",
                      f"{r['p99_ms']:.2f}", f"{r['baseline_msg_per_s']:,.0f}",
                      f"{r['baseline_p50_ms']:.2f}/{r['baseline_p99_ms']:.2f}",
                      "-" if r["ratio"] is None else f"{r['ratio']:.3f}", f"{r['db_acked']:,}", str(r["lost"]),
                      str(r["errors"]), f"{r['rest_latest_ok']}/{r['rest_checked_devices']}",
                      "-" if r["protocol"] != "coap" or r["udp_drops"] is None
                      else f"{r['udp_drops']:,} ({r['baseline_udp_drops']:,})",
                      "/".join(f"{c:.0%}" for c in r["client_cpu"] if c is not None),
                      f"{r['loadavg_before'][0]:.1f}->{r['loadavg_after'][0]:.1f}"])
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(len(HEAD))]
    text = ["  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths, strict=False)))
            for line in lines]
    for r in results:
        if r.get("cpu_cores"):
            text.append(f"{r['protocol']} platform run, cores used: "
                        + ", ".join(f"{name} {cores:.2f}" for name, cores in r["cpu_cores"].items()))
    return "\n".join(text)


def failed(result: dict[str, Any]) -> bool:
    """Whether a run lost or refused anything (the command then exits 1)."""
    return "failed" in result or bool(result["lost"] or result["errors"] or result["warmup_errors"]
                                      or result["rest_latest_ok"] != result["rest_checked_devices"])


# --- the command line -------------------------------------------------------------------------
def _own_platform(args: argparse.Namespace, say: Any) -> Any:
    """``thingsray bench``'s platform (fresh database, private Ray, free ports); enters as ``Endpoints``."""
    from thingsray.benchmarks.command import _platform

    class Own(_platform):
        def __enter__(self) -> Endpoints:  # type: ignore[override]
            target = super().__enter__()
            return Endpoints(target.http_url, self.platform.coap_port, target.database_url)

    args.target_mqtt = args.target_rest = None
    args.mqtt_transports = None
    return Own(args, say)


def main(argv: list[str] | None = None) -> int:
    from thingsray.benchmarks.command import Progress

    parser = argparse.ArgumentParser(prog="device_api_ingest", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--protocol", default="coap,http", help="coap, http or both comma-separated (default both)")
    parser.add_argument("--devices", type=int, default=100, help="devices per protocol (default 100)")
    parser.add_argument("--window", type=int, default=4, help="requests in flight per device (default 4)")
    parser.add_argument("--duration", type=float, default=15.0, help="seconds of sending per run (default 15)")
    parser.add_argument("--workers", type=int, default=2, help="client processes (default 2)")
    parser.add_argument("--samples", type=int, default=10, help="devices read back over REST (default 10)")
    parser.add_argument("--shards", type=int, help="shard processes of the platform (default: Settings)")
    parser.add_argument("--database-url", help="a PostgreSQL server where a throwaway database is created and "
                        "dropped (default: the embedded PostgreSQL in a temp dir)")
    parser.add_argument("--json", type=Path, help="also write the JSON summary here")
    args = parser.parse_args(argv)
    protocols = [p.strip() for p in args.protocol.split(",") if p.strip()]
    if not protocols or set(protocols) - set(PROTOCOLS):
        parser.error(f"--protocol takes {', '.join(PROTOCOLS)} (comma-separated)")
    if args.devices < 1 or args.window < 1 or args.workers < 1 or args.duration <= 0:
        parser.error("--devices, --window and --workers must be >= 1, --duration > 0")
    say = Progress()
    results: list[dict[str, Any]] = []
    with _own_platform(args, say) as target:
        for protocol in protocols:
            case = Case(protocol, args.devices, args.window, args.duration, args.workers, args.samples)
            try:
                results.append(run_protocol(target, case, say))
            except Exception as exc:
                say(f"{protocol}: FAILED {type(exc).__name__}: {exc}")
                results.append({"protocol": protocol, "failed": f"{type(exc).__name__}: {exc}"})
    summary = {"command": "device_api_ingest " + " ".join(sys.argv[1:] if argv is None else argv),
               "cpus": os.cpu_count(), "elapsed_s": round(time.monotonic() - say.started, 1), "results": results}
    print(table(results))
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 1 if any(failed(r) for r in results) else 0
