"""A load generator of many real MQTT 3.1.1 device connections, for the ingest benchmark.

Each of G worker processes (spawned) runs one event loop holding its share of the devices, one
TCP connection each, CONNECT with the device's access token as user name. Every device publishes
ThingsBoard's smart-meter payload ``{"pulseCounter":n,"leakage":false,"batteryLevel":b}`` to
``v1/devices/me/telemetry`` at QoS 1 with at most ``window`` messages in flight (1: publish, wait
for the PUBACK, publish the next). Without ``rate`` devices publish as fast as acknowledgements
come back; with it, a token bucket per process holds the aggregate rate.

The client is callback driven (an ``asyncio.Protocol`` per connection, no coroutine and no task
per message, PUBACKs and CONNACKs parsed as the 4-byte frames they are) so that it is cheap next
to the broker it measures. Latencies go into a log-linear histogram per process (1.6 % buckets),
merged at the end. After ``duration`` seconds no new message is sent, in-flight ones are waited
for (``drain_timeout``), and every device reports how many of its messages were acknowledged:
``pulseCounter`` runs 1, 2, 3 ... per device, so a checker can find each acknowledged message
in the database.

Only loopback hosts are accepted: this is a benchmark tool, not a traffic generator.

    /work/venv/bin/python bench/mqtt_load.py --port 1884 [--devices 100 | --tokens FILE]
        [--workers 2] [--window 1] [--duration 10] [--rate MSG_PER_S] [--acked-json FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import ipaddress
import json
import multiprocessing as mp
import os
import resource
import sys
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, cast

from thingsray.transports.mqtt import codec

TELEMETRY_TOPIC = "v1/devices/me/telemetry"
DATA_POINTS_PER_MESSAGE = 3
MAX_CONNECTIONS = 20_000
"""Hard cap on connections of one run, whatever is asked."""
FDS_PER_CONNECTION = 1
FD_HEADROOM = 256

CONNACK = 0x20
PUBACK = 0x40
DISCONNECT_FRAME = bytes([0xE0, 0x00])


# --- the latency histogram -------------------------------------------------------------------
SUB_BUCKET_BITS = 6  # 64 sub-buckets per power of two: values kept to within 1/64
_LINEAR = 1 << (SUB_BUCKET_BITS + 1)
HISTOGRAM_SIZE = _LINEAR + 40 * (1 << SUB_BUCKET_BITS)


def bucket_of(us: int) -> int:
    """Histogram index of a latency in microseconds (exact below 128 µs, then 1/64 relative)."""
    if us < _LINEAR:
        return max(us, 0)
    shift = us.bit_length() - (SUB_BUCKET_BITS + 1)
    return (shift << SUB_BUCKET_BITS) + (us >> shift)


def bucket_value(index: int) -> int:
    """The upper edge (µs) of bucket ``index``: a percentile never reads lower than the truth."""
    if index < _LINEAR:
        return index
    shift = (index >> SUB_BUCKET_BITS) - 1
    mantissa = index - (shift << SUB_BUCKET_BITS)
    return ((mantissa + 1) << shift) - 1


@dataclass
class Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * HISTOGRAM_SIZE)
    max_us: int = 0
    total: int = 0

    def record(self, us: int) -> None:
        self.counts[bucket_of(us)] += 1
        self.total += 1
        if us > self.max_us:
            self.max_us = us

    def merge(self, other: Histogram) -> None:
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total
        self.max_us = max(self.max_us, other.max_us)

    def percentile(self, p: float) -> int:
        """Latency (µs) at or below which ``p`` percent of the samples lie; 0 when empty."""
        if not self.total:
            return 0
        rank = max(1, round(self.total * p / 100))
        seen = 0
        for index, count in enumerate(self.counts):
            seen += count
            if seen >= rank:
                return min(bucket_value(index), self.max_us)
        return self.max_us


# --- what a run is asked to do, and what it found --------------------------------------------
@dataclass(frozen=True)
class LoadSpec:
    host: str
    port: int
    tokens: tuple[str, ...]
    workers: int = 2
    window: int = 1
    duration: float = 10.0
    rate: float | None = None
    """Aggregate messages per second over all devices; None: as fast as acknowledgements allow."""
    payload_ts: bool = False
    """Send ``{"ts":ms,"values":{..}}`` with a per-device strictly increasing ts, so that two
    messages of one device can never share a timestamp (ts_kv keeps one row per entity, key, ts)."""
    client_id_prefix: str = "bench"
    keep_alive: int = 300
    connect_timeout: float = 15.0
    connect_concurrency: int = 64
    """Connection attempts in flight per worker: more overflows the broker's accept backlog."""
    drain_timeout: float = 10.0
    use_uvloop: bool = True
    max_messages: int | None = None
    """Messages per device at most; a device that sent them stays connected until ``duration`` ends."""


