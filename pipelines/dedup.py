"""Dedup stage: each article is archived once, across runs.

An article is identified by its canonical URL (canonicalised, hashed): the same article reached
through a sitemap, a feed and a listing, or fetched again by the next cron run, is one row.
Within an outlet, the same text at two URLs (mobile and desktop pages) is one row too.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from urllib.parse import urlsplit

from w3lib.url import canonicalize_url

from crawler.items import Article


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


class Deduplicator:
    """Decides whether an item is new: sets ``canonical_url``, ``article_id`` and ``text_hash``.

    New means: an id the archive does not hold (``archived``), not seen earlier in this run, and
    a text not seen earlier in this run in the same outlet.
    """

    def __init__(self, archived: Callable[[str], bool]):
        self.archived = archived
        self.seen_ids: set[str] = set()
        self.seen_texts: set[tuple[str, str]] = set()

    def duplicate(self, item: Article) -> str | None:
        """Why the item is not new (``duplicate_url``, ``duplicate_text``, ``archived_before``), or None."""
        item.canonical_url = trusted_canonical(item.url, item.canonical_url)
        item.article_id = article_id(item.canonical_url)
        item.text_hash = text_hash(item.text or "")
        # this run's own articles first: they enter the archive as it runs
        if item.article_id in self.seen_ids:
            return "duplicate_url"
        if (item.outlet_id, item.text_hash) in self.seen_texts:
            return "duplicate_text"
        if self.archived(item.article_id):
            return "archived_before"
        self.seen_ids.add(item.article_id)
        self.seen_texts.add((item.outlet_id, item.text_hash))
        return None
