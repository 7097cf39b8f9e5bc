"""The outlet registry: which outlets exist, where their articles are found, how to read them.

Outlets are data (``crawler/outlets.toml`` plus any ``--outlets-file``), validated on load so a
bad entry fails the run before any request, with one error naming the file, outlet and field.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cssselect import GenericTranslator, SelectorError

from crawler.confinement import FETCHED_SCHEMES
from pipelines.archive.keys import OUTLET  # the id names the outlet's partition and template keys

DEFAULT_REGISTRY = Path(__file__).with_name("outlets.toml")

_LANGUAGE = re.compile(r"[a-z]{2}")  # each pattern is matched whole (fullmatch)
_REGION = re.compile(r"[A-Z]{2}(-[A-Z0-9]{1,3})?")
_OUTLET_KEYS = {
    "id",
    "name",
    "region",
    "languages",
    "timezone",
    "allowed_domains",
    "article_patterns",
    "start",
    "listing_pattern",
    "max_listing_pages",
    "max_article_links",
    "max_links_per_page",
    "max_sitemap_urls",
    "extraction",
    "licence",
    "crawl_policy",
}
_START_KEYS = {"sitemaps", "feeds", "listings"}
_EXTRACTION_KEYS = {"drop", "body"}


MAX_LISTING_PAGES = 5  # listing pages read per start listing, including it (not a depth)
MAX_ARTICLE_LINKS = 20_000  # new article links taken per run (sitemaps, feeds, listings)
MAX_LINKS_PER_PAGE = 5_000  # links read from one listing page or feed, in document order
MAX_SITEMAP_URLS = 50_000  # URLs read from one sitemap: the sitemap protocol's own limit


class RegistryError(ValueError):
    """A registry file that cannot be used; the message names file, outlet and field."""

    def __init__(self, path: Path | str, outlet: str | None, field_name: str | None, problem: str):
        where = str(path)
        if outlet is not None:
            where += f": outlet {outlet!r}"
        if field_name is not None:
            where += f": field {field_name!r}"
        super().__init__(f"{where}: {problem}")


@dataclass(frozen=True)
class ExtractionHints:
    """Per-outlet help for the extractor, the last resort where generic rules fail."""

    drop: tuple[str, ...] = ()  # CSS selectors of blocks removed before extraction
    body: str | None = None  # CSS selector of the article body, if the page has a stable one


@dataclass(frozen=True)
class Outlet:
    id: str
    name: str
    region: str  # ISO 3166-1 alpha-2 or 3166-2 code of the region the outlet covers
    languages: tuple[str, ...]  # ISO 639-1 codes the outlet publishes in
    timezone: str  # IANA zone for dates printed without an offset
    allowed_domains: tuple[str, ...]
    article_patterns: tuple[re.Pattern[str], ...]
    sitemaps: tuple[str, ...] = ()  # sitemaps, sitemap indexes, Google News sitemaps
    feeds: tuple[str, ...] = ()  # RSS 2.0 or Atom
    listings: tuple[str, ...] = ()  # HTML pages that link to articles
    listing_pattern: re.Pattern[str] | None = None  # further listing pages (pagination)
    max_listing_pages: int = MAX_LISTING_PAGES
    max_article_links: int = MAX_ARTICLE_LINKS
    max_links_per_page: int = MAX_LINKS_PER_PAGE
    max_sitemap_urls: int = MAX_SITEMAP_URLS
    extraction: ExtractionHints = field(default_factory=ExtractionHints)
    # what the outlet states of its articles' reuse, and of crawling its site (robots.txt, terms);
    # None: not stated in the registry (the dataset card says so rather than guess)
    licence: str | None = None
    crawl_policy: str | None = None

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_article(self, url: str) -> bool:
        return any(p.search(url) for p in self.article_patterns)

    def owns(self, url: str) -> bool:
        return in_domains(url, self.allowed_domains)


def in_domains(url: str, domains: Iterable[str]) -> bool:
    """An http(s) URL on one of ``domains`` or a subdomain (``file://<domain>/`` is not on it)."""
    parts = urlparse(url)
    return parts.scheme in FETCHED_SCHEMES and host_in_domains(parts.hostname, domains)


def host_in_domains(host: str | None, domains: Iterable[str]) -> bool:
    """``host`` is one of ``domains`` or a subdomain: Scrapy's offsite filter, which looks no further."""
    host = (host or "").lower()
    return bool(host) and any(host == d or host.endswith("." + d) for d in domains)


class Registry(Mapping[str, Outlet]):
    """Outlets by id, in file order."""

    def __init__(self, outlets: Iterable[Outlet]):
        self._outlets = {o.id: o for o in outlets}

    def __getitem__(self, outlet_id: str) -> Outlet:
        return self._outlets[outlet_id]

    def __iter__(self):
        return iter(self._outlets)

    def __len__(self) -> int:
        return len(self._outlets)

    def outlet_for_article(self, url: str) -> Outlet | None:
        for outlet in self._outlets.values():
            if outlet.owns(url) and outlet.is_article(url):
                return outlet
        return None

    def select(self, ids: Iterable[str]) -> Registry:
        ids = list(ids)
        unknown = [i for i in ids if i not in self._outlets]
        if unknown:
            known = ", ".join(self._outlets)
            raise KeyError(f"unknown outlet id(s): {', '.join(unknown)} (known: {known})")
        return Registry(self._outlets[i] for i in ids)


def load_registry(extra_files: Iterable[str | Path] = (), base: Path = DEFAULT_REGISTRY) -> Registry:
    """The shipped registry, then each extra file: an entry with a known id replaces it."""
    outlets: dict[str, Outlet] = {}
    for path in [base, *extra_files]:
        for outlet in read_registry_file(Path(path)):
            outlets[outlet.id] = outlet
    return Registry(outlets.values())


def read_registry_file(path: Path) -> list[Outlet]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RegistryError(path, None, None, "file not found") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RegistryError(path, None, None, f"not valid TOML: {exc}") from None
    unknown = set(data) - {"outlet"}
    if unknown:
        raise RegistryError(
            path, None, None, f"unknown top-level keys {sorted(unknown)}; outlets are [[outlet]] tables"
        )
    entries = data.get("outlet", [])
    if not isinstance(entries, list) or not entries:
        raise RegistryError(path, None, None, "no [[outlet]] entries")
    outlets: list[Outlet] = []
    seen: set[str] = set()
    for index, entry in enumerate(entries):
        outlet = _parse_outlet(path, index, entry)
        if outlet.id in seen:
            raise RegistryError(path, outlet.id, "id", "defined twice in this file")
        seen.add(outlet.id)
        outlets.append(outlet)
    return outlets


def _parse_outlet(path: Path, index: int, entry: dict[str, Any]) -> Outlet:
    label = entry.get("id") if isinstance(entry.get("id"), str) else f"#{index + 1}"
    check = _Checker(path, label, entry)
    check.no_unknown_keys(entry, _OUTLET_KEYS, "")
    outlet_id = check.string("id", pattern=OUTLET, hint="lower-case letters, digits and dashes")
    name = check.string("name")
    region = check.string("region", pattern=_REGION, hint="an ISO 3166 code such as CN or CN-GZ")
    languages = check.strings("languages", pattern=_LANGUAGE, hint="ISO 639-1 codes")
    timezone = check.string("timezone")
    try:
        ZoneInfo(timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise RegistryError(path, label, "timezone", f"unknown IANA time zone {timezone!r}") from None
    domains = check.strings("allowed_domains")
    patterns = tuple(check.regex("article_patterns", p) for p in check.strings("article_patterns"))

    start = check.table("start")
    check.no_unknown_keys(start, _START_KEYS, "start.")
    starts = {key: check.urls(start, key, domains) for key in _START_KEYS}
    if not any(starts.values()):
        raise RegistryError(path, label, "start", "needs at least one of sitemaps, feeds or listings")

    listing_pattern = None
    if "listing_pattern" in entry:
        listing_pattern = check.regex("listing_pattern", check.string("listing_pattern"))
    max_pages = check.whole_number("max_listing_pages", MAX_LISTING_PAGES, 1000)
    max_links = check.whole_number("max_article_links", MAX_ARTICLE_LINKS, 1_000_000)
    max_page_links = check.whole_number("max_links_per_page", MAX_LINKS_PER_PAGE, 1_000_000)
    max_sitemap_urls = check.whole_number("max_sitemap_urls", MAX_SITEMAP_URLS, MAX_SITEMAP_URLS)

    hints = check.table("extraction")
    check.no_unknown_keys(hints, _EXTRACTION_KEYS, "extraction.")
    drop = tuple(check.selector("extraction.drop", s) for s in check.strings_in(hints, "drop"))
    body = hints.get("body")
    if body is not None:
        if not isinstance(body, str):
            raise RegistryError(path, label, "extraction.body", "must be a CSS selector string")
        check.selector("extraction.body", body)
    licence, crawl_policy = check.optional_string("licence"), check.optional_string("crawl_policy")

    return Outlet(
        id=outlet_id,
        name=name,
        region=region,
        languages=languages,
        timezone=timezone,
        allowed_domains=domains,
        article_patterns=patterns,
        sitemaps=starts["sitemaps"],
        feeds=starts["feeds"],
        listings=starts["listings"],
        listing_pattern=listing_pattern,
        max_listing_pages=max_pages,
        max_article_links=max_links,
        max_links_per_page=max_page_links,
        max_sitemap_urls=max_sitemap_urls,
        extraction=ExtractionHints(drop=drop, body=body),
        licence=licence,
        crawl_policy=crawl_policy,
    )


class _Checker:
    """Typed reads of one registry entry, each failure a RegistryError for that field."""

    def __init__(self, path: Path, outlet: str, entry: dict[str, Any]):
        self.path, self.outlet, self.entry = path, outlet, entry

    def fail(self, field_name: str, problem: str) -> RegistryError:
        return RegistryError(self.path, self.outlet, field_name, problem)

    def whole_number(self, key: str, default: int, most: int) -> int:
        value = self.entry.get(key, default)
        if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
            raise self.fail(key, f"must be a whole number, 1 to {most}")
        return value

    def no_unknown_keys(self, table: dict[str, Any], allowed: set[str], prefix: str) -> None:
        unknown = sorted(set(table) - allowed)
        if unknown:
            raise self.fail(prefix + unknown[0], f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def string(self, key: str, pattern: re.Pattern[str] | None = None, hint: str = "") -> str:
        value = self.entry.get(key)
        if value is None:
            raise self.fail(key, "missing")
        if not isinstance(value, str) or not value.strip():
            raise self.fail(key, "must be a non-empty string")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(key, f"{value!r} is not {hint}")
        return value

    def optional_string(self, key: str) -> str | None:
        return self.string(key) if key in self.entry else None

    def strings(self, key: str, pattern: re.Pattern[str] | None = None, hint: str = "") -> tuple[str, ...]:
        if key not in self.entry:
            raise self.fail(key, "missing")
        values = self.strings_in(self.entry, key)
        if not values:
            raise self.fail(key, "must not be empty")
        for value in values:
            if pattern is not None and not pattern.fullmatch(value):
                raise self.fail(key, f"{value!r} is not {hint}")
        return values

    def strings_in(self, table: dict[str, Any], key: str) -> tuple[str, ...]:
        values = table.get(key, [])
        if not isinstance(values, list) or not all(isinstance(v, str) and v for v in values):
            raise self.fail(key, "must be a list of non-empty strings")
        return tuple(values)

    def table(self, key: str) -> dict[str, Any]:
        value = self.entry.get(key, {})
        if not isinstance(value, dict):
            raise self.fail(key, "must be a table")
        return value

    def regex(self, key: str, source: str) -> re.Pattern[str]:
        try:
            return re.compile(source)
        except re.error as exc:
            raise self.fail(key, f"invalid regular expression {source!r}: {exc}") from None

    def selector(self, key: str, css: str) -> str:
        try:
            GenericTranslator().css_to_xpath(css)
        except SelectorError as exc:
            raise self.fail(key, f"invalid CSS selector {css!r}: {exc}") from None
        return css

    def urls(self, start: dict[str, Any], key: str, domains: tuple[str, ...]) -> tuple[str, ...]:
        urls = self.strings_in(start, key)
        for url in urls:
            parts = urlparse(url)
            if parts.scheme not in FETCHED_SCHEMES or not parts.hostname:
                raise self.fail(f"start.{key}", f"{url!r} is not an http(s) URL")
            if not in_domains(url, domains):
                raise self.fail(f"start.{key}", f"{url!r} is outside allowed_domains")
        return urls
