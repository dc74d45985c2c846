"""Per-key rate limits (token buckets) and the exact response cache, in process or in Redis.

The in-process versions need no lock: the gateway touches them only from its event loop. The
Redis versions let replicas share one bucket per key and one cache; a Lua script keeps each
bucket update atomic. Knows nothing of HTTP or deployments: callers build the keys.
"""

from __future__ import annotations

import json
import time
from collections import OrderedDict
from typing import Any, Protocol

__all__ = [
    "MemoryRateLimiter",
    "MemoryResponseCache",
    "RateLimiter",
    "RedisRateLimiter",
    "RedisResponseCache",
    "ResponseCache",
]


class RateLimiter(Protocol):
    """Token buckets by key."""

    async def acquire(self, key: str, rate_per_minute: float, burst: int) -> float:
        """Take one token; returns 0 when granted, else the seconds until one is available."""
        ...


class MemoryRateLimiter:
    """Token buckets held in this process.

    Examples:
        >>> import asyncio
        >>> limiter = MemoryRateLimiter()
        >>> [asyncio.run(limiter.acquire("k", 60, 2)) == 0 for _ in range(3)]
        [True, True, False]
    """

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, monotonic time)

    async def acquire(self, key: str, rate_per_minute: float, burst: int) -> float:
        """Take one token from `key`'s bucket, refilled at `rate_per_minute` up to `burst`."""
        now = time.monotonic()
        rate = rate_per_minute / 60
        tokens, at = self._buckets.get(key, (float(burst), now))
        tokens = min(float(burst), tokens + (now - at) * rate)
        if tokens >= 1:
            self._buckets[key] = (tokens - 1, now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1 - tokens) / rate


# KEYS[1] bucket; ARGV: rate per second, burst, now (seconds). Returns wait in milliseconds (0 = granted).
_BUCKET_LUA = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens >= 1 then tokens = tokens - 1 else wait = math.ceil((1 - tokens) / rate * 1000) end
redis.call('HSET', KEYS[1], 'tokens', tokens, 'at', now)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst / rate * 1000) + 1000)
return wait
"""


class RedisRateLimiter:
    """Token buckets in Redis, shared by every gateway replica using the same server and prefix.

    Args:
        client: A `redis.asyncio.Redis` client.
        prefix: Namespace of the bucket keys.
    """

    def __init__(self, client: Any, prefix: str = "keel:rl:") -> None:
        self._client = client
        self._prefix = prefix
        self._script = client.register_script(_BUCKET_LUA)

    async def acquire(self, key: str, rate_per_minute: float, burst: int) -> float:
        """Take one token from `key`'s shared bucket (the server's clock is not used: replicas' are)."""
        wait_ms = await self._script(keys=[self._prefix + key], args=[rate_per_minute / 60, burst, time.time()])
        return int(wait_ms) / 1000


class ResponseCache(Protocol):
    """Answers of deterministic requests, by request hash."""

    async def get(self, key: str) -> dict[str, Any] | None:
        """The cached answer, or None."""
        ...

    async def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None:
        """Remember an answer for `ttl_s` seconds."""
        ...


class MemoryResponseCache:
    """An LRU of at most `max_entries` answers, each expiring after its TTL.

    Args:
        max_entries: The size bound; the least recently used answer goes first.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, dict[str, Any]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> dict[str, Any] | None:
        """The answer if present and fresh."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry[1]

    async def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None:
        """Store, evicting the least recently used answers beyond the bound."""
        self._entries[key] = (time.monotonic() + ttl_s, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)


class RedisResponseCache:
    """Answers in Redis with a TTL each; an index sorted by time trims the oldest beyond the bound.

    Args:
        client: A `redis.asyncio.Redis` client.
        max_entries: The size bound.
        prefix: Namespace of the keys.
    """

    def __init__(self, client: Any, max_entries: int = 10_000, prefix: str = "keel:cache:") -> None:
        self._client = client
        self.max_entries = max_entries
        self._prefix = prefix
        self._index = prefix + "index"

    async def get(self, key: str) -> dict[str, Any] | None:
        """The answer if present (Redis expires stale ones)."""
        raw = await self._client.get(self._prefix + key)
        return None if raw is None else dict(json.loads(raw))

    async def put(self, key: str, value: dict[str, Any], ttl_s: float) -> None:
        """Store with a TTL and trim the oldest entries beyond the bound."""
        async with self._client.pipeline(transaction=True) as pipe:
            pipe.set(self._prefix + key, json.dumps(value), px=max(1, int(ttl_s * 1000)))
            pipe.zadd(self._index, {key: time.time()})
            pipe.zcard(self._index)
            *_, size = await pipe.execute()
        if int(size) > self.max_entries:
            evicted = await self._client.zpopmin(self._index, int(size) - self.max_entries)
            if evicted:
                await self._client.delete(
                    *[self._prefix + (k.decode() if isinstance(k, bytes) else k) for k, _ in evicted]
                )
