"""The shared crawl's state in Redis (see :mod:`crawler.redis_crawl`): :class:`RedisCrawl`, plain
Python over a redis client and a few Lua scripts, and the scrapy-redis scheduler and queue
adapted to it. Imported only when a crawl has ``REDIS_URL``: one process loads no Redis client.

Whoever can write to the Redis database can put anything in it, so nothing read from it is
trusted: queued requests are JSON (:class:`JsonRequests`, never pickle) and each one taken is
checked (:func:`request_from_entry`) before it becomes a request; names and ids read back are
checked before they name a key or reach a row.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import inspect
import json
import logging
import re
import secrets
import socket
import warnings
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from redis.retry import Retry
from scrapy import Request, Spider
from scrapy.crawler import Crawler
from scrapy.exceptions import ScrapyDeprecationWarning
from scrapy.settings import BaseSettings
from scrapy.statscollectors import StatsCollector
from scrapy.utils.request import request_from_dict
from scrapy_redis.dupefilter import RFPDupeFilter
from scrapy_redis.queue import PriorityQueue
from scrapy_redis.scheduler import Scheduler

from crawler.redis_crawl import PREFIX, redis_extension
from crawler.registry import in_domains
from crawler.spiders.outlets import SITEMAP_MAX_BYTES

logger = logging.getLogger(__name__)
# scrapy-redis 0.9.1 passes `spider=` to the stats, deprecated by Scrapy 2.19: harmless, not logged
warnings.filterwarnings("ignore", "Passing a 'spider' argument to StatsCollector", ScrapyDeprecationWarning)

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


class MalformedRequest(ValueError):
    """A queued entry that is no request this crawl could have queued: dropped, never run,
    counted as ``redis/dropped/<reason>``."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason} ({detail})")
        self.reason = reason


_BYTES = "$b64"  # {"$b64": "..."}: bytes, base64
_PAIRS = "$pairs"  # {"$pairs": [[key, value], ...]}: a dict whose keys are not all strings (headers)


class JsonRequests:
    """The queue's serializer (scrapy-redis calls its ``dumps`` and ``loads``): a request as
    Scrapy's ``Request.to_dict`` gives it, in JSON, bytes (body, headers, any in meta) in base64.
    Loading builds JSON values, bytes and dicts, nothing else: no entry runs code, unlike
    scrapy-redis's default (pickle)."""

    @staticmethod
    def dumps(request: dict[str, Any]) -> bytes:
        return json.dumps(_to_json(request), separators=(",", ":"), allow_nan=False).encode()

    @staticmethod
    def loads(data: bytes) -> Any:
        try:
            return json.loads(data, object_hook=_from_json)
        except (ValueError, TypeError, RecursionError) as exc:  # (UnicodeDecodeError, binascii.Error too)
            raise MalformedRequest("not_json", type(exc).__name__) from None


def _to_json(value: Any) -> Any:
    if isinstance(value, bytes):
        return {_BYTES: base64.b64encode(value).decode("ascii")}
    if isinstance(value, dict):
        tag_like = len(value) == 1 and {_BYTES, _PAIRS} & value.keys()
        if all(isinstance(key, str) for key in value) and not tag_like:
            return {key: _to_json(item) for key, item in value.items()}
        return {_PAIRS: [[_to_json(key), _to_json(item)] for key, item in value.items()]}
    if isinstance(value, (list, tuple)):
        return [_to_json(item) for item in value]
    return value


def _from_json(value: dict[str, Any]) -> Any:
    if len(value) == 1 and _BYTES in value:
        return base64.b64decode(value[_BYTES], validate=True)
    if len(value) == 1 and _PAIRS in value:
        return dict(value[_PAIRS])
    return value


