"""What an idle activated actor costs in memory, in one process (no Ray).

Kinds (``--kinds``):

``trivial``
    An actor that holds nothing: the bare runtime cost (the host's cell, the address, the
    host's dict entry, the actor object).
``device``
    The real ``DeviceActor`` in a real ``ShardEnv`` whose database and writer are in-memory
    stand-ins: the database knows every device (one tenant, one profile) and has no attributes,
    the writer accepts every write at once. This measures memory, not the database.

Each actor is activated by one message (the device: a ``PostTelemetry`` with one data point,
as the ``actors`` scenario of the ingest benchmark sends), every reply is awaited, the actors
are left idle, ``gc.collect()`` runs, and then: RSS growth per actor (psutil), tracemalloc bytes
per actor, activation time, and how many idle cells still hold a mailbox or a task (should be 0).
Every (kind, N) runs in a fresh interpreter (so one run's freed memory does not hide the next
one's), once for RSS and time and once under tracemalloc (which slows and inflates the process).
Traffic: none.

    /work/venv/bin/python bench/actor_memory.py
    /work/venv/bin/python bench/actor_memory.py --kinds device --device 100000,1000000 --json /tmp/m.json
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
import time
import tracemalloc
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psutil

from thingsray.runtime import Actor, ActorHost, Address

CHUNK = 10_000
"""Messages in flight at once while activating."""
WARMUP = 2_000
"""Actors activated (and kept) before the baseline, so one-time allocations are not counted."""
TENANT_ID = uuid.UUID("11111111-2222-3333-4444-555555555555")
PROFILE_ID = uuid.UUID("66666666-7777-8888-9999-000000000000")


class Trivial(Actor):
    __slots__ = ()

    async def receive(self, message: Any) -> Any:
        return None


class StandInDatabase:
    """Every device exists (one tenant, one profile) and has no attributes. Returns fresh UUID
    objects per row, as asyncpg does."""

    async def fetch(self, query: str, *args: Any) -> list[Any]:
        return []

    async def fetchrow(self, query: str, *args: Any) -> dict[str, Any] | None:
        return {"tenant_id": TENANT_ID, "customer_id": None, "device_profile_id": uuid.UUID(bytes=PROFILE_ID.bytes),
                "name": "bench", "type": "default"}

    async def execute(self, query: str, *args: Any) -> str:
        return "OK"

    async def close(self) -> None:
        pass


class StandInWriter:
    """Accepts every write at once (the commit is what the ingest benchmark measures)."""

    def __init__(self) -> None:
        self.rows = 0

    def submit(self, request: Any) -> asyncio.Future[None]:
        self.rows += len(request.timeseries) + len(request.attributes)
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        future.set_result(None)
        return future

    async def write(self, request: Any) -> None:
        await self.submit(request)


def build(kind: str) -> tuple[ActorHost, Any, Any]:
    """The host, an address maker and a message maker for ``kind``."""
    if kind == "trivial":
        host = ActorHost({"trivial": lambda address, env: Trivial()})
        return host, lambda i: Address("trivial", str(i)), lambda i: i
    from thingsray.actors.device import DeviceActor
    from thingsray.actors.env import ShardEnv
    from thingsray.actors.messages import DEVICE, PostTelemetry
    from thingsray.storage.entities import now_ms
    from thingsray.transports.payloads import TelemetryGroup

    env = ShardEnv(StandInDatabase(), StandInWriter(), shard=0)  # type: ignore[arg-type]
    host = ActorHost({DEVICE: DeviceActor}, env=env)
    env.bind(host)

    def message(i: int) -> PostTelemetry:
        return PostTelemetry(uuid.uuid4(), now_ms(), (TelemetryGroup(None, {"temperature": 21.5}),))

    return host, lambda i: Address(DEVICE, str(uuid.UUID(int=i + 1))), message


async def activate(host: ActorHost, address: Any, message: Any, start: int, stop: int) -> None:
    for first in range(start, stop, CHUNK):
        futures = [await host.enqueue(address(i), message(i), True) for i in range(first, min(first + CHUNK, stop))]
        await asyncio.gather(*futures)  # type: ignore[arg-type]
    for _ in range(5):  # done-callbacks of the last replies
        await asyncio.sleep(0)


def cells_holding_work(host: ActorHost) -> int:
    cells = host._cells.values()  # the bench looks inside on purpose: idle cells must be bare
    return sum(1 for c in cells if c.mailbox is not None or c.worker is not None or c.room is not None)


async def measure(kind: str, n: int, trace: bool) -> dict[str, Any]:
    host, address, message = build(kind)
    await activate(host, address, message, n, n + WARMUP)
    process = psutil.Process()
    gc.collect()
    if trace:
        tracemalloc.start()
    rss_before = process.memory_info().rss
    traced_before = tracemalloc.get_traced_memory()[0] if trace else 0
    started = time.perf_counter()
    await activate(host, address, message, 0, n)
    elapsed = time.perf_counter() - started
    gc.collect()
    loop_timers = len(asyncio.get_running_loop()._scheduled)  # type: ignore[attr-defined]
    result: dict[str, Any] = {"kind": kind, "actors": n, "resident": host.active_count - WARMUP,
                              "busy_cells": cells_holding_work(host), "timers": loop_timers,
                              "wheel_slots": sum(len(b) for b in getattr(host, "_wheel", {}).values())}
    if trace:
        result["tracemalloc_bytes_per_actor"] = (tracemalloc.get_traced_memory()[0] - traced_before) / n
        tracemalloc.stop()
    else:
        result["rss_bytes_per_actor"] = (process.memory_info().rss - rss_before) / n
        result["activate_s"] = elapsed
        result["activations_per_s"] = n / elapsed
    return result


def run_child(kind: str, n: int, trace: bool) -> dict[str, Any]:
    argv = [sys.executable, __file__, "--one", f"{kind}:{n}:{int(trace)}"]
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{kind} x {n} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kinds", default="trivial,device")
    parser.add_argument("--trivial", default="100000,1000000", help="actor counts for the trivial kind")
    parser.add_argument("--device", default="100000,1000000", help="actor counts for the device actor")
    parser.add_argument("--no-tracemalloc", action="store_true", help="RSS and time only")
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        kind, n, trace = args.one.split(":")
        print(json.dumps(asyncio.run(measure(kind, int(n), trace == "1"))))
        return

    print("stand-in database and writer (in memory): this measures actor memory, not the database; traffic: none")
    rows = []
    for kind in args.kinds.split(","):
        for n in (int(x) for x in getattr(args, kind).split(",")):
            row = run_child(kind, n, False)
            if not args.no_tracemalloc:
                traced = run_child(kind, n, True)
                row["tracemalloc_bytes_per_actor"] = traced["tracemalloc_bytes_per_actor"]
            rows.append(row)
            print(f"  {kind} x {n}: done", file=sys.stderr)
    print(f"{'kind':8} {'actors':>9} {'RSS B/actor':>12} {'traced B/actor':>15} {'activate s':>11}"
          f" {'per s':>9} {'busy cells':>11} {'loop timers':>12} {'wheel slots':>12}")
    for r in rows:
        per_actor = r.get("tracemalloc_bytes_per_actor")
        traced = "-" if per_actor is None else f"{per_actor:.0f}"
        print(f"{r['kind']:8} {r['actors']:>9} {r['rss_bytes_per_actor']:>12.0f}"
              f" {traced:>15} {r['activate_s']:>11.2f}"
              f" {r['activations_per_s']:>9.0f} {r['busy_cells']:>11} {r['timers']:>12} {r['wheel_slots']:>12}")
    print(json.dumps(rows))
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
