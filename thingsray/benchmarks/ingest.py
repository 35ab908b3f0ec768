"""MQTT telemetry ingest: thingsray against the Mosquitto fan-in ceiling on the same machine.

Scenarios (``--scenarios``, comma-separated):

``ceiling``
    Starts ``mosquitto`` on a free port of 127.0.0.1 (config in a temp dir: anonymous, no
    persistence) with ONE consumer subscribed to ``#`` counting what it receives, and runs the
    generator (``thingsray.benchmarks.load``) against it: how many QoS 1 messages per second a broker
    that stores nothing takes in from that many connections on this machine.
``thingsray``
    Runs the generator against a running thingsray MQTT port (``--port``). Device tokens come
    from ``--tokens FILE`` or are created through REST (``--rest``: devices ``bench-<i>`` with
    token ``bench-token-<i>``, existing ones reused). After each run the database
    (``--database-url``) is asked for the ``pulseCounter`` rows of every device since the run
    started: every acknowledged message must be there, lost ones are reported (and make the
    exit status non-zero: a figure that loses data is no figure).

With both, every thingsray figure is printed beside the ceiling's as a ratio. ``--half-rate``
measures the maximum rate first, then latency at half of it.

    /work/venv/bin/python bench/mqtt_ingest.py --scenarios ceiling --devices 1000 --window 10
    /work/venv/bin/python bench/mqtt_ingest.py --scenarios ceiling,thingsray --port 1884 \\
        --rest http://127.0.0.1:8081 --devices 100 --database-url postgresql://postgres@127.0.0.1:5432/x
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx

from thingsray.benchmarks.load import (
    LoadRefused,
    LoadResult,
    LoadSpec,
    add_load_arguments,
    generated_tokens,
    read_tokens,
    run_load,
    spec_from_args,
    write_acked,
)
from thingsray.transports.mqtt import codec

OUT = Path(tempfile.gettempdir()) / "thingsray-bench" / "mqtt"
MOSQUITTO_PATHS = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")


def free_port() -> int:
    """A free port outside the ranges Ray binds in (see ``pick_free_port``)."""
    from thingsray.platform import pick_free_port

    return pick_free_port()


def find_mosquitto() -> str | None:
    return shutil.which("mosquitto") or next((p for p in MOSQUITTO_PATHS if Path(p).exists()), None)


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"mosquitto exited with status {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"mosquitto did not listen on 127.0.0.1:{port} within {timeout} s")


@contextmanager
def mosquitto(binary: str | None = None) -> Iterator[int]:
    """A private Mosquitto on a free 127.0.0.1 port for the duration of the block; yields the port."""
    binary = binary or find_mosquitto()
    if binary is None:
        raise RuntimeError("no mosquitto binary found (apt-get install mosquitto)")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-mosquitto-") as tmp:
        config = Path(tmp) / "mosquitto.conf"
        config.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                          "max_queued_messages 0\nlog_dest stderr\nlog_type error\nlog_type warning\n")
        log = (Path(tmp) / "mosquitto.log").open("wb")
        proc = subprocess.Popen([binary, "-c", str(config)], stdout=log, stderr=subprocess.STDOUT)
        try:
            _wait_listening(port, proc)
            yield port
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()


# --- the '#' consumer ------------------------------------------------------------------------
class _Counter(asyncio.Protocol):
    """Counts PUBLISH frames on a subscribed connection; ``received`` is shared with the parent."""

    def __init__(self, received: Any, subscribed: Any) -> None:
        self.received = received
        self.subscribed = subscribed
        self.buffer = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        cast(asyncio.Transport, transport).write(codec.connect_packet("bench-consumer")
                                                 + codec.subscribe_packet(1, [("#", 0)]))

    def data_received(self, data: bytes) -> None:
        buf = self.buffer + data if self.buffer else data
        pos, end, count = 0, len(buf), 0
        while end - pos >= 2:
            first, size, i, shift = buf[pos], 0, pos + 1, 0
            while i < end:
                b = buf[i]
                size |= (b & 0x7F) << shift
                i += 1
                if not b & 0x80:
                    break
                shift += 7
            else:
                break
            if i + size > end:
                break
            if first >> 4 == 3:
                count += 1
            elif first >> 4 == 9:
                self.subscribed.set()
            pos = i + size
        self.buffer = buf[pos:]
        if count:
            self.received.value += count


def _consumer_main(port: int, received: Any, subscribed: Any, stop: Any) -> None:
    async def run() -> None:
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: _Counter(received, subscribed), "127.0.0.1", port)
        await asyncio.to_thread(stop.wait)

    asyncio.run(run())


class Consumer:
    """One subscriber to ``#`` in its own process."""

    def __init__(self, port: int) -> None:
        ctx = mp.get_context("spawn")
        self.received = ctx.Value("q", 0, lock=False)
        self.subscribed = ctx.Event()
        self.stop = ctx.Event()
        self.proc = ctx.Process(target=_consumer_main, args=(port, self.received, self.subscribed, self.stop),
                                daemon=True, name="mqtt-consumer")

    def __enter__(self) -> Consumer:
        self.proc.start()
        if not self.subscribed.wait(15):
            raise RuntimeError("the '#' consumer did not get its SUBACK within 15 s")
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.proc.join(5)
        if self.proc.is_alive():
            self.proc.terminate()

    def settle(self, expected: int, timeout: float = 30.0) -> int:
        """Wait until ``expected`` messages arrived or the count stops moving for a second."""
        deadline, last, last_change = time.monotonic() + timeout, -1, time.monotonic()
        while time.monotonic() < deadline:
            now_count = self.received.value
            if now_count >= expected:
                return now_count
            if now_count != last:
                last, last_change = now_count, time.monotonic()
            elif time.monotonic() - last_change > 1.0:
                return now_count
            time.sleep(0.05)
        return self.received.value


