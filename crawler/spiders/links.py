"""What a link found on a discovery page is to its outlet: an article (and the pattern it
matched), a further listing page, or why neither.

Plain Python, so that the crawl (:class:`crawler.spiders.outlets.OutletsSpider`) and
``newsarchive try`` judge a link by the same rules, and say the same of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlparse

from crawler.confinement import FETCHED_SCHEMES
from crawler.registry import Outlet, in_domains

ARTICLE = "article"  # matches one of the outlet's article_patterns: fetched as an article
LISTING = "listing"  # matches its listing_pattern: a further listing page
NO_PATTERN = "no_pattern"  # on the outlet's domains, matches none of its patterns
OFFSITE = "offsite"  # on no domain of allowed_domains
NOT_HTTP = "not_http"  # mailto:, javascript:, ... (only http(s) is fetched)


@dataclass(frozen=True)
class LinkVerdict:
    url: str
    kind: str  # ARTICLE, LISTING, NO_PATTERN, OFFSITE or NOT_HTTP
    pattern: str | None = None  # the article pattern or listing_pattern it matched

    @property
    def is_article(self) -> bool:
        return self.kind == ARTICLE

    def why(self) -> str:
        """The verdict as ``newsarchive try`` prints it beside the link."""
        if self.kind == ARTICLE:
            return f"article_patterns {self.pattern}"
        if self.kind == LISTING:
            return f"listing_pattern {self.pattern}"
        if self.kind == OFFSITE:
            return "off-site: on no domain of allowed_domains"
        if self.kind == NOT_HTTP:
            return "not an http(s) link"
        return "matched no article_patterns"


def judge_link(outlet: Outlet, url: str) -> LinkVerdict:
    """The verdict on an absolute ``url`` found on one of ``outlet``'s discovery pages. An
    article pattern wins over the listing pattern, as in the crawl, which fetches the page as an
    article."""
    if not in_domains(url, outlet.allowed_domains):
        return LinkVerdict(url, OFFSITE if urlparse(url).scheme in FETCHED_SCHEMES else NOT_HTTP)
    for pattern in outlet.article_patterns:
        if pattern.search(url):
            return LinkVerdict(url, ARTICLE, pattern.pattern)
    if outlet.listing_pattern is not None and outlet.listing_pattern.search(url):
        return LinkVerdict(url, LISTING, outlet.listing_pattern.pattern)
    return LinkVerdict(url, NO_PATTERN)
