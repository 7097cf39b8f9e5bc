"""The crawl's extraction and language stages over pages saved on disk (``newsarchive extract``).

Bytes go in as the crawler would have received them, so charset detection is the crawl's too.
Pages go through the crawl's own worker pool and :class:`pipelines.stages.page.PageAnalyser`: the same
code, on every core, with the same per-page deadline. Results come back in input order.
"""

from __future__ import annotations

import asyncio
from collections import Counter, defaultdict, deque
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pipelines.article import Article
from pipelines.runtime.pool import TaskFailed, WorkerPool
from pipelines.stages.extraction.template import TEMPLATE_PAGES

# what a folder is searched for; files named on the command line are read whatever their name
PAGE_SUFFIXES = frozenset({".html", ".htm", ".shtml", ".xhtml", ".raw"})


def page_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Each file named, and the pages under each folder named (sorted, recursively)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix.lower() in PAGE_SUFFIXES and p.is_file())
        else:
            yield path


def page_item(page: SavedPage) -> Article:
    """A saved page as the item the crawl would have made of it (``OSError`` if unreadable)."""
    return Article(
        url=page.url or page.path.resolve().as_uri(),
        outlet_id="",
        outlet_name="",
        region="",
        outlet_timezone=page.timezone,
        body=page.path.read_bytes(),
        http_status=200,
        content_type="",
        header_charset=None,
        fetched_at=datetime.now(UTC),
        crawl_id="",
        site_template=page.template,
        learn_template=page.learn,
    )


def page_record(path: str, item: Article | None = None, error: str | None = None) -> dict[str, Any]:
    """What ``extract`` prints of a page: the analysed item's fields, or ``error``."""
    if item is None:
        return {"path": path, "error": error}
    return {
        "path": path,
        "title": item.title,
        "text": item.text,
        "language": item.language,
        "language_script": item.language_script,
        "published_at": item.published_at.isoformat() if item.published_at else None,
        "authors": item.authors,
        "editor": item.editor,
        "source": item.source,
    }


def read_urls_file(path: Path) -> dict[Path, str]:
    """``PATH<TAB>URL`` lines (paths relative to the current directory, as on the command line;
    blank lines and ``#`` comments skipped), by resolved path. ``ValueError`` names a bad line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the URLs file {path}: {exc}") from None
    urls = {}
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.startswith("#"):
            continue
        page, tab, url = line.partition("\t")
        if not tab or not urlsplit(url.strip()).hostname:
            raise ValueError(f"{path}:{number}: not PATH<TAB>URL with an http(s) URL: {line[:200]!r}")
        urls[Path(page).resolve()] = url.strip()
    return urls


async def extract_pages(
    paths: Iterable[Path],
    pool: WorkerPool,
    url: str | None = None,
    timezone: str = "UTC",
    urls: Mapping[Path, str] | None = None,
) -> AsyncIterator[dict[str, Any]]:
    """One record per page, in the order of ``paths``; a page that cannot be read or that the
    stages fail on is a record with ``error``, and the others go on.

    With ``urls`` (resolved path to address), the pages of each site (host) of more than
    ``TEMPLATE_PAGES`` pages are learned together: a first pass extracts each page and learns its
    blocks, and a page holding some of its site's template is extracted again without them. A
    page's template is learned from the other pages of its site (:func:`templates_of_the_others`),
    as the crawl extracts a page with what earlier pages taught, never with what the page itself
    did; the first page gets as much as the last.
    """
    if urls is None:
        async for record, _ in _analysed(pool, [SavedPage(path, url, timezone) for path in paths]):
            yield record
        return
    pages = [SavedPage(path, urls.get(path.resolve()), timezone) for path in paths]
    sites = Counter(page.site for page in pages)
    for page in pages:  # the page and TEMPLATE_PAGES others, or no block can be template
        page.learn = page.site is not None and sites[page.site] > TEMPLATE_PAGES
    records, learned = [], []
    async for record, item in _analysed(pool, pages):
        records.append(record)
        learned.append(
            LearnedPage(pages[len(records) - 1].site, item.template_fingerprints, item.title or item.url)
            if item and item.template_fingerprints is not None
            else None
        )
    again = []
    for index, (page, template) in enumerate(zip(pages, templates_of_the_others(learned), strict=True)):
        if template.intersection(learned[index].fingerprints if learned[index] else ()):
            page.template, page.learn = template, False
            again.append(index)
    async for index, (record, _) in _zip(again, _analysed(pool, [pages[i] for i in again])):
        records[index] = record
    for record in records:
        yield record


@dataclass(frozen=True)
class LearnedPage:
    """What a page teaches its site's template: its blocks, and the article they were seen on."""

    site: str | None
    fingerprints: list[int]
    article: str  # its title, or its address: copies of one article are one article