# --- thingsray's devices and database --------------------------------------------------------
async def rest_tokens(rest: str, username: str, password: str, count: int) -> list[str]:
    """Tokens of devices ``bench-0`` .. ``bench-<count-1>``, created (token ``bench-token-<i>``) if missing."""
    async with httpx.AsyncClient(base_url=rest, timeout=30) as client:
        login = await client.post("/api/auth/login", json={"username": username, "password": password})
        login.raise_for_status()
        client.headers["X-Authorization"] = f"Bearer {login.json()['token']}"
        gate = asyncio.Semaphore(8)

        async def one(i: int) -> str:
            async with gate:
                name = f"bench-{i}"
                found = await client.get("/api/tenant/devices", params={"deviceName": name})
                if found.status_code == 200:
                    device_id = found.json()["id"]["id"]
                else:
                    created = await client.post("/api/device", params={"accessToken": f"bench-token-{i}"},
                                                json={"name": name, "type": "default"})
                    if created.status_code != 200:
                        raise RuntimeError(f"creating {name}: {created.status_code} {created.text}")
                    device_id = created.json()["id"]["id"]
                credentials = await client.get(f"/api/device/{device_id}/credentials")
                credentials.raise_for_status()
                return str(credentials.json()["credentialsId"])

        return list(await asyncio.gather(*(one(i) for i in range(count))))


async def stored_counts(database_url: str, acked: dict[str, int], since_ms: int) -> dict[str, Any]:
    """For each token, how many of its acknowledged pulseCounter values 1..acked are in ts_kv since ``since_ms``."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch("SELECT credentials_id, device_id FROM device_credentials "
                                "WHERE credentials_id = ANY($1::varchar[])", list(acked))
        device_of = {r["credentials_id"]: r["device_id"] for r in rows}
        key_id = await conn.fetchval("SELECT key_id FROM key_dictionary WHERE key = 'pulseCounter'")
        tokens = [t for t in acked if t in device_of]
        stored: dict[str, int] = {}
        if key_id is not None and tokens:
            result = await conn.fetch(
                "SELECT d.token, count(DISTINCT coalesce(t.long_v, t.dbl_v::bigint)) AS stored "
                "FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS d(device_id, token, acked) "
                "LEFT JOIN ts_kv t ON t.entity_id = d.device_id AND t.key = $4 AND t.ts >= $5 "
                "AND coalesce(t.long_v, t.dbl_v::bigint) BETWEEN 1 AND d.acked GROUP BY d.token",
                [device_of[t] for t in tokens], tokens, [acked[t] for t in tokens], key_id, since_ms)
            stored = {r["token"]: r["stored"] for r in result}
    finally:
        await conn.close()
    lost_by_token = {t: n - stored.get(t, 0) for t, n in acked.items() if n - stored.get(t, 0) > 0}
    return {"acked": sum(acked.values()), "stored": sum(stored.values()), "lost": sum(lost_by_token.values()),
            "devices_losing": len(lost_by_token), "unknown_tokens": [t for t in acked if t not in device_of][:10],
            "lost_samples": dict(list(lost_by_token.items())[:10])}


# --- the scenarios ---------------------------------------------------------------------------
def _with_rate(spec: LoadSpec, rate: float | None) -> LoadSpec:
    return LoadSpec(**{**spec.__dict__, "rate": rate})


def measure(name: str, spec: LoadSpec, half_rate: bool, after_run: Any) -> dict[str, Any]:
    """The run (or, with ``half_rate``, the max-rate run then one at half of it); ``after_run(result,
    started_ms)`` adds what it checked to each run's figures."""
    runs: dict[str, Any] = {}
    phases = [("max", spec.rate)] + ([("half", None)] if half_rate else [])
    for phase, rate in phases:
        if phase == "half":
            rate = runs["max"]["msg_per_s"] / 2
            if rate <= 0:
                break
        run_spec = _with_rate(spec, rate)
        started_ms = time.time_ns() // 1_000_000
        result: LoadResult = run_load(run_spec)
        figures = result.summary() | {"rate_target": rate, "started_ms": started_ms} | after_run(result, started_ms)
        OUT.mkdir(parents=True, exist_ok=True)
        acked_file = OUT / f"{name}-{phase}-acked.json"
        write_acked(acked_file, result, run_spec, {"checked": figures})
        figures["acked_file"] = str(acked_file)
        runs[phase] = figures
        print(f"[{name}/{phase}] {json.dumps({k: v for k, v in figures.items() if k != 'error_samples'})}",
              file=sys.stderr)
    return runs


