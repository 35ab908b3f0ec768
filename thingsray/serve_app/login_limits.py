"""Failed-login limits per user and per client address, over a sliding minute."""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Protocol

WINDOW_S = 60.0


class LoginLimiter(Protocol):
    async def blocked(self, *keys: str) -> bool:
        """True when any key has used up its failures in the window."""

    async def failed(self, *keys: str) -> None: ...


class MemoryLoginLimiter:
    """One process's view; with several replicas each counts its own, so use Redis to share."""

    def __init__(self, per_minute: int) -> None:
        self.per_minute = per_minute
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, key: str, now: float) -> deque[float]:
        window = self._failures.setdefault(key, deque())
        while window and window[0] <= now - WINDOW_S:
            window.popleft()
        return window

    async def blocked(self, *keys: str) -> bool:
        now = time.monotonic()
        return any(len(self._recent(k, now)) >= self.per_minute for k in keys)

    async def failed(self, *keys: str) -> None:
        now = time.monotonic()
        for key in keys:
            self._recent(key, now).append(now)
        if len(self._failures) > 100_000:
            self._failures = {k: v for k, v in self._failures.items() if self._recent(k, now)}


class RedisLoginLimiter:
    def __init__(self, redis: Any, per_minute: int) -> None:
        self.redis = redis
        self.per_minute = per_minute

    async def blocked(self, *keys: str) -> bool:
        now = time.time()
        pipe = self.redis.pipeline()
        for key in keys:
            pipe.zremrangebyscore(f"thingsray:login:{key}", 0, now - WINDOW_S)
            pipe.zcard(f"thingsray:login:{key}")
        counts = (await pipe.execute())[1::2]
        return any(c >= self.per_minute for c in counts)

    async def failed(self, *keys: str) -> None:
        now = time.time()
        pipe = self.redis.pipeline()
        for key in keys:
            pipe.zadd(f"thingsray:login:{key}", {f"{now}:{id(pipe)}": now})
            pipe.expire(f"thingsray:login:{key}", int(WINDOW_S) + 1)
        await pipe.execute()