@dataclass
class LoadResult:
    devices: int
    connected: int
    connect_failures: int
    errors: int
    """Connections lost or refused mid-run, unexpected packets, PUBACKs for unknown packet ids."""
    sent: int
    acked: int
    acked_in_window: int
    unacked: int
    """Sent but never acknowledged within the drain timeout."""
    duration_s: float
    latency: Histogram
    acked_by_token: dict[str, int]
    error_samples: list[str]

    @property
    def msg_per_s(self) -> float:
        return self.acked_in_window / self.duration_s if self.duration_s else 0.0

    @property
    def data_points_per_s(self) -> float:
        return self.msg_per_s * DATA_POINTS_PER_MESSAGE

    def summary(self) -> dict[str, Any]:
        """The figures as JSON (latencies in milliseconds), without the per-device counts."""
        ms = 1000.0
        return {
            "devices": self.devices, "connected": self.connected, "connect_failures": self.connect_failures,
            "errors": self.errors, "sent": self.sent, "acked": self.acked, "unacked": self.unacked,
            "duration_s": round(self.duration_s, 3), "msg_per_s": round(self.msg_per_s, 1),
            "data_points_per_s": round(self.data_points_per_s, 1),
            "p50_ms": round(self.latency.percentile(50) / ms, 3), "p99_ms": round(self.latency.percentile(99) / ms, 3),
            "max_ms": round(self.latency.max_us / ms, 3), "error_samples": self.error_samples[:10],
        }


class LoadRefused(ValueError):
    """The spec asks for what this tool will not do (a remote host, too many connections)."""