# what Request.to_dict gives, by type; no `_class`: this crawl queues plain requests only, and
# Scrapy's request_from_dict would import and call whatever class it names
_FIELDS: dict[str, type | tuple[type, ...]] = {
    "url": str,
    "callback": (str, type(None)),
    "errback": (str, type(None)),
    "headers": dict,
    "body": bytes,
    "cookies": (dict, list),
    "meta": dict,
    "encoding": str,
    "flags": list,  # (of text: checked below)
    "cb_kwargs": dict,
    "dont_filter": bool,
    "method": str,
    "priority": int,
}
_METHODS = ("GET", "HEAD")  # the crawl only reads
# the meta a queued request of this crawl carries (Scrapy's, the spider's), by type; any other
# key (a proxy, a download slot, a WARC capture...) is for the worker's own middlewares to set
# (a list: the type of its items)
_META: dict[str, type | tuple[type, ...] | list[type | tuple[type, ...]]] = {
    "depth": int,
    "retry_times": int,
    "redirect_times": int,
    "redirect_ttl": int,
    "redirect_urls": [str],
    "redirect_reasons": [(int, str)],
    "is_start_request": bool,
    "download_maxsize": int,
    "handle_httpstatus_list": [int],
}
# set by each worker's middlewares (its credentials, its cookie jar): never queued, never taken
_OWN_HEADERS = (b"Proxy-Authorization", b"Authorization", b"Cookie")
_REFUSED_HEADERS = {b"host", *(name.lower() for name in _OWN_HEADERS)}
_HEADER_BREAK = re.compile(rb"[\r\n\x00]")  # (would end a header early, or start another)
_COOKIE_FIELDS = {"name", "value", "domain", "path"}  # (in a list of cookies: name and value required)
_DEFAULT_PORTS = {"http": 80, "https": 443}
# the callbacks and errbacks of the requests this crawl queues (crawler.spiders.outlets: its start
# points, SitemapSpider's child sitemaps and articles, listings' next pages, article requests);
# any other method of the spider, even one taking a response, is no callback
_CALLBACKS = ("_parse_sitemap", "parse_feed", "parse_listing", "parse_article")
_ERRBACKS = ("article_failed",)
_MAX_PRIORITY = 2**53  # a Redis score (a double) holds it exactly; a request's re-queueing fails far above


def request_from_entry(data: bytes, spider: Spider, max_bytes: int) -> Request:
    """The request a queued entry stands for, if it is one this crawl could have queued: at
    most ``max_bytes``, JSON of :data:`_FIELDS`, a GET or HEAD of an http(s) URL on the
    spider's domains (whatever ``dont_filter`` says) and ports (:func:`_on_outlet_port`), to
    that host (no ``Host`` header), with a callback and arguments of this crawl
    (:func:`_checked_handlers`). Raises :class:`MalformedRequest` otherwise."""
    if len(data) > max_bytes:
        raise MalformedRequest("oversize", f"{len(data)} bytes, over {max_bytes}")
    fields = JsonRequests.loads(data)
    if not isinstance(fields, dict) or not isinstance(fields.get("url"), str):
        raise MalformedRequest("bad_shape", "no request")
    for name, value in fields.items():
        if name not in _FIELDS or not _typed(value, _FIELDS[name]):
            raise MalformedRequest("bad_shape", f"field {name[:40]!r}")
    if (
        fields.get("method", "GET") not in _METHODS
        or fields.get("encoding", "utf-8") != "utf-8"
        or abs(fields.get("priority", 0)) > _MAX_PRIORITY
    ):
        raise MalformedRequest("bad_shape", "method, encoding or priority")
    if (
        not _well_formed_headers(fields.get("headers", {}))
        or not _well_formed_cookies(fields.get("cookies", {}))
        or not all(isinstance(key, str) for key in fields.get("cb_kwargs", {}))
        or not all(isinstance(flag, str) for flag in fields.get("flags", ()))
    ):
        raise MalformedRequest("bad_shape", "headers, cookies, cb_kwargs or flags")
    fields["meta"] = _checked_meta(fields.get("meta", {}), spider.settings)
    url = fields["url"]
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise MalformedRequest("bad_url", "unparsable") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise MalformedRequest("bad_url", f"{url[:120]!r}")
    if not in_domains(url, spider.allowed_domains) or not _on_outlet_port(url, port, spider):
        raise MalformedRequest("offsite", f"{url[:120]!r}")
    _checked_handlers(fields, spider)
    try:
        return request_from_dict(fields, spider=spider)
    except (TypeError, ValueError, LookupError, AttributeError) as exc:
        raise MalformedRequest("bad_shape", type(exc).__name__) from None


def _well_formed_headers(headers: dict[Any, Any]) -> bool:
    """Names and values are sendable (:func:`_header_bytes`; a name may have a list of values);
    no ``Host``, which would have the server answer for another site than the URL's, and none of
    :data:`_OWN_HEADERS`: an entry brings no credentials or cookies of its own."""
    for name, values in headers.items():
        sent = [_header_bytes(text) for text in [name, *(values if isinstance(values, list) else [values])]]
        if None in sent or sent[0].lower() in _REFUSED_HEADERS:
            return False
    return True


