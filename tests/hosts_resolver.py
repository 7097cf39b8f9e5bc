"""A DNS resolver for crawls in tests: the names of the ``TEST_DNS_HOSTS`` setting (a JSON object,
name to address) resolve to their address, any other name as the system resolves it. Named by
Scrapy's ``TWISTED_DNS_RESOLVER``, as an operator names theirs, so a test can point a
public-looking name at 127.0.0.1 without touching /etc/hosts."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from scrapy.crawler import Crawler
from scrapy.resolver import CachingThreadedResolver
from twisted.internet import defer


class HostsResolver(CachingThreadedResolver):
    def __init__(self, reactor: Any, cache_size: int, timeout: float, hosts: dict[str, str]):
        super().__init__(reactor, cache_size, timeout)
        self.hosts = hosts

    @classmethod
    def from_crawler(cls, crawler: Crawler, reactor: Any) -> HostsResolver:
        settings = crawler.settings
        return cls(reactor, 0, settings.getfloat("DNS_TIMEOUT"), settings.getdict("TEST_DNS_HOSTS"))

    def getHostByName(self, name: str, timeout: Sequence[int] = ()) -> defer.Deferred[str]:
        if name in self.hosts:
            return defer.succeed(self.hosts[name])
        return super().getHostByName(name, timeout)
