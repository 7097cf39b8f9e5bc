"""Fetching policy middlewares."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.request import getproxies

from scrapy import Request, signals
from scrapy.crawler import Crawler
from scrapy.downloadermiddlewares.useragent import UserAgentMiddleware
from scrapy.exceptions import CannotResolveHostError, IgnoreRequest
from scrapy.http import Response
from scrapy.utils.datatypes import LocalCache
from twisted.internet.error import DNSLookupError
from twisted.internet.interfaces import IAddress, IHostnameResolver, IHostResolution, IResolutionReceiver
from zope.interface import implementer

from crawler.confinement import AddressPolicy, host_of
from crawler.extensions import ArchiveExtension, archive_extension
from pipelines.archive.index import ArchiveIndex

logger = logging.getLogger(__name__)


class ContactUserAgentMiddleware(UserAgentMiddleware):
    """Scrapy's User-Agent middleware, with ``{contact_url}`` in ``USER_AGENT`` filled from
    the ``CONTACT_URL`` setting, so operators change one setting to say who they are."""

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ContactUserAgentMiddleware:
        settings = crawler.settings
        return cls(settings["USER_AGENT"].format(contact_url=settings["CONTACT_URL"]))


class KnownArticles:
    """Which article URLs to fetch, given what the archive holds and what earlier fetches found;
    counts what it turns away.

    The archive's index (:mod:`pipelines.archive.index`, read once when the crawl opens) knows every URL
    that led to an archived row, so a run on a machine with no state of its own fetches only
    what is new. ``REFETCH_AFTER_DAYS`` (None: never; 0: every run) lets through the known
    articles last fetched longer ago than that: dedup then archives a changed text as a new
    version and notes an unchanged one.

    It also remembers the article pages whose last fetch archived no row (a visit, with its
    outcome): a ``failed`` one is fetched again next run; one that was ``not_article``,
    ``noarchive`` or ``refused`` once ``REVISIT_AFTER_DAYS`` (30) have passed, or
    ``REFETCH_AFTER_DAYS`` if fewer (``--refetch-after 0`` fetches every page again). Counts
    ``discovery/known`` and ``discovery/revisit_later`` (with ``outlet/<id>/...``, the pages not
    fetched), ``discovery/refetch``, ``discovery/revisit`` and ``discovery/revisit_failed`` (the
    pages fetched again). Used by :class:`KnownArticlesMiddleware` and by the spider's frontier.
    """

    HELD_BACK = ("known", "revisit_later")  # what _verdict says of a page not to be fetched now

    def __init__(self, crawler: Crawler, index: ArchiveIndex):
        self.crawler = crawler
        self.stats = crawler.stats
        self.index = index
        self.refetch_after = _days(crawler.settings.get("REFETCH_AFTER_DAYS"))
        revisit_after = _days(crawler.settings.get("REVISIT_AFTER_DAYS"))
        self.revisit_after = min(
            (d for d in (revisit_after, self.refetch_after) if d is not None), default=None
        )

    def wanted(self, url: str) -> bool:
        verdict = self._verdict(url)
        if verdict in self.HELD_BACK:
            self._count(url, verdict)
            return False
        if verdict is not None:
            self.stats.inc_value(f"discovery/{verdict}")
        return True

    def held_back(self, url: str) -> bool:
        """Not to be fetched now (nothing counted)."""
        return self._verdict(url) in self.HELD_BACK

    def _verdict(self, url: str) -> str | None:
        """``known`` or ``revisit_later`` for a page not to fetch now; ``refetch``, ``revisit``
        or ``revisit_failed`` for one fetched again; None for a page never fetched."""
        held = self.index.known_url(url)
        if held is not None:
            return "refetch" if _due(held.last_fetched, self.refetch_after) else "known"
        visit = self.index.visit(url)
        if visit is None:
            return None
        if visit.outcome == "failed":
            return "revisit_failed"
        return "revisit" if _due(visit.last_fetched, self.revisit_after) else "revisit_later"

    def _count(self, url: str, what: str) -> None:
        self.stats.inc_value(f"discovery/{what}")
        outlet = self.crawler.spider.registry.outlet_for_article(url)
        if outlet is not None:
            self.stats.inc_value(f"outlet/{outlet.id}/{what}")


def _days(setting: float | str | None) -> timedelta | None:
    return None if setting is None else timedelta(days=float(setting))


def _due(last_fetched: datetime | None, after: timedelta | None) -> bool:
    """Fetched longer ago than ``after`` (None: never due), or at a time not known."""
    if after is None:
        return False
    return last_fetched is None or datetime.now(UTC) - last_fetched > after


class KnownArticlesMiddleware:
    """Drops requests for pages whose article the archive holds (:class:`KnownArticles`), before
    they are scheduled. Sitemaps, feeds and listing pages are never in the index."""

    def __init__(self, crawler: Crawler, archive: ArchiveExtension):
        self.crawler = crawler
        self.archive = archive
        self._known: KnownArticles | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> KnownArticlesMiddleware:
        return cls(crawler, archive_extension(crawler))

    async def process_spider_output(
        self, response: Response, result: AsyncIterator[Any]
    ) -> AsyncIterator[Any]:
        if self._known is None:
            self._known = KnownArticles(self.crawler, (await self.archive.opened()).index)
        async for output in result:
            if isinstance(output, Request) and not self._known.wanted(output.url):
                continue
            yield output


class RetryAfterMiddleware:
    """Honours ``Retry-After`` on 429 and 503: the site's downloader slot waits that long (capped
    at ``RETRY_AFTER_MAX``) between requests for the rest of the crawl, before Scrapy's
    RetryMiddleware sends the retry. Counts ``retry_after/honoured`` and ``retry_after/capped``,
    and keeps the longest wait asked for in ``retry_after/max_seconds``; logs once per site."""

    def __init__(self, crawler: Crawler, cap: float):
        self.crawler = crawler
        self.stats = crawler.stats
        self.cap = cap
        self._told: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> RetryAfterMiddleware:
        return cls(crawler, crawler.settings.getfloat("RETRY_AFTER_MAX"))

    def process_response(self, request: Request, response: Response) -> Response:
        if response.status not in (429, 503):
            return response
        seconds = _retry_after(response.headers.get("Retry-After", b"").decode("latin-1"))
        if seconds is None:
            return response
        if seconds > self.cap:
            self.stats.inc_value("retry_after/capped")
            seconds = self.cap
        downloader = self.crawler.engine.downloader
        key = downloader.get_slot_key(request)
        slot = downloader.slots.get(key)
        if slot is not None and slot.delay < seconds:
            slot.delay = seconds
        self.stats.inc_value("retry_after/honoured")
        self.stats.max_value("retry_after/max_seconds", seconds)
        if key not in self._told:
            self._told.add(key)
            logger.info(
                "%s asks us to wait (%s, Retry-After): %g s between its requests",
                key,
                response.status,
                seconds,
            )
        return response


def _retry_after(value: str) -> float | None:
    """Seconds from a Retry-After value: a number of seconds or an HTTP date; None if neither."""
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(UTC)).total_seconds()) if when.tzinfo else None


class Confined(IgnoreRequest):
    """A request the crawl must not send: ``reason`` is ``scheme`` or ``internal_address``."""

    def __init__(self, reason: str, url: str):
        super().__init__(f"not fetched ({reason}): {url}")
        self.reason = reason


class ConfinementMiddleware:
    """Downloader middleware keeping the crawl to http(s) on public addresses
    (:class:`crawler.confinement.AddressPolicy`), wherever the URL came from: a link, a sitemap,
    a redirect, robots.txt.

    A URL's scheme and literal host are checked before it is sent; the addresses its host
    resolves to are checked as the connection is made, by :class:`ConfinedResolver`, which this
    installs over the reactor's resolver (whichever ``TWISTED_DNS_RESOLVER`` names) while the
    crawl runs. Each refusal raises :class:`Confined` (the spider counts an article's as
    ``refused/<reason>``) and is counted in ``confinement/<reason>``. It sits just above
    RetryMiddleware, so a refused address is not retried.
    """

    def __init__(self, crawler: Crawler, policy: AddressPolicy):
        self.crawler = crawler
        self.stats = crawler.stats
        self.policy = policy
        self.resolver: ConfinedResolver | None = None
        self._told: set[tuple[str, str]] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ConfinementMiddleware:
        outlets = getattr(crawler.spider, "registry", {}).values()
        transports = [crawler.settings.get("MIRROR_URL") or ""]
        if crawler.settings.getbool("HTTPPROXY_ENABLED"):
            transports += getproxies().values()
        policy = AddressPolicy(
            (url for outlet in outlets for url in (*outlet.sitemaps, *outlet.feeds, *outlet.listings)),
            transports,
        )
        middleware = cls(crawler, policy)
        crawler.signals.connect(middleware._install_resolver, signal=signals.engine_started)
        crawler.signals.connect(middleware._remove_resolver, signal=signals.engine_stopped)
        return middleware

    def process_request(self, request: Request) -> None:
        reason = self.policy.refusal(request.url)
        if reason is not None:
            self._refuse(request, reason)

    def process_exception(self, request: Request, exception: Exception) -> None:
        """A host whose every address the resolver refused fails as a DNS lookup: said as it is."""
        if (
            isinstance(exception, (DNSLookupError, CannotResolveHostError))
            and self.resolver is not None
            and host_of(request.url) in self.resolver.refused
        ):
            self._refuse(request, "internal_address")

    def _refuse(self, request: Request, reason: str) -> None:
        self.stats.inc_value(f"confinement/{reason}")
        host = host_of(request.url)
        if (reason, host) not in self._told:
            self._told.add((reason, host))
            logger.info("not fetched (%s): %s", reason, request.url)
        raise Confined(reason, request.url)

    def _install_resolver(self) -> None:
        from twisted.internet import reactor

        self.resolver = ConfinedResolver(reactor.nameResolver, reactor.resolver, self.policy)
        reactor.installNameResolver(self.resolver)

    def _remove_resolver(self) -> None:
        from twisted.internet import reactor

        if self.resolver is not None and reactor.nameResolver is self.resolver:
            reactor.installNameResolver(self.resolver.inner)
            reactor.resolver = self.resolver.inner_simple


@implementer(IHostnameResolver)
class ConfinedResolver:
    """The reactor's name resolver, less the addresses the policy refuses for a name: a name of
    a public outlet pointed at 127.0.0.1 resolves to nothing. Every connection the crawl makes
    asks it, address literals included. ``refused`` keeps the names refused lately."""

    def __init__(self, inner: IHostnameResolver, inner_simple: Any, policy: AddressPolicy):
        self.inner = inner
        self.inner_simple = inner_simple  # the reactor's resolver as it was, put back at the end
        self.policy = policy
        self.refused: LocalCache[str, str] = LocalCache(10_000)

    def resolveHostName(
        self,
        resolutionReceiver: IResolutionReceiver,
        hostName: str,
        portNumber: int = 0,
        addressTypes: Sequence[type[IAddress]] | None = None,
        transportSemantics: str = "TCP",
    ) -> IHostResolution:
        receiver = _AllowedAddresses(resolutionReceiver, hostName, self)
        return self.inner.resolveHostName(receiver, hostName, portNumber, addressTypes, transportSemantics)


@implementer(IResolutionReceiver)
class _AllowedAddresses:
    """Passes on the addresses the policy allows; notes a name none of whose addresses it did."""

    def __init__(self, receiver: IResolutionReceiver, host: str, resolver: ConfinedResolver):
        self.receiver, self.host, self.resolver = receiver, host, resolver
        self.refused: str | None = None
        self.allowed = 0

    def resolutionBegan(self, resolution: IHostResolution) -> None:
        self.receiver.resolutionBegan(resolution)

    def addressResolved(self, address: IAddress) -> None:
        ip = ipaddress.ip_address(address.host.split("%")[0])
        if self.resolver.policy.may_connect(self.host, ip):
            self.allowed += 1
            self.receiver.addressResolved(address)
        else:
            self.refused = str(ip)

    def resolutionComplete(self) -> None:
        if self.refused is not None and not self.allowed:
            self.resolver.refused[self.host.lower().rstrip(".")] = self.refused
        self.receiver.resolutionComplete()
