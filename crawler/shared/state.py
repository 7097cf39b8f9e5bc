"""A shared crawl's state in Redis, :class:`RedisCrawl`: plain Python over a redis client and a few
Lua scripts, no Scrapy (the keys it keeps are listed in :mod:`crawler.shared`). Loaded only for a
crawl with ``REDIS_URL``: one process imports no Redis client.

Whoever can write to the Redis database can put anything in it: names and ids read back are
checked before they name a key or reach a row.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry

logger = logging.getLogger(__name__)

PREFIX = "newsarchive"

_T = TypeVar("_T")
_ARTICLE_ID = re.compile(rb"[0-9a-f]{64}")  # sha256 hex (pipelines.article.Article.article_id)

# Every script can run twice: Redis may execute a call whose reply a restart then loses, and the
# client retries it. So taking is idempotent per call (the same token gives the same request),
# and a request is marked seen and queued in one step (a retried call finds it seen: queued).
# requests -> held:<worker>, atomically; the worker is no longer idle
_TAKE = """
if redis.call('HGET', KEYS[4], 'token') == ARGV[2] then return redis.call('HGET', KEYS[4], 'member') end
local taken = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
if #taken == 0 then return false end
redis.call('ZREM', KEYS[1], taken[1])
redis.call('ZADD', KEYS[2], taken[2], taken[1])
redis.call('SREM', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[4], 'token', ARGV[2], 'member', taken[1])
return taken[1]
"""
# seen, and queued if it was not: 1 if queued
_QUEUE_NEW = """
if ARGV[1] ~= '' and redis.call('SADD', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[3])
return 1
"""
# held:<worker> -> requests; its claims released unless its manifest holds them (sealed)
_GIVE_BACK = """
local held = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
for i = 1, #held, 2 do redis.call('ZADD', KEYS[1], held[i + 1], held[i]) end
redis.call('DEL', KEYS[2])
if redis.call('SISMEMBER', KEYS[6], ARGV[1]) == 0 then
  for _, id in ipairs(redis.call('SMEMBERS', KEYS[4])) do
    if redis.call('HGET', KEYS[3], id) == ARGV[1] then redis.call('HDEL', KEYS[3], id) end
  end
end
redis.call('DEL', KEYS[4])
redis.call('SREM', KEYS[5], ARGV[1])
return #held / 2
"""
# done once seeded, nothing queued, every worker idle (sets `done`, so the others see it too)
_FINISHED = """
if redis.call('EXISTS', KEYS[5]) == 1 then return 1 end
if redis.call('EXISTS', KEYS[4]) == 0 or redis.call('ZCARD', KEYS[1]) > 0 then return 0 end
for _, worker in ipairs(redis.call('SMEMBERS', KEYS[2])) do
  if redis.call('SISMEMBER', KEYS[3], worker) == 0 then return 0 end
