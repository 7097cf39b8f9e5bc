"""The shared crawl's state in Redis (see :mod:`crawler.redis_crawl`): :class:`RedisCrawl`, plain
Python over a redis client and a few Lua scripts, and the scrapy-redis scheduler and queue
adapted to it. Imported only when a crawl has ``REDIS_URL``: one process loads no Redis client.
"""

from __future__ import annotations

import logging
import secrets
import socket
import warnings
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import ScrapyDeprecationWarning
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.queue import PriorityQueue
from scrapy_redis.scheduler import Scheduler

from crawler.redis_crawl import PREFIX, redis_extension

logger = logging.getLogger(__name__)
# scrapy-redis 0.9.1 passes `spider=` to the stats, deprecated by Scrapy 2.19: harmless, not logged
warnings.filterwarnings("ignore", "Passing a 'spider' argument to StatsCollector", ScrapyDeprecationWarning)

_T = TypeVar("_T")

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
# the crawl in progress for this scope, or a new one (ARGV[1]) when there is none or it is done
_JOIN = """
local current = redis.call('GET', KEYS[1])
if current and redis.call('EXISTS', ARGV[2] .. current .. ':done') == 0 then return {current, 0} end
redis.call('SET', KEYS[1], ARGV[1])
return {ARGV[1], 1}
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

    @classmethod
    def join(cls, client: redis.Redis, scope: str, timeout: float = 60.0) -> tuple[RedisCrawl, bool]:
        """The crawl in progress for ``scope`` (or a new one), and whether this worker started it."""
        new = f"{PREFIX}-{secrets.token_hex(4)}"
        crawl_id, started = client.register_script(_JOIN)(
            keys=[f"{PREFIX}:current:{scope}"], args=[new, f"{PREFIX}:"]
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
        if seeder is not None and not self.client.exists(self.key(f"alive:{seeder.decode()}")):
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
        """The article first archived with this text in this crawl (``article_id`` if this one)."""
        self.client.hsetnx(self.key("texts"), text_hash, article_id)
        return self.client.hget(self.key("texts"), text_hash).decode()

    def idle(self) -> None:
        self.client.sadd(self.key("idle"), self.worker)

    def reclaim_dead(self) -> int:
        """Put back the requests of workers whose heartbeat stopped; how many."""
        returned = 0
        for member in self.client.smembers(self.key("workers")):
            other = member.decode()
            if other != self.worker and not self.client.exists(self.key(f"alive:{other}")):
                count = self.give_back(other)  # (out of `idle` too)
                self.client.srem(self.key("workers"), other)
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
            self.client.hincrby(self.key("found"), outlet_id, pages)
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
        totals = {k.decode(): int(v) for k, v in self.client.hgetall(self.key("found")).items()}
        keys = list(self.client.scan_iter(match=self.key("*"), count=1000))
        if keys:
            self.client.delete(*keys)
        current = f"{PREFIX}:current:{scope}"
        if self.client.get(current) == self.crawl_id.encode():
            self.client.delete(current)
        return totals


class HeldQueue(PriorityQueue):
    """scrapy-redis's priority queue, whose pop moves the request into this worker's held set."""

    crawl: RedisCrawl

    def pop(self, timeout: int = 0) -> Request | None:
        data = self.crawl.take()
        return self._decode_request(data) if data else None

    def push_new(self, request: Request, fingerprint: str | None) -> bool:
        return self.crawl.queue_new(fingerprint, -request.priority, self._encode_request(request))


class RedisScheduler(Scheduler):
    """scrapy-redis's scheduler on the crawl's own client, queue and filter keys."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RedisScheduler:
        crawl = redis_extension(crawler).crawl
        scheduler = cls(
            server=crawl.client,
            persist=True,  # the crawl outlives any one worker; the last one cleans up
            queue_key=crawl.key("requests"),
            dupefilter=RFPDupeFilter(crawl.client, crawl.key("seen")),
        )
        scheduler.stats = crawler.stats
        scheduler.crawl = crawl
        return scheduler

    def open(self, spider: Spider) -> None:
        """The queue on the crawl's keys (scrapy-redis's own ``open`` also logs through the
        deprecated ``Spider.log``)."""
        self.spider = spider
        self.queue = HeldQueue(
            server=self.server, spider=spider, key=self.queue_key, serializer=self.serializer
        )
        self.queue.crawl = self.crawl

    def enqueue_request(self, request: Request) -> bool:
        """As scrapy-redis's, with the seen check and the push in one step (see ``_QUEUE_NEW``)."""
        fingerprint = None if request.dont_filter else self.df.request_fingerprint(request)
        if not self.queue.push_new(request, fingerprint):
            self.df.log(request, self.spider)
            return False
        self.stats.inc_value("scheduler/enqueued/redis")
        return True
