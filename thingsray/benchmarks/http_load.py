"""HTTP load for the rest scenario: ``wrk`` when installed, else an httpx pool; bounded in time."""

from __future__ import annotations

import asyncio
import re
import statistics
import subprocess
import time
from typing import Any

import httpx


def with_wrk(url: str, headers: dict[str, str], connections: int, duration: int) -> dict[str, Any]:
    args = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    for name, value in headers.items():
        args += ["-H", f"{name}: {value}"]
    out = subprocess.run([*args, url], capture_output=True, text=True, timeout=duration + 60, check=True).stdout

    def ms(label: str) -> float:
        found = re.search(rf"^\s*{label}\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        if found is None:
            return 0.0
        return float(found[1]) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[found[2]]

    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    errors = (int(non_2xx[1]) if non_2xx else 0) + (sum(map(int, socket_errors.groups())) if socket_errors else 0)
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    return {"req_per_s": float(rps[1]) if rps else 0.0, "p50_ms": round(ms("50%"), 3),
            "p99_ms": round(ms("99%"), 3), "errors": errors}


async def with_httpx(url: str, headers: dict[str, str], connections: int, duration: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors = 0
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as client:
        end = time.perf_counter() + duration

        async def worker() -> None:
            nonlocal errors
            while (started := time.perf_counter()) < end:
                try:
                    ok = (await client.get(url)).status_code == 200
                except httpx.HTTPError:
                    ok = False
                latencies.append(time.perf_counter() - started)
                errors += not ok

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        elapsed = time.perf_counter() - began
    cuts = statistics.quantiles(latencies, n=100) if len(latencies) > 1 else [0.0] * 99
    return {"req_per_s": round(len(latencies) / elapsed, 1), "p50_ms": round(cuts[49] * 1000, 3),
            "p99_ms": round(cuts[98] * 1000, 3), "errors": errors}


def measure(url: str, headers: dict[str, str], connections: int, duration: int,
            warmup: int = 1) -> tuple[dict[str, Any], str]:
    """A short warm-up, then the measured run; wrk when installed, else the httpx pool.
    Returns the figures and the tool's name."""
    import shutil

    if shutil.which("wrk"):
        with_wrk(url, headers, connections, warmup)
        return with_wrk(url, headers, connections, duration), "wrk"
    asyncio.run(with_httpx(url, headers, connections, warmup))
    return asyncio.run(with_httpx(url, headers, connections, duration)), "httpx"