def _header_bytes(text: Any) -> bytes | None:
    """The bytes Scrapy sends for a header's name or value (text in UTF-8); None when it is no
    text, cannot be encoded, or holds a CR, LF or NUL."""
    if isinstance(text, str):
        try:
            text = text.encode()
        except UnicodeEncodeError:  # (a lone surrogate)
            return None
    return text if isinstance(text, bytes) and not _HEADER_BREAK.search(text) else None


def _well_formed_cookies(cookies: dict[Any, Any] | list[Any]) -> bool:
    """Cookies as ``Request.to_dict`` writes them: a dict of names to values, or a list of dicts
    with a ``name`` and a ``value`` and maybe a ``domain`` and a ``path``; all text that can go
    into a header (:func:`_header_bytes`)."""
    if isinstance(cookies, dict):
        texts = [*cookies.keys(), *cookies.values()]
    elif all(
        isinstance(cookie, dict) and {"name", "value"} <= cookie.keys() <= _COOKIE_FIELDS
        for cookie in cookies
    ):
        texts = [text for cookie in cookies for text in cookie.values()]
    else:
        return False
    return all(isinstance(text, str) and _header_bytes(text) is not None for text in texts)


def _on_outlet_port(url: str, port: int | None, spider: Spider) -> bool:
    """The URL's port is its scheme's default, or one that a start URL of an outlet on the URL's
    domains names: an entry reaches no other service on an outlet's host."""
    if port is None or port == _DEFAULT_PORTS[urlsplit(url).scheme]:
        return True
    return any(
        urlsplit(start).port == port
        for outlet in getattr(spider, "registry", {}).values()
        if in_domains(url, outlet.allowed_domains)
        for start in (*outlet.sitemaps, *outlet.feeds, *outlet.listings)
    )


def _meta_bounds(settings: BaseSettings) -> dict[str, int]:
    """The highest each count in a queued request's meta may be: what this crawl's middlewares
    could have written. Above (or below zero) it would grant the entry more retries, redirects or
    depth than the crawl's settings allow."""
    return {
        "depth": settings.getint("DEPTH_LIMIT") or _MAX_PRIORITY,  # (0: no limit)
        "retry_times": settings.getint("RETRY_TIMES"),
        "redirect_times": settings.getint("REDIRECT_MAX_TIMES"),
        "redirect_ttl": settings.getint("REDIRECT_MAX_TIMES"),
    }


def _checked_meta(meta: dict[Any, Any], settings: BaseSettings) -> dict[str, Any]:
    """The meta of :data:`_META`, no more: counts within :func:`_meta_bounds`, a download as
    large as a sitemap's at most, and only the 304s of a conditional request let through to the
    spider."""
    kept = {key: value for key, value in meta.items() if key in _META}
    for key, value in kept.items():
        expected = _META[key]
        if isinstance(expected, list):
            well_typed = isinstance(value, list) and all(_typed(item, expected[0]) for item in value)
        else:
            well_typed = _typed(value, expected)
        if not well_typed:
            raise MalformedRequest("bad_shape", f"meta {key}")
    if not 0 < kept.get("download_maxsize", 1) <= SITEMAP_MAX_BYTES or any(
        status != 304 for status in kept.get("handle_httpstatus_list", ())
    ):
        raise MalformedRequest("bad_shape", "meta widens the download")
    for key, highest in _meta_bounds(settings).items():
        if not 0 <= kept.get(key, 0) <= highest:
            raise MalformedRequest("bad_shape", f"meta {key} out of bounds")
    return kept


def _typed(value: Any, expected: type | tuple[type, ...]) -> bool:
    """``isinstance``, except that a bool is no int here."""
    return isinstance(value, expected) and not (isinstance(value, bool) and expected is int)