end
redis.call('SET', KEYS[5], '1')
return 1
"""
# the crawl in progress for this scope, or a new one (ARGV[1]) when there is none, it is done, or
# its id is none of ours (ARGV[3], a Lua pattern: an id names keys, and a glob of them at the end)
_JOIN = """
local current = redis.call('GET', KEYS[1])
local ours = current and string.match(current, ARGV[3])
if ours and redis.call('EXISTS', ARGV[2] .. current .. ':done') == 0 then return {current, 0} end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], 1}
"""

# a lock's key removed by the worker that holds it (its token), not by one whose lock expired
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class PatientRetry(Retry):
    """Retries a Redis call for as long as Redis is away, backing off to ``cap`` seconds, and
    says so in the log (the first failure, then every tenth)."""

    def __init__(self, cap: float = 10.0):
        super().__init__(ExponentialBackoff(cap=cap, base=0.2), retries=-1)

    def call_with_retry(
        self,
        do: Callable[[], _T],
        fail: Callable[..., Any],
        is_retryable: Callable[[Exception], bool] | None = None,
        with_failure_count: bool = False,
    ) -> _T:
        def told(error: Exception, failures: int) -> Any:
            if failures == 1 or failures % 10 == 0:
                logger.warning("Redis unavailable (%s); waiting for it (attempt %d)", error, failures)
            return fail(error, failures) if with_failure_count else fail(error)

        return super().call_with_retry(do, told, is_retryable, with_failure_count=True)


def redis_client(url: str) -> redis.Redis:
    return redis.Redis.from_url(
        str(url),
        retry=PatientRetry(),
        retry_on_error=[RedisConnectionError, RedisTimeoutError],
        socket_connect_timeout=5,
        socket_timeout=30,
        health_check_interval=15,
    )


class RedisCrawl:
    """One worker's view of a shared crawl in Redis; every method is one or a few Redis calls."""

    def __init__(self, client: redis.Redis, crawl_id: str, worker: str, timeout: float = 60.0):
        self.client = client
        self.crawl_id = crawl_id
        self.worker = worker
        self.timeout = timeout
        self._take = client.register_script(_TAKE)
        self._give_back = client.register_script(_GIVE_BACK)
        self._finished = client.register_script(_FINISHED)
        self._queue_new = client.register_script(_QUEUE_NEW)
        self._unlock = client.register_script(_UNLOCK)

    @classmethod
    def join(cls, client: redis.Redis, scope: str, timeout: float = 60.0) -> tuple[RedisCrawl, bool]:
        """The crawl in progress for ``scope`` (or a new one), and whether this worker started it."""
        new = f"{PREFIX}-{secrets.token_hex(4)}"
        crawl_id, started = client.register_script(_JOIN)(
            keys=[f"{PREFIX}:current:{scope}"], args=[new, f"{PREFIX}:", f"^{PREFIX}%-%x%x%x%x%x%x%x%x$"]
        )
        worker = f"{socket.gethostname()}-{secrets.token_hex(3)}"
        crawl = cls(client, crawl_id.decode(), worker, timeout)
        crawl.client.sadd(crawl.key("workers"), worker)
        crawl.beat()
        return crawl, bool(started)

    def key(self, name: str) -> str:
        return f"{PREFIX}:{self.crawl_id}:{name}"

    def beat(self) -> None:
        """This worker is alive for ``timeout`` seconds more (and back among the workers, if it
        had been taken for dead: what it held was given to others, so it may archive a few rows
        twice, which the next publication drops)."""
        self.client.set(self.key(f"alive:{self.worker}"), "1", px=int(self.timeout * 1000))
        if self.client.sadd(self.key("workers"), self.worker) and self.client.exists(self.key("seeded")):
            logger.error(
                "worker %s was taken for dead (no heartbeat for %g s); it goes on", self.worker, self.timeout
            )

    def take(self) -> bytes | None:
        """The next queued request, held by this worker until it leaves."""
        keys = [self.key(k) for k in ("requests", f"held:{self.worker}", "idle", f"took:{self.worker}")]
        return self._take(keys=keys, args=[self.worker, secrets.token_hex(8)])

    def drop(self, data: bytes) -> None:
        """A request this worker took and will not fetch: not to be given back."""
        self.client.zrem(self.key(f"held:{self.worker}"), data)

    def queue_new(self, fingerprint: str | None, score: float, data: bytes) -> bool:
        """Queue a request unless its fingerprint was seen (None: queue it anyway); True if queued."""
        keys = [self.key("seen"), self.key("requests")]
        return bool(self._queue_new(keys=keys, args=[fingerprint or "", score, data]))

    def should_seed(self) -> bool:
        """True for the one worker that is to queue the start points: the first, or the next one
        to join after it died before it had queued them all."""
        if self.client.exists(self.key("seeded")):
            return False
        if self.client.set(self.key("seeder"), self.worker, nx=True):
            return True
        seeder = self.client.get(self.key("seeder"))
        seeder_name = seeder.decode(errors="replace") if seeder is not None else None  # (no UTF-8: dead)
        if seeder_name is not None and not self.client.exists(self.key(f"alive:{seeder_name}")):
            return self.client.set(self.key("seeder"), self.worker, xx=True) is True
        return False

    def seeded(self) -> None:
        self.client.set(self.key("seeded"), "1")

    def claim(self, article_id: str) -> bool:
        """True if this worker is the one to archive the article in this crawl."""
        if self.client.hsetnx(self.key("claims"), article_id, self.worker):
            self.client.sadd(self.key(f"claimed:{self.worker}"), article_id)
            return True
        return self.client.hget(self.key("claims"), article_id) == self.worker.encode()

    def first_with_text(self, text_hash: str, article_id: str) -> str:
        """The article first archived with this text in this crawl (``article_id`` if this one,
        or if what Redis holds is no article id: it would go into the row)."""
        self.client.hsetnx(self.key("texts"), text_hash, article_id)
        first = self.client.hget(self.key("texts"), text_hash) or b""
        if not _ARTICLE_ID.fullmatch(first):
            logger.warning(
                "crawl %s: Redis names no article for a text (%.40r); ignored", self.crawl_id, first
            )
            return article_id
        return first.decode()

    def idle(self) -> None:
        self.client.sadd(self.key("idle"), self.worker)

    def agree(self, name: str, value: bytes, max_bytes: int) -> bytes | None:
        """What the crawl's first worker to ask put under ``name``: ``value``, if this one is
        (None if it is gone: the crawl ended meanwhile). ``ValueError`` when it is longer than
        ``max_bytes``: it is not read."""
        key = self.key(name)
        self.client.set(key, value, nx=True)
        if (size := self.client.strlen(key)) > max_bytes:
            raise ValueError(f"the crawl's {name}: {size} bytes in Redis, over {max_bytes}")
        return self.client.get(key)

    @contextlib.contextmanager
    def lock(self, name: str) -> Iterator[bool]:
        """``lock:<name>``, held by one worker of the crawl at a time: yields True once held. It
        expires after ``timeout`` (a worker that dies holding it holds it no longer), and is
        waited for at most twice that: then yields False, and the caller goes on without."""
        key, token = self.key(f"lock:{name}"), secrets.token_hex(8)
        deadline, pause, held = time.monotonic() + 2 * self.timeout, 0.05, False
        try:
            # (a SET whose reply a Redis restart lost is retried: it finds the key holding our token)
            while not (
                held := bool(self.client.set(key, token, nx=True, px=int(self.timeout * 1000)))
                or self.client.get(key) == token.encode()
            ):
                if time.monotonic() >= deadline:
                    logger.warning("%s held by another worker for %g s; going on", key, 2 * self.timeout)
                    break
                time.sleep(pause)
                pause = min(2 * pause, 1.0)
        except redis.RedisError as exc:  # an error no retry mends (a command its ACL refuses ...)
            logger.warning("%s not taken (%s); going on", key, exc)
        try:
            yield held
        finally:
            if held:
                with contextlib.suppress(redis.RedisError):  # it expires
                    self._unlock(keys=[key], args=[token])

    def reclaim_dead(self) -> int:
        """Put back the requests of workers whose heartbeat stopped; how many."""
        returned = 0
        for member in self.client.smembers(self.key("workers")):
            other = member.decode(errors="replace")  # (no UTF-8: no `alive` key, taken for dead)
            if other != self.worker and not self.client.exists(self.key(f"alive:{other}")):
                count = self.give_back(other)  # (out of `idle` too)
                self.client.srem(self.key("workers"), member)
                if count:
                    logger.warning(
                        "worker %s stopped answering; its %d request(s) go back to the queue", other, count
                    )
                returned += count
        return returned

    def give_back(self, worker: str) -> int:
        keys = [
            self.key("requests"),
            self.key(f"held:{worker}"),
            self.key("claims"),
            self.key(f"claimed:{worker}"),
            self.key("idle"),
            self.key("sealed"),
        ]
        return int(self._give_back(keys=keys, args=[worker]))

    def finished(self) -> bool:
        keys = [self.key(k) for k in ("requests", "workers", "idle", "seeded", "done")]
        return bool(self._finished(keys=keys))

    def leave(self, sealed: bool, scope: str, found: dict[str, int]) -> dict[str, int] | None:
        """This worker is done: what its manifest holds stays claimed (``sealed``); what it held
        and did not finish goes back to the queue, unless the crawl is done. ``found``: article
        pages per outlet, added up over the workers. The last worker of a done crawl removes its
        keys and gets the crawl's totals (None for the others)."""
        for outlet_id, pages in found.items():
            try:
                self.client.hincrby(self.key("found"), outlet_id, pages)
            except redis.ResponseError:  # no number there: no worker of ours wrote it
                self.client.hset(self.key("found"), outlet_id, pages)
        if sealed:
            self.client.sadd(self.key("sealed"), self.worker)
        if self.client.exists(self.key("done")):
            self.client.delete(self.key(f"held:{self.worker}"), self.key(f"claimed:{self.worker}"))
        else:
            self.give_back(self.worker)
        self.client.srem(self.key("workers"), self.worker)
        self.client.srem(self.key("idle"), self.worker)
        self.client.delete(self.key(f"alive:{self.worker}"))
        if not (self.client.exists(self.key("done")) and not self.client.scard(self.key("workers"))):
            return None
        totals = {}
        for outlet_id, pages in self.client.hgetall(self.key("found")).items():
            with contextlib.suppress(ValueError):  # (what no worker wrote: not UTF-8, no number)
                totals[outlet_id.decode()] = int(pages)
        keys = list(self.client.scan_iter(match=self.key("*"), count=1000))
        if keys:
            self.client.delete(*keys)
        current = f"{PREFIX}:current:{scope}"
        if self.client.get(current) == self.crawl_id.encode():
            self.client.delete(current)
        return totals