def run_ceiling(args: argparse.Namespace, tokens: list[str]) -> dict[str, Any]:
    with mosquitto(args.mosquitto) as port, Consumer(port) as consumer:
        base = [0]  # the consumer's count so far: each run reads its difference

        def counted(result: LoadResult, _started_ms: int) -> dict[str, Any]:
            total = consumer.settle(base[0] + result.acked)
            received, base[0] = total - base[0], total
            return {"consumer_received": received}

        spec = spec_from_args(args, port, tokens)
        return measure("ceiling", spec, args.half_rate, counted)


def run_thingsray(args: argparse.Namespace, tokens: list[str]) -> dict[str, Any]:
    if not args.database_url:
        raise SystemExit("the thingsray scenario needs --database-url to check what was stored")

    def check(result: LoadResult, started_ms: int) -> dict[str, Any]:
        acked = {t: n for t, n in result.acked_by_token.items() if n}
        stored = asyncio.run(stored_counts(args.database_url, acked, started_ms))
        return {"db_" + k: v for k, v in stored.items()}

    spec = spec_from_args(args, args.port, tokens)
    return measure("thingsray", spec, args.half_rate, check)


FIGURES = ("connected", "connect_failures", "errors", "acked", "unacked", "msg_per_s", "data_points_per_s",
           "p50_ms", "p99_ms", "max_ms", "consumer_received", "db_stored", "db_lost")
RATIO_FIGURES = {"msg_per_s", "data_points_per_s", "p50_ms", "p99_ms", "max_ms"}


def table(results: dict[str, dict[str, Any]]) -> str:
    phases = sorted({p for runs in results.values() for p in runs}, key=["max", "half"].index)
    head = ["figure"] + [f"{s}/{p}" for p in phases for s in results]
    both = "ceiling" in results and "thingsray" in results
    if both:
        head += [f"ratio/{p}" for p in phases]
    rows = [head]
    for fig in FIGURES:
        cells = [results[s].get(p, {}).get(fig, "") for p in phases for s in results]
        if all(c == "" for c in cells):
            continue
        row = [fig] + [f"{c:,.3f}" if isinstance(c, float) else f"{c:,}" if isinstance(c, int) else str(c)
                       for c in cells]
        if both:
            for p in phases:
                ours, ceiling = results["thingsray"].get(p, {}).get(fig), results["ceiling"].get(p, {}).get(fig)
                ok = fig in RATIO_FIGURES and isinstance(ours, int | float) and isinstance(ceiling, int | float)
                row.append(f"{ours / ceiling:.3f}" if ok and ceiling else "")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return "\n".join("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=True)))
                     for r in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scenarios", default="ceiling", help="comma-separated: ceiling, thingsray")
    add_load_arguments(parser)
    parser.add_argument("--half-rate", action="store_true", help="also measure latency at half the max rate")
    parser.add_argument("--mosquitto", help="the mosquitto binary (default: from PATH or /usr/sbin)")
    parser.add_argument("--port", type=int, help="thingsray's MQTT port (127.0.0.1)")
    parser.add_argument("--rest", help="thingsray's REST base URL, to create or find devices bench-<i>")
    parser.add_argument("--username", default="tenant@thingsboard.org")
    parser.add_argument("--password", default="tenant")
    parser.add_argument("--database-url", help="thingsray's PostgreSQL, to check every acknowledged message")
    parser.add_argument("--json", type=Path, help="also write the JSON summary here")
    args = parser.parse_args(argv)
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    if unknown := set(scenarios) - {"ceiling", "thingsray"}:
        parser.error(f"unknown scenarios: {', '.join(sorted(unknown))}")
    if "thingsray" in scenarios:
        if not args.port:
            parser.error("the thingsray scenario needs --port")
        if args.tokens:
            tokens = read_tokens(args.tokens)[:args.devices]
        elif args.rest:
            tokens = asyncio.run(rest_tokens(args.rest, args.username, args.password, args.devices))
        else:
            parser.error("the thingsray scenario needs --tokens FILE or --rest URL")
    else:
        tokens = read_tokens(args.tokens)[:args.devices] if args.tokens else generated_tokens(args.devices)

    results: dict[str, dict[str, Any]] = {}
    try:
        for scenario in ("ceiling", "thingsray"):
            if scenario in scenarios:
                results[scenario] = (run_ceiling if scenario == "ceiling" else run_thingsray)(args, tokens)
    except LoadRefused as exc:
        parser.error(str(exc))
    summary = {"devices": len(tokens), "workers": args.workers, "window": args.window, "duration_s": args.duration,
               "payload_ts": args.payload_ts, "results": results}
    print(table(results))
    print(json.dumps(summary, indent=1))
    if args.json:
        args.json.write_text(json.dumps(summary, indent=1))
    lost = sum(run.get("db_lost", 0) for runs in results.values() for run in runs.values())
    unacked = sum(run.get("unacked", 0) for runs in results.values() for run in runs.values())
    return 1 if lost or unacked else 0


if __name__ == "__main__":
    sys.exit(main())
