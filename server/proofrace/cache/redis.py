"""The shared store: one Redis server for several dispatchers.

Layout, under a prefix (`proofrace:` by default):
- `v:<key>`: the entry, as JSON;
- `lru`: a sorted set of keys by last use, for the size bound;
- `p:<prover>\\0<version>`: the keys whose race included that prover at that version, and
  `versions:<prover>`: the versions seen, for invalidation.
Every write is one Lua script, so it is atomic against the other dispatchers: the entry, its
index entries, and the eviction of the least recently used beyond `max_entries`.

Redis is used as a cache, not a database: if it restarts empty, races simply run again.
"""

from __future__ import annotations

import time
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from proofrace.cache.entry import Entry
from proofrace.cache.store import Stored, StoreError

TIMEOUT_S = 2.0

# Removes one entry and every index entry pointing at it.
_DROP = """
local prefix = ARGV[1]
local function drop(k)
  local old = redis.call('GET', prefix .. 'v:' .. k)
  if old then
    for _, p in ipairs(cjson.decode(old)['provers']) do
      redis.call('SREM', prefix .. 'p:' .. p[1] .. '\\0' .. p[2], k)
    end
    redis.call('DEL', prefix .. 'v:' .. k)
  end
  redis.call('ZREM', prefix .. 'lru', k)
end
"""
_PUT = (
    _DROP
    + """
local key, entry, now, max = ARGV[2], ARGV[3], tonumber(ARGV[4]), tonumber(ARGV[5])
drop(key)
redis.call('SET', prefix .. 'v:' .. key, entry)
redis.call('ZADD', prefix .. 'lru', now, key)
for _, p in ipairs(cjson.decode(entry)['provers']) do
  redis.call('SADD', prefix .. 'p:' .. p[1] .. '\\0' .. p[2], key)
  redis.call('SADD', prefix .. 'versions:' .. p[1], p[2])
end
local size = redis.call('ZCARD', prefix .. 'lru')
local evicted = 0
while size > max do
  drop(redis.call('ZRANGE', prefix .. 'lru', 0, 0)[1])
  size = size - 1
  evicted = evicted + 1
end
return {size, evicted}
"""
)
_INVALIDATE = (
    _DROP
    + """
local prover, version, every = ARGV[2], ARGV[3], ARGV[4] == '1'
local versions = {version}
if every then versions = redis.call('SMEMBERS', prefix .. 'versions:' .. prover) end
local removed = 0
for _, v in ipairs(versions) do
  local index = prefix .. 'p:' .. prover .. '\\0' .. v
  for _, k in ipairs(redis.call('SMEMBERS', index)) do
    if redis.call('EXISTS', prefix .. 'v:' .. k) == 1 then
      drop(k)
      removed = removed + 1
    end
  end
  redis.call('DEL', index)
  redis.call('SREM', prefix .. 'versions:' .. prover, v)
end
return removed
"""
)


class RedisStore:
    name = "redis"

    def __init__(self, url: str, max_entries: int, prefix: str = "proofrace:") -> None:
        self.url = url
        self.max_entries = max_entries
        self.prefix = prefix
        self._redis: Any = aioredis.from_url(
            url, socket_timeout=TIMEOUT_S, socket_connect_timeout=TIMEOUT_S
        )
        self._put = self._redis.register_script(_PUT)
        self._invalidate = self._redis.register_script(_INVALIDATE)

    @classmethod
    async def open(cls, url: str, max_entries: int, prefix: str = "proofrace:") -> RedisStore:
        store = cls(url, max_entries, prefix)
        try:
            await store._redis.ping()
        except (RedisError, OSError) as error:
            await store.close()
            raise StoreError(f"redis {url}: {error}") from error
        return store

    def may_hold(self, key: str) -> bool:
        return True  # shared: only Redis knows; a lookup is one round trip anyway

    async def get(self, key: str) -> Entry | None:
        try:
            async with self._redis.pipeline(transaction=False) as pipe:
                pipe.get(self.prefix + "v:" + key)
                pipe.zadd(self.prefix + "lru", {key: _now_us()}, xx=True)
                text, _ = await pipe.execute()
        except (RedisError, OSError) as error:
            raise StoreError(f"redis {self.url}: {error}") from error
        return None if text is None else Entry.from_json(key, text)

    async def put(self, entry: Entry) -> Stored:
        args: list[str | int] = [
            self.prefix,
            entry.key,
            entry.to_json(),
            _now_us(),
            self.max_entries,
        ]
        try:
            size, evicted = await self._put(args=args)
        except (RedisError, OSError) as error:
            raise StoreError(f"redis {self.url}: {error}") from error
        return Stored(int(size), int(evicted))

    async def invalidate(self, prover: str, version: str | None) -> int:
        args = [self.prefix, prover, version or "", "1" if version is None else "0"]
        try:
            return int(await self._invalidate(args=args))
        except (RedisError, OSError) as error:
            raise StoreError(f"redis {self.url}: {error}") from error

    async def size(self) -> int:
        try:
            return int(await self._redis.zcard(self.prefix + "lru"))
        except (RedisError, OSError) as error:
            raise StoreError(f"redis {self.url}: {error}") from error

    async def close(self) -> None:
        await self._redis.aclose()


def _now_us() -> int:
    return time.time_ns() // 1000