def _checked_handlers(fields: dict[str, Any], spider: Spider) -> None:
    """A callback of :data:`_CALLBACKS` with the ``cb_kwargs`` this crawl gives it: each a
    parameter it names after the response, of the type it is annotated with, the required
    ones all there, an ``outlet_id`` of the spider's registry and a ``start`` one of that
    outlet's listings; an errback of :data:`_ERRBACKS` or none. Anything else would raise in
    the spider, or widen its bounds (a ``start`` of its own gets ``max_listing_pages`` more)."""
    callback, errback = fields.get("callback"), fields.get("errback")
    if callback not in _CALLBACKS or errback not in (None, *_ERRBACKS):
        raise MalformedRequest(
            "bad_callback", f"callback {str(callback)[:40]!r}, errback {str(errback)[:40]!r}"
        )
    cb_kwargs = fields.get("cb_kwargs", {})
    signature = _signature(type(spider), callback)
    named = {
        name: parameter
        for name, parameter in list(signature.parameters.items())[2:]  # (after self, response)
        if parameter.kind in (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    }
    try:
        signature.bind(spider, None, **cb_kwargs)  # (the required ones there, no name twice)
        binds = cb_kwargs.keys() <= named.keys() and all(
            isinstance(named[name].annotation, type) and _typed(value, named[name].annotation)
            for name, value in cb_kwargs.items()
        )
    except TypeError:
        binds = False
    if not binds:
        raise MalformedRequest("bad_callback", f"{callback}: cb_kwargs of other names or types")
    outlet = getattr(spider, "registry", {}).get(cb_kwargs["outlet_id"]) if "outlet_id" in cb_kwargs else None
    if ("outlet_id" in cb_kwargs and outlet is None) or (
        "start" in cb_kwargs and (outlet is None or cb_kwargs["start"] not in outlet.listings)
    ):
        raise MalformedRequest("bad_callback", f"{callback}: no outlet or listing of this crawl")


@functools.lru_cache(maxsize=16)
def _signature(spider_class: type[Spider], name: str) -> inspect.Signature:
    """The method's signature, its annotations evaluated (the spider's module postpones them)."""
    return inspect.signature(getattr(spider_class, name), eval_str=True)


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


class HeldQueue(PriorityQueue):
    """scrapy-redis's priority queue, in JSON, whose pop moves the request into this worker's
    held set and checks it: an entry that is no request of this crawl is dropped, counted
    (``redis/dropped/<reason>``) and the next one taken."""

    def __init__(self, crawl: RedisCrawl, spider: Spider, stats: StatsCollector, max_bytes: int):
        super().__init__(crawl.client, spider, crawl.key("requests"), serializer=JsonRequests)
        self.crawl = crawl
        self.stats = stats
        self.max_bytes = max_bytes

    def pop(self, timeout: int = 0) -> Request | None:
        while (data := self.crawl.take()) is not None:
            try:
                return request_from_entry(data, self.spider, self.max_bytes)
            except MalformedRequest as malformed:
                self.crawl.drop(data)
                self.stats.inc_value(f"redis/dropped/{malformed.reason}")
                logger.warning("dropped a queued entry that is no request of this crawl: %s", malformed)
        return None

    def push_new(self, request: Request, fingerprint: str | None) -> bool:
        return self.crawl.queue_new(fingerprint, -request.priority, self._encode_request(request))

    def _encode_request(self, request: Request) -> bytes:
        """scrapy-redis's, without the credentials and cookies a redirect's request carries
        (:data:`_OWN_HEADERS`: the next worker's middlewares set its own)."""
        fields = request.to_dict(spider=self.spider)
        fields["headers"] = {k: v for k, v in fields["headers"].items() if k not in _OWN_HEADERS}
        return self.serializer.dumps(fields)


class RedisScheduler(Scheduler):
    """scrapy-redis's scheduler on the crawl's own client, queue and filter keys, its requests in
    JSON. ``REDIS_REQUEST_MAX_BYTES``: a queued entry larger than this is dropped unread."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RedisScheduler:
        crawl = redis_extension(crawler).crawl
        scheduler = cls(
            server=crawl.client,
            persist=True,  # the crawl outlives any one worker; the last one cleans up
            queue_key=crawl.key("requests"),
            dupefilter=RFPDupeFilter(crawl.client, crawl.key("seen")),
            serializer=JsonRequests,
        )
        scheduler.stats = crawler.stats
        scheduler.crawl = crawl
        scheduler.max_bytes = crawler.settings.getint("REDIS_REQUEST_MAX_BYTES")
        return scheduler

    def open(self, spider: Spider) -> None:
        """The queue on the crawl's keys (scrapy-redis's own ``open`` also logs through the
        deprecated ``Spider.log``)."""
        self.spider = spider
        self.queue = HeldQueue(self.crawl, spider, self.stats, self.max_bytes)

    def enqueue_request(self, request: Request) -> bool:
        """As scrapy-redis's, with the seen check and the push in one step (see ``_QUEUE_NEW``)."""
        fingerprint = None if request.dont_filter else self.df.request_fingerprint(request)
        if not self.queue.push_new(request, fingerprint):
            self.df.log(request, self.spider)
            return False
        self.stats.inc_value("scheduler/enqueued/redis")
        return True
