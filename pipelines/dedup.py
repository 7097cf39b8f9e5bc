"""Dedup stage: each article is archived once, across runs.

An article is identified by its canonical URL (canonicalised, hashed): the same article reached
through a sitemap, a feed and a listing, or fetched again by the next cron run, is one row.
Within an outlet, the same text at two URLs (mobile and desktop pages) is one row too.
"""

from __future__ import annotations

import hashlib
import logging
from urllib.parse import urlsplit

from scrapy.crawler import Crawler
from scrapy.exceptions import DropItem
from scrapy.statscollectors import StatsCollector
from w3lib.url import canonicalize_url

from crawler.items import Article
from pipelines.publish import Spool, archived_ids, spool_from_settings
from pipelines.storage import Store, StoreError, store_from_settings

logger = logging.getLogger(__name__)


def article_id(canonical_url: str) -> str:
    return hashlib.sha256(canonicalize_url(canonical_url).encode("utf-8")).hexdigest()


def text_hash(text: str) -> str:
    """sha256 of the text with white space folded: the same article text, the same hash."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def trusted_canonical(url: str, canonical: str | None) -> str:
    """A page's canonical URL, unless it points off-site or at a site's home page."""
    if not canonical:
        return url
    claimed, fetched = urlsplit(canonical), urlsplit(url)
    if claimed.hostname != fetched.hostname or claimed.path in ("", "/"):
        return url
    return canonical


class DedupPipeline:
    """Sets ``article_id`` and ``text_hash``; drops articles already archived or already seen.

    Reads the ids already in the archive (setting ``ARCHIVE_URI``) and in the spool when the
    spider opens. If the store cannot be read, the crawl goes on against the spool alone and
    publication drops what turns out to be archived already.
    Counts: ``dedup/archived_before``, ``dedup/duplicate_url``, ``dedup/duplicate_text``.
    """

    def __init__(self, stats: StatsCollector, store: Store, spool: Spool):
        self.stats = stats
        self.store = store
        self.spool = spool
        self.seen_ids: set[str] = set()
        self.seen_texts: set[tuple[str, str]] = set()
        self.archived_ids: set[str] = set()

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> DedupPipeline:
        store = store_from_settings(crawler.settings)
        return cls(crawler.stats, store, spool_from_settings(crawler.settings, store))

    def open_spider(self) -> None:
        self.archived_ids = self.spool.article_ids()
        try:
            self.archived_ids.update(archived_ids(self.store))
        except StoreError as exc:
            logger.warning("archive not readable, deduplicating against the spool only: %s", exc)

    def process_item(self, item: Article) -> Article:
        if not isinstance(item, Article):
            return item
        item.canonical_url = trusted_canonical(item.url, item.canonical_url)
        item.article_id = article_id(item.canonical_url)
        item.text_hash = text_hash(item.text or "")
        if item.article_id in self.archived_ids:
            self._drop("archived_before", item)
        if item.article_id in self.seen_ids:
            self._drop("duplicate_url", item)
        if (item.outlet_id, item.text_hash) in self.seen_texts:
            self._drop("duplicate_text", item)
        self.seen_ids.add(item.article_id)
        self.seen_texts.add((item.outlet_id, item.text_hash))
        return item

    def _drop(self, reason: str, item: Article) -> None:
        self.stats.inc_value(f"dedup/{reason}")
        self.stats.inc_value(f"outlet/{item.outlet_id}/dropped/{reason}")
        raise DropItem(f"{reason}: {item.url}")