def templates_of_the_others(pages: Sequence[LearnedPage | None]) -> list[frozenset[int]]:
    """Each page's site template learned from the other pages of its site (leave one out): what
    :class:`SiteTemplate` learns from them, without learning it once per page. A block is template
    when it is on :data:`TEMPLATE_PAGES` articles of the site besides the page's own; None (a page
    not learned) gets, and teaches, nothing."""
    articles: dict[str | None, dict[int, Counter[str]]] = defaultdict(lambda: defaultdict(Counter))
    for page in pages:  # the pages of each article each block of each site is on
        if page is not None:
            for fingerprint in set(page.fingerprints):
                articles[page.site][fingerprint][page.article] += 1
    whole = {  # each site's template learned from all its pages
        site: {fingerprint: seen for fingerprint, seen in blocks.items() if len(seen) >= TEMPLATE_PAGES}
        for site, blocks in articles.items()
    }
    templates = []
    for page in pages:
        if page is None:
            templates.append(frozenset())
            continue
        template = whole[page.site]
        taught = {  # the blocks that are template only because the page's own article has them
            fingerprint
            for fingerprint in page.fingerprints
            if (seen := template.get(fingerprint)) and len(seen) == TEMPLATE_PAGES and seen[page.article] == 1
        }
        templates.append(frozenset(template.keys() - taught))
    return templates


async def _zip(first: Iterable[int], second: AsyncIterator[Any]) -> AsyncIterator[tuple[int, Any]]:
    indexes = iter(first)
    async for value in second:
        yield next(indexes), value


@dataclass
class SavedPage:
    """A page on disk, and what its analysis is asked for."""

    path: Path
    url: str | None
    timezone: str
    learn: bool = False
    template: frozenset[int] = frozenset()

    @property
    def site(self) -> str | None:
        return urlsplit(self.url).hostname if self.url else None


async def _analysed(
    pool: WorkerPool, pages: list[SavedPage]
) -> AsyncIterator[tuple[dict[str, Any], Article | None]]:
    """Each page's record and analysed item (None on failure), in order, a few pages ahead."""

    async def analysed(page: SavedPage) -> tuple[dict[str, Any], Article | None]:
        try:
            item = page_item(page)
        except OSError as exc:
            return page_record(str(page.path), error=f"{type(exc).__name__}: {exc.strerror or exc}"), None
        try:
            item = await pool.run(item)
        except TaskFailed as failure:
            detail = failure.detail if failure.reason == "error" else str(failure)
            return page_record(str(page.path), error=detail), None
        return page_record(str(page.path), item), item

    ahead: deque[asyncio.Future[tuple[dict[str, Any], Article | None]]] = deque()  # read, queued
    try:
        for page in pages:
            ahead.append(asyncio.ensure_future(analysed(page)))
            if len(ahead) >= 4 * pool.size:
                yield await ahead.popleft()
        while ahead:
            yield await ahead.popleft()
    finally:
        for task in ahead:
            task.cancel()
