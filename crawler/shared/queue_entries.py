"""The shared crawl's queue entries: a request in JSON (:class:`JsonRequests`, never pickle, the
serializer scrapy-redis is given), and the checks an entry taken from the queue passes before it
becomes a request (:func:`request_from_entry`): whoever can write to the Redis database can put
anything in the queue, so no entry is trusted.
"""

from __future__ import annotations

import base64
import functools
import inspect
import json
import re
from typing import Any
from urllib.parse import urlsplit

from scrapy import Request, Spider
from scrapy.settings import BaseSettings
from scrapy.utils.request import request_from_dict

from crawler.registry import in_domains
from crawler.spiders.outlets import SITEMAP_MAX_BYTES


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
_ERRBACKS = ("article_failed", "discovery_failed")
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


def entry_from_request(request: Request, spider: Spider) -> bytes:
    """The queue's entry for ``request``: JSON of ``Request.to_dict``, without the credentials and
    cookies a redirect's request carries (:data:`_OWN_HEADERS`: the next worker's middlewares set
    its own)."""
    fields = request.to_dict(spider=spider)
    fields["headers"] = {k: v for k, v in fields["headers"].items() if k not in _OWN_HEADERS}
    return JsonRequests.dumps(fields)


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