def check_spec(spec: LoadSpec) -> None:
    try:
        loopback = ipaddress.ip_address("127.0.0.1" if spec.host == "localhost" else spec.host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise LoadRefused(f"host {spec.host!r} is not a loopback address: this generator only targets 127.0.0.1")
    if not spec.tokens:
        raise LoadRefused("no device tokens given")
    if len(set(spec.tokens)) != len(spec.tokens):
        raise LoadRefused("a token is given twice: acknowledged counts are kept per token")
    if len(spec.tokens) > MAX_CONNECTIONS:
        raise LoadRefused(f"{len(spec.tokens)} connections asked, at most {MAX_CONNECTIONS} allowed")
    if spec.window < 1 or spec.window > 65535:
        raise LoadRefused(f"window {spec.window} is not within 1..65535")
    if spec.workers < 1 or spec.duration <= 0 or (spec.rate is not None and spec.rate <= 0):
        raise LoadRefused("workers must be >= 1, duration and rate > 0")


def raise_fd_limit(connections: int) -> int:
    """Raise RLIMIT_NOFILE's soft limit to what ``connections`` sockets need (up to the hard limit)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = connections * FDS_PER_CONNECTION + FD_HEADROOM
    if soft != resource.RLIM_INFINITY and soft < want:
        new = want if hard == resource.RLIM_INFINITY else min(want, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (new, hard))
        soft = new
    if soft != resource.RLIM_INFINITY and soft < want:
        raise LoadRefused(f"{connections} connections need {want} file descriptors; the hard limit is {hard}")
    return soft


# --- one device connection -------------------------------------------------------------------
class _Device(asyncio.Protocol):
    """One device's MQTT connection; publishing is driven by the fleet, acknowledgements here."""

    def __init__(self, fleet: _Fleet, token: str, client_id: str) -> None:
        self.fleet = fleet
        self.token = token
        self.client_id = client_id
        self.transport: asyncio.Transport | None = None
        self.connected: asyncio.Future[None] = fleet.loop.create_future()
        self.buffer = b""
        self.inflight: dict[int, int] = {}  # packet id -> perf_counter_ns at publish
        self.next_pid = 0
        self.counter = 0  # last pulseCounter sent
        self.last_ts = 0
        self.acked = 0
        self.waiting = False  # queued for a token
        self.closing = False
        self.lost = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # asyncio and uvloop both set TCP_NODELAY
        self.transport.write(codec.connect_packet(self.client_id, username=self.token,
                                                  keep_alive=self.fleet.spec.keep_alive))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        pos, end = 0, len(buf)
        out: list[bytes] = []
        fleet = self.fleet
        while end - pos >= 2:
            first, size, i = buf[pos], buf[pos + 1], pos + 2
            if size & 0x80:  # a multi-byte remaining length: only a PUBLISH to the device is that long
                size, shift, i = size & 0x7F, 7, pos + 2
                while i < end and buf[i - 1] & 0x80 and shift <= 21:
                    size |= (buf[i] & 0x7F) << shift
                    shift += 7
                    i += 1
                if i >= end and buf[i - 1] & 0x80:
                    break
            if i + size > end:
                break
            if first == PUBACK and size == 2:
                pid = (buf[i] << 8) | buf[i + 1]
                sent_at = self.inflight.pop(pid, None)
                if sent_at is None:
                    fleet.error(f"{self.client_id}: PUBACK for unknown packet id {pid}")
                else:
                    self.acked += 1
                    fleet.acknowledged(self, sent_at, out)
            elif first == CONNACK and size == 2:
                code = buf[i + 1]
                if not self.connected.done():
                    if code == 0:
                        self.connected.set_result(None)
                    else:
                        self.connected.set_exception(ConnectionRefusedError(f"CONNACK return code {code}"))
            elif first >> 4 != 3:  # a PUBLISH to a device (RPC, attributes) is ignored; others are not
                fleet.error(f"{self.client_id}: unexpected packet {first:#04x} of {size} bytes")
            pos = i + size
        self.buffer = buf[pos:] if pos < end else b""
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.connected.done():
            self.connected.set_exception(exc or ConnectionResetError("closed before CONNACK"))
        elif not self.closing:
            self.lost = True
            self.fleet.error(f"{self.client_id}: connection lost ({exc or 'closed by the server'}) "
                             f"with {len(self.inflight)} in flight")
        self.transport = None
        self.fleet.inflight_total -= len(self.inflight)
        self.fleet.settled()

    def frame(self) -> bytes:
        """The next PUBLISH of this device; records its send time."""
        self.counter += 1
        n = self.counter
        if self.fleet.spec.payload_ts:
            self.last_ts = max(time.time_ns() // 1_000_000, self.last_ts + 1)
            payload = b'{"ts":%d,"values":{"pulseCounter":%d,"leakage":false,"batteryLevel":%d}}' % (
                self.last_ts, n, 100 - n % 100)
        else:
            payload = b'{"pulseCounter":%d,"leakage":false,"batteryLevel":%d}' % (n, 100 - n % 100)
        pid = self.next_pid % 65535 + 1
        while pid in self.inflight:
            pid = pid % 65535 + 1
        self.next_pid = pid
        self.inflight[pid] = time.perf_counter_ns()
        self.fleet.inflight_total += 1
        return codec.publish(codec.MQTT_311, TELEMETRY_TOPIC, payload, qos=1, packet_id=pid)


# --- one worker's devices --------------------------------------------------------------------
class _Fleet:
    """The devices of one worker process: pacing (token bucket), counting, draining."""

    def __init__(self, spec: LoadSpec, tokens: list[tuple[int, str]], rate: float | None) -> None:
        self.spec = spec
        self.tokens = tokens
        self.rate = rate
        self.loop = asyncio.get_running_loop()
        self.devices: list[_Device] = []
        self.histogram = Histogram()
        self.sending = False
        self.deadline_ns = 0
        self.sent = 0
        self.inflight_total = 0
        self.acked_in_window = 0
        self.errors = 0
        self.error_samples: list[str] = []
        self.connect_failures = 0
        self.bucket = 0.0
        self.burst = max(1.0, (rate or 0) * 0.005)  # at most 5 ms of the rate at once
        self.waiting: deque[_Device] = deque()
        self.idle = asyncio.Event()

    def error(self, message: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 20:
            self.error_samples.append(message)

    async def connect_all(self) -> None:
        gate = asyncio.Semaphore(self.spec.connect_concurrency)

        async def connect(index: int, token: str) -> None:
            async with gate:
                device = _Device(self, token, f"{self.spec.client_id_prefix}-{index}")
                try:
                    async with asyncio.timeout(self.spec.connect_timeout):
                        await self.loop.create_connection(lambda: device, self.spec.host, self.spec.port)
                        await device.connected
                except (OSError, TimeoutError) as exc:
                    self.connect_failures += 1
                    if len(self.error_samples) < 20:
                        self.error_samples.append(f"{device.client_id}: connect failed: {exc!r}")
                    if device.transport is not None:
                        device.closing = True
                        device.transport.abort()
                    return
                self.devices.append(device)

        await asyncio.gather(*(connect(i, t) for i, t in self.tokens))

    # publishing
    def start(self) -> None:
        self.sending = True
        self.deadline_ns = time.perf_counter_ns() + int(self.spec.duration * 1e9)
        if self.rate is not None:
            self._last_refill = time.perf_counter()
            self.loop.call_soon(self._refill)
        for device in self.devices:
            out: list[bytes] = []
            for _ in range(self.spec.window):
                self._next(device, out)
            if out and device.transport is not None:
                device.transport.write(b"".join(out))

    def stop(self) -> None:
        self.sending = False
        self.waiting.clear()
        self.settled()

    def _next(self, device: _Device, out: list[bytes]) -> None:
        """Queue ``device``'s next message into ``out`` if sending and (with a rate) a token is there."""
        if not self.sending or device.lost or device.transport is None:
            return
        if time.perf_counter_ns() > self.deadline_ns:
            self.stop()
            return
        if self.spec.max_messages is not None and device.counter >= self.spec.max_messages:
            return
        if self.rate is not None:
            if self.bucket < 1.0:
                if not device.waiting:
                    device.waiting = True
                    self.waiting.append(device)
                return
            self.bucket -= 1.0
        out.append(device.frame())
        self.sent += 1

    def _refill(self) -> None:
        if not self.sending:
            return
        now = time.perf_counter()
        self.bucket = min(self.burst, self.bucket + (now - self._last_refill) * (self.rate or 0))
        self._last_refill = now
        while self.waiting and self.bucket >= 1.0:
            device = self.waiting.popleft()
            device.waiting = False
            out: list[bytes] = []
            self._next(device, out)
            if out and device.transport is not None:
                device.transport.write(out[0])
        self.loop.call_later(0.001, self._refill)

    def acknowledged(self, device: _Device, sent_at: int, out: list[bytes]) -> None:
        now = time.perf_counter_ns()
        self.inflight_total -= 1
        self.histogram.record((now - sent_at) // 1000)
        if now <= self.deadline_ns:
            self.acked_in_window += 1
        if self.sending:
            self._next(device, out)
        else:
            self.settled()

    def settled(self) -> None:
        """Wake the drain when nothing is in flight any more."""
        if not self.sending and self.inflight_total <= 0:
            self.idle.set()

    async def drain_and_close(self) -> None:
        try:
            async with asyncio.timeout(self.spec.drain_timeout):
                self.settled()
                await self.idle.wait()
        except TimeoutError:
            pass
        for device in self.devices:
            if device.transport is not None:
                device.closing = True
                device.transport.write(DISCONNECT_FRAME)
                device.transport.close()
        await asyncio.sleep(0.05)  # let the closes flush

    def result(self) -> dict[str, Any]:
        acked_by_token = {d.token: d.acked for d in self.devices}
        return {
            "devices": len(self.tokens), "connected": len(self.devices), "connect_failures": self.connect_failures,
            "errors": self.errors, "error_samples": self.error_samples, "sent": self.sent,
            "acked": sum(acked_by_token.values()), "acked_in_window": self.acked_in_window,
            "unacked": sum(len(d.inflight) for d in self.devices), "acked_by_token": acked_by_token,
            "histogram": self.histogram.counts, "max_us": self.histogram.max_us, "total": self.histogram.total,
        }


async def _run_worker(spec: LoadSpec, tokens: list[tuple[int, str]], rate: float | None,
                      barrier: Any) -> dict[str, Any]:
    fleet = _Fleet(spec, tokens, rate)
    await fleet.connect_all()
    await asyncio.to_thread(barrier.wait, spec.connect_timeout * 4 + 60)
    fleet.start()
    await asyncio.sleep(spec.duration)
    fleet.stop()
    await fleet.drain_and_close()
    return fleet.result()


def _worker_main(spec: LoadSpec, tokens: list[tuple[int, str]], rate: float | None, barrier: Any,
                 results: Any) -> None:
    """Child process entry: run the worker's devices, put its result (or its error) on ``results``."""
    try:
        raise_fd_limit(len(tokens))
        if spec.use_uvloop:
            try:
                import uvloop
            except ImportError:
                pass
            else:
                asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        results.put(asyncio.run(_run_worker(spec, tokens, rate, barrier)))
    except BaseException as exc:
        barrier.abort()
        results.put({"failed": f"{type(exc).__name__}: {exc}"})


# --- the run ---------------------------------------------------------------------------------
def run_load(spec: LoadSpec) -> LoadResult:
    """Run the load across ``spec.workers`` spawned processes and merge what they found.

    Blocking; runs ``duration`` seconds plus connecting and draining. Raises ``LoadRefused`` for
    a spec it will not run and ``RuntimeError`` when a worker fails.
    """
    check_spec(spec)
    raise_fd_limit(len(spec.tokens))  # the children inherit it
    workers = min(spec.workers, len(spec.tokens))
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(workers + 1)
    results = ctx.Queue()
    shares: list[list[tuple[int, str]]] = [[] for _ in range(workers)]
    for index, token in enumerate(spec.tokens):
        shares[index % workers].append((index, token))
    rate = spec.rate / workers if spec.rate is not None else None
    procs = [ctx.Process(target=_worker_main, args=(spec, share, rate, barrier, results), daemon=True,
                         name=f"mqtt-load-{i}") for i, share in enumerate(shares)]
    for proc in procs:
        proc.start()
    outcomes: list[dict[str, Any]] = []
    try:
        try:
            barrier.wait(spec.connect_timeout * 4 + 60)
        except threading.BrokenBarrierError:
            pass  # a worker failed; its error is on the queue
        wait_s = spec.duration + spec.drain_timeout + spec.connect_timeout * 4 + 120
        for _ in procs:
            outcomes.append(results.get(timeout=wait_s))
    finally:
        for proc in procs:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
    failed = [o["failed"] for o in outcomes if "failed" in o]
    if failed:
        raise RuntimeError(f"load worker failed: {failed[0]}")
    return merge(outcomes, spec.duration)


def merge(outcomes: list[dict[str, Any]], duration: float) -> LoadResult:
    histogram = Histogram()
    acked_by_token: dict[str, int] = {}
    samples: list[str] = []
    for o in outcomes:
        histogram.merge(Histogram(o["histogram"], o["max_us"], o["total"]))
        acked_by_token.update(o["acked_by_token"])
        samples += o["error_samples"]
    return LoadResult(
        devices=sum(o["devices"] for o in outcomes), connected=sum(o["connected"] for o in outcomes),
        connect_failures=sum(o["connect_failures"] for o in outcomes), errors=sum(o["errors"] for o in outcomes),
        sent=sum(o["sent"] for o in outcomes), acked=sum(o["acked"] for o in outcomes),
        acked_in_window=sum(o["acked_in_window"] for o in outcomes), unacked=sum(o["unacked"] for o in outcomes),
        duration_s=duration, latency=histogram, acked_by_token=acked_by_token, error_samples=samples)


def generated_tokens(count: int) -> list[str]:
    return [f"bench-token-{i}" for i in range(count)]


def read_tokens(path: Path) -> list[str]:
    """One token per line; blank lines and ``#`` comments skipped."""
    lines = (line.strip() for line in path.read_text().splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def write_acked(path: Path, result: LoadResult, spec: LoadSpec, extra: dict[str, Any] | None = None) -> None:
    """The checker's input: per-token acknowledged counts (pulseCounter 1..n of each was acked)."""
    body = {"summary": result.summary(), "spec": {k: v for k, v in asdict(spec).items() if k != "tokens"},
            "acked_by_token": result.acked_by_token, **(extra or {})}
    path.write_text(json.dumps(body, indent=1))


def add_load_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="loopback only")
    parser.add_argument("--devices", type=int, default=100, help="connections, one per device")
    parser.add_argument("--tokens", type=Path, help="device access tokens, one per line (default: generated)")
    parser.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2)), help="generator processes")
    parser.add_argument("--window", type=int, default=1, help="QoS 1 messages in flight per connection")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of publishing")
    parser.add_argument("--rate", type=float, help="aggregate target msg/s (default: as fast as possible)")
    parser.add_argument("--payload-ts", action="store_true",
                        help='send {"ts":..,"values":..} with a unique ts per device message')
    parser.add_argument("--no-uvloop", action="store_true", help="use the default asyncio loop")


def spec_from_args(args: argparse.Namespace, port: int, tokens: list[str] | None = None) -> LoadSpec:
    if tokens is None:
        tokens = read_tokens(args.tokens)[:args.devices] if args.tokens else generated_tokens(args.devices)
    return LoadSpec(host=args.host, port=port, tokens=tuple(tokens), workers=args.workers, window=args.window,
                    duration=args.duration, rate=args.rate, payload_ts=args.payload_ts,
                    use_uvloop=not args.no_uvloop)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    add_load_arguments(parser)
    parser.add_argument("--acked-json", type=Path, help="write per-device acknowledged counts here")
    args = parser.parse_args(argv)
    spec = spec_from_args(args, args.port)
    try:
        result = run_load(spec)
    except LoadRefused as exc:
        parser.error(str(exc))
    if args.acked_json:
        write_acked(args.acked_json, result, spec)
    print(json.dumps(result.summary(), indent=1))
    return 0 if result.connect_failures == 0 and result.errors == 0 and result.unacked == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
