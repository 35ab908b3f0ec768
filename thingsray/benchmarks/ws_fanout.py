"""WebSocket fan-out: how long a value an MQTT device publishes takes to reach N WebSocket
subscribers, how many updates per second they get, and whether every one got every value.

Two shapes per subscriber count N:

- ``one``: N sockets watch one device, which publishes ``rate`` messages per second;
- ``many``: N devices, one socket each; together they publish ``rate`` messages per second.

Subscribers use the ``websockets`` client on ThingsBoard's telemetry plugin endpoint
(``tsSubCmds``), spread over ``procs`` spawned processes, each one event loop. The publisher is a
small asyncio MQTT 3.1.1 client in the main process (QoS 1, PUBACKs counted, never awaited per
message) on a fixed schedule; each payload is ``{"ts":ms,"values":{"sentNs":time_ns}}`` (ts
strictly increasing per device, so no two values of a device share a row) and a subscriber's
latency is its receive time minus ``sentNs`` (one machine, one clock). The report says how far
the publisher lagged behind its schedule and how busy the subscriber processes were, so that a
saturated generator is seen rather than mistaken for the platform.

Only loopback: the platform is the bench's own (``thingsray bench`` does it the same way) or a
running one on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import json
import multiprocessing as mp
import os
import queue
import time
import uuid
from dataclasses import dataclass
from typing import Any

from thingsray.benchmarks import fleet
from thingsray.benchmarks.load import Histogram, raise_fd_limit
from thingsray.transports.mqtt import codec

KEY = "sentNs"
TOPIC = "v1/devices/me/telemetry"
CONNECT_CONCURRENCY = 50
READY_TIMEOUT_S = 180.0


@dataclass(frozen=True)
class Case:
    shape: str  # "one" or "many"
    subscribers: int
    rate: float
    """messages per second published in all"""
    duration: float
    procs: int = 2
    drain: float = 15.0

    @property
    def devices(self) -> int:
        return 1 if self.shape == "one" else self.subscribers

    @property
    def per_device(self) -> int:
        """Messages each device publishes (at least one, which can stretch publishing past ``duration``)."""
        return max(1, round(self.rate * self.duration / self.devices))

    @property
    def publish_s(self) -> float:
        """Seconds the schedule takes."""
        return self.per_device * self.devices / self.rate


# --- the subscribers (spawned processes) ------------------------------------------------------
def _subscriber_main(url: str, device_ids: list[str], expected: int, ready: Any, go: Any, results: Any,
                     deadline_s: float) -> None:
    try:
        results.put(asyncio.run(_subscribe(url, device_ids, expected, ready, go, deadline_s)))
    except BaseException as exc:  # reported to the main process, which fails the case
        results.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


async def _subscribe(url: str, device_ids: list[str], expected: int, ready: Any, go: Any,
                     deadline_s: float) -> dict[str, Any]:
    from websockets.asyncio.client import connect

    raise_fd_limit(len(device_ids) + 64)
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    sockets: list[Any] = []

    async def open_one(device_id: str) -> Any:
        async with gate:
            ws = await connect(url, max_queue=None, open_timeout=60, ping_interval=None)
            await ws.send(json.dumps({"tsSubCmds": [{"cmdId": 1, "entityType": "DEVICE", "entityId": device_id,
                                                     "keys": KEY}]}))
            first = json.loads(await asyncio.wait_for(ws.recv(), 60))
            if first.get("errorCode") != 0:
                raise RuntimeError(f"subscription refused: {first}")
            return ws

    sockets = list(await asyncio.gather(*(open_one(d) for d in device_ids)))
    ready.put(len(sockets))
    await asyncio.to_thread(go.wait)
    started_ns = time.time_ns()
    cpu0 = os.times()
    histogram = Histogram()
    counts = [0] * len(sockets)
    duplicates = disorder = frames = 0
    first_ns: list[int] = []
    last_ns = 0
    closed: list[str] = []

    async def drain(index: int, ws: Any) -> None:
        nonlocal duplicates, disorder, frames, last_ns
        seen: set[int] = set()
        newest = 0
        try:
            while counts[index] < expected:
                frame = await ws.recv()
                now = time.time_ns()
                update = json.loads(frame)
                frames += 1
                for ts, value in update.get("data", {}).get(KEY, ()):
                    if value is None:
                        continue
                    if ts in seen:
                        duplicates += 1
                        continue
                    seen.add(ts)
                    disorder += ts < newest
                    newest = max(newest, ts)
                    counts[index] += 1
                    histogram.record(max(0, (now - int(value)) // 1000))
                    if not first_ns:
                        first_ns.append(now)
                    last_ns = max(last_ns, now)
        except Exception as exc:  # a socket the server closed (a slow consumer): counted, not hidden
            closed.append(f"{type(exc).__name__}: {exc}")

    tasks = [asyncio.create_task(drain(i, ws)) for i, ws in enumerate(sockets)]
    _, pending = await asyncio.wait(tasks, timeout=deadline_s)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    cpu1 = os.times()
    wall = (time.time_ns() - started_ns) / 1e9
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {"sockets": len(sockets), "counts": counts, "frames": frames, "duplicates": duplicates, "disorder": disorder,
            "histogram": histogram.counts, "max_us": histogram.max_us, "total": histogram.total,
            "first_ns": first_ns[0] if first_ns else None, "last_ns": last_ns or None, "closed": closed[:3],
            "closed_count": len(closed), "timed_out": len(pending),
            "cpu_share": round((cpu1.user - cpu0.user + cpu1.system - cpu0.system) / wall, 3) if wall else None}


# --- the publisher ----------------------------------------------------------------------------
class Acks:
    """PUBACKs of all publisher connections; ``done`` is set when ``expected`` arrived."""

    def __init__(self) -> None:
        self.count = 0
        self.expected: int | None = None
        self.done = asyncio.Event()

    def one(self) -> None:
        self.count += 1
        if self.expected is not None and self.count >= self.expected:
            self.done.set()


class _Mqtt(asyncio.Protocol):
    def __init__(self, loop: asyncio.AbstractEventLoop, acks: Acks) -> None:
        self.acks = acks
        self.connected: asyncio.Future[None] = loop.create_future()
        self.transport: asyncio.Transport | None = None
        self.acked = 0
        self.buffer = b""
        self.next_pid = 0
        self.last_ms = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data
        while len(buf) >= 2 and len(buf) >= 2 + buf[1]:
            first = buf[0]
            if first == 0x20 and not self.connected.done():
                if buf[3] == 0:
                    self.connected.set_result(None)
                else:
                    self.connected.set_exception(ConnectionRefusedError(f"CONNACK {buf[3]}"))
            elif first == 0x40:
                self.acked += 1
                self.acks.one()
            buf = buf[2 + buf[1]:]
        self.buffer = buf

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionResetError("closed before CONNACK"))
        self.transport = None

    def send(self) -> None:
        if self.transport is None:
            raise ConnectionResetError("the publisher's connection was closed")
        self.last_ms = max(time.time_ns() // 1_000_000, self.last_ms + 1)
        payload = b'{"ts":%d,"values":{"%s":%d}}' % (self.last_ms, KEY.encode(), time.time_ns())
        self.next_pid = self.next_pid % 65535 + 1
        self.transport.write(codec.publish(codec.MQTT_311, TOPIC, payload, qos=1, packet_id=self.next_pid))


async def _publish(port: int, tokens: list[str], case: Case, go: Any) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(CONNECT_CONCURRENCY)
    acks = Acks()

    async def open_one(token: str) -> _Mqtt:
        async with gate:
            _, client = await loop.create_connection(lambda: _Mqtt(loop, acks), "127.0.0.1", port)
            assert client.transport is not None
            client.transport.write(codec.connect_packet(f"wsbench-{uuid.uuid4().hex[:10]}", username=token,
                                                        keep_alive=300))
            await asyncio.wait_for(client.connected, 60)
            return client

    clients = list(await asyncio.gather(*(open_one(t) for t in tokens)))
    go.set()
    total = case.per_device * len(clients)
    acks.expected = total
    interval = 1.0 / case.rate
    started = time.perf_counter()
    max_lag = 0.0
    for k in range(total):
        due = started + k * interval
        lag = time.perf_counter() - due
        if lag < 0:
            await asyncio.sleep(-lag)
        else:
            max_lag = max(max_lag, lag)
            if k % 64 == 0:
                await asyncio.sleep(0)  # let PUBACKs in
        clients[k % len(clients)].send()
    elapsed = time.perf_counter() - started
    if acks.count < total:
        try:
            await asyncio.wait_for(acks.done.wait(), case.drain)
        except TimeoutError:
            pass  # reported: acked < published
    acked = acks.count
    for client in clients:
        if client.transport is not None:
            client.transport.write(b"\xe0\x00")
            client.transport.close()
    return {"published": total, "acked": acked, "publish_s": round(elapsed, 3),
            "publish_rate": round(total / elapsed, 1) if elapsed else None, "max_lag_ms": round(max_lag * 1000, 2)}


# --- one case ---------------------------------------------------------------------------------
def run_case(http_url: str, mqtt_port: int, database_url: str, jwt: str, case: Case,
             note: Any = print) -> dict[str, Any]:
    prefix = f"wsb-{uuid.uuid4().hex[:8]}"
    tokens = asyncio.run(fleet.bulk_devices(database_url, prefix, case.devices))
    ids = asyncio.run(fleet.device_ids(database_url, tokens))
    device_ids = [str(ids[t]) for t in tokens]
    watched = [device_ids[0]] * case.subscribers if case.shape == "one" else device_ids
    procs = max(1, min(case.procs, case.subscribers))
    ctx = mp.get_context("spawn")
    ready, results, go = ctx.Queue(), ctx.Queue(), ctx.Event()
    url = f"{http_url.replace('http://', 'ws://')}/api/ws/plugins/telemetry?token={jwt}"
    deadline_s = case.publish_s + case.drain
    workers = [ctx.Process(target=_subscriber_main, daemon=True,
                           args=(url, watched[i::procs], case.per_device, ready, go, results, deadline_s))
               for i in range(procs)]
    load_before = os.getloadavg()
    for worker in workers:
        worker.start()
    try:
        opened = 0
        wait_until = time.monotonic() + READY_TIMEOUT_S
        while opened < case.subscribers:
            try:
                opened += ready.get(timeout=max(0.1, wait_until - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"only {opened} of {case.subscribers} sockets subscribed in "
                                   f"{READY_TIMEOUT_S:.0f} s") from None
            if any(not w.is_alive() and w.exitcode for w in workers):
                raise RuntimeError("a subscriber process failed while connecting")
        note(f"ws {case.shape} x{case.subscribers}: {opened} sockets subscribed; publishing "
             f"{case.per_device * case.devices} messages at {case.rate:g}/s")
        published = asyncio.run(_publish(mqtt_port, tokens, case, go))
        parts = [results.get(timeout=deadline_s + 60) for _ in workers]
    finally:
        go.set()
        for worker in workers:
            worker.join(timeout=30)
            if worker.is_alive():
                worker.kill()
                worker.join(timeout=10)
    errors = [p["error"] for p in parts if "error" in p]
    if errors:
        raise RuntimeError("; ".join(errors))
    return _summary(case, published, parts, load_before)


def _summary(case: Case, published: dict[str, Any], parts: list[dict[str, Any]],
             load_before: tuple[float, float, float]) -> dict[str, Any]:
    histogram = Histogram()
    for part in parts:
        histogram.merge(Histogram(counts=part["histogram"], max_us=part["max_us"], total=part["total"]))
    counts = [c for part in parts for c in part["counts"]]
    expected = case.per_device
    firsts = [p["first_ns"] for p in parts if p["first_ns"]]
    lasts = [p["last_ns"] for p in parts if p["last_ns"]]
    span = (max(lasts) - min(firsts)) / 1e9 if firsts and lasts else 0.0
    delivered = sum(counts)
    return {
        "shape": case.shape, "subscribers": case.subscribers, "devices": case.devices, "rate": case.rate,
        "values_per_subscriber": expected, **published,
        "delivered": delivered, "expected": expected * case.subscribers,
        "complete_subscribers": sum(c == expected for c in counts),
        "missing": expected * case.subscribers - delivered,
        "duplicates": sum(p["duplicates"] for p in parts), "out_of_order": sum(p["disorder"] for p in parts),
        "closed_sockets": sum(p["closed_count"] for p in parts), "closed_samples": [c for p in parts
                                                                                   for c in p["closed"]][:3],
        "p50_ms": round(histogram.percentile(50) / 1000, 2), "p99_ms": round(histogram.percentile(99) / 1000, 2),
        "max_ms": round(histogram.max_us / 1000, 2),
        "updates_per_s": round(delivered / span, 1) if span > 0 else None,
        "frames_per_s": round(sum(p["frames"] for p in parts) / span, 1) if span > 0 else None,
        "subscriber_cpu": [p["cpu_share"] for p in parts],
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }


HEAD = ("shape", "subs", "devices", "pub/s", "p50 ms", "p99 ms", "max ms", "updates/s", "frames/s",
        "delivered/expected", "complete", "dup", "closed", "pub lag ms", "sub cpu", "load 1m")


def table_rows(results: list[dict[str, Any]]) -> list[list[str]]:
    rows = []
    for r in results:
        if "failed" in r:
            rows.append([r["shape"], str(r["subscribers"]), "FAILED", r["failed"][:90]])
            continue
        rows.append([r["shape"], f"{r['subscribers']:,}", f"{r['devices']:,}", f"{r['publish_rate']:,.0f}",
                     f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}", f"{r['max_ms']:.1f}",
                     f"{r['updates_per_s']:,.0f}" if r["updates_per_s"] else "-",
                     f"{r['frames_per_s']:,.0f}" if r["frames_per_s"] else "-",
                     f"{r['delivered']:,}/{r['expected']:,}", f"{r['complete_subscribers']:,}/{r['subscribers']:,}",
                     str(r["duplicates"]), str(r["closed_sockets"]), f"{r['max_lag_ms']:.1f}",
                     "/".join(f"{c:.0%}" for c in r["subscriber_cpu"] if c is not None),
                     f"{r['loadavg_before'][0]:.1f}->{r['loadavg_after'][0]:.1f}"])
    return rows


def table(results: list[dict[str, Any]]) -> str:
    lines = [list(HEAD), *table_rows(results)]
    widths = [max(len(line[i]) for line in lines if i < len(line)) for i in range(len(HEAD))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths,
                                                                                          strict=False)))
                     for line in lines)


# --- the command line -------------------------------------------------------------------------
def run_all(http_url: str, mqtt_port: int, database_url: str, cases: list[Case], note: Any = print) -> list[dict]:
    import httpx

    from thingsray.benchmarks.scenarios import TENANT

    login = httpx.post(f"{http_url}/api/auth/login", json={"username": TENANT[0], "password": TENANT[1]}, timeout=30)
    login.raise_for_status()
    jwt = login.json()["token"]
    results: list[dict[str, Any]] = []
    for case in cases:
        try:
            results.append(run_case(http_url, mqtt_port, database_url, jwt, case, note))
        except Exception as exc:
            note(f"ws {case.shape} x{case.subscribers}: FAILED {type(exc).__name__}: {exc}")
            results.append({"shape": case.shape, "subscribers": case.subscribers,
                            "failed": f"{type(exc).__name__}: {exc}"})
    return results


def main(argv: list[str] | None = None) -> int:
    import argparse
    import sys
    from pathlib import Path

    from thingsray.benchmarks.command import Progress, _platform

    parser = argparse.ArgumentParser(prog="ws_fanout", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--subscribers", default="1,100,1000", help="comma-separated N (default 1,100,1000)")
    parser.add_argument("--shapes", default="one,many", help="one (N sockets, one device), many (N devices, "
                        "one socket each); default both")
    parser.add_argument("--rate", type=float, default=20.0, help="messages per second the one device publishes "
                        "(default 20)")
    parser.add_argument("--many-rate", type=float, default=200.0, help="messages per second the N devices publish in "
                        "all (default 200)")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing (default 10)")
    parser.add_argument("--procs", type=int, default=2, help="subscriber processes (default 2)")
    parser.add_argument("--drain", type=float, default=15.0, help="seconds to wait for the last values (default 15)")
    parser.add_argument("--database-url", help="PostgreSQL server for a throwaway database (default: embedded); "
                        "with --target-* the running platform's database")
    parser.add_argument("--target-mqtt", help="HOST:PORT of a running thingsray's MQTT (loopback); with --target-rest")
    parser.add_argument("--target-rest", help="base URL of the running thingsray's REST API")
    parser.add_argument("--shards", type=int)
    parser.add_argument("--mqtt-transports", type=int)
    parser.add_argument("--json", type=Path, help="also write the JSON here")
    args = parser.parse_args(argv)
    if bool(args.target_mqtt) != bool(args.target_rest) or (args.target_mqtt and not args.database_url):
        parser.error("--target-mqtt and --target-rest go together, with --database-url of that platform's database")
    cases = [Case(shape, int(n), args.rate if shape == "one" else args.many_rate, args.duration, args.procs, args.drain)
             for shape in args.shapes.split(",") for n in args.subscribers.split(",")]
    say = Progress()
    with _platform(args, say) as target:
        results = run_all(target.http_url, target.mqtt_port, target.database_url, cases, say)
    summary = {"command": "ws_fanout " + " ".join(sys.argv[1:] if argv is None else argv), "cpus": os.cpu_count(),
               "results": results}
    print(table(results))
    print(json.dumps(summary))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    return 1 if any("failed" in r or r["missing"] or r["closed_sockets"] for r in results) else 0
