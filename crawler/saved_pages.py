"""The crawl's extraction and language stages over pages saved on disk (``newsarchive extract``).

Bytes go in as the crawler would have received them, so charset detection is the crawl's too.
Pages go through the crawl's own worker pool and :class:`pipelines.page.PageAnalyser`: the same
code, on every core, with the same per-page deadline. Results come back in input order.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from crawler.items import Article
from pipelines.pool import TaskFailed, WorkerPool

# what a folder is searched for; files named on the command line are read whatever their name
PAGE_SUFFIXES = frozenset({".html", ".htm", ".shtml", ".xhtml", ".raw"})


def page_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Each file named, and the pages under each folder named (sorted, recursively)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix.lower() in PAGE_SUFFIXES and p.is_file())
        else:
            yield path


def saved_page(path: Path, url: str | None, timezone: str) -> Article:
    """A saved page as the item the crawl would have made of it (``OSError`` if unreadable)."""
    return Article(
        url=url or path.resolve().as_uri(),
        outlet_id="",
        outlet_name="",
        region="",
        outlet_timezone=timezone,
        body=path.read_bytes(),
        http_status=200,
        content_type="",
        header_charset=None,
        fetched_at=datetime.now(UTC),
        crawl_id="",
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


async def extract_pages(
    paths: Iterable[Path], pool: WorkerPool, url: str | None = None, timezone: str = "UTC"
) -> AsyncIterator[dict[str, Any]]:
    """One record per page, in the order of ``paths``; a page that cannot be read or that the
    stages fail on is a record with ``error``, and the others go on."""

    async def record(path: Path) -> dict[str, Any]:
        try:
            item = saved_page(path, url, timezone)
        except OSError as exc:
            return page_record(str(path), error=f"{type(exc).__name__}: {exc.strerror or exc}")
        try:
            return page_record(str(path), await pool.run(item))
        except TaskFailed as failure:
            return page_record(str(path), error=failure.detail if failure.reason == "error" else str(failure))

    ahead: deque[asyncio.Future[dict[str, Any]]] = deque()  # pages read and queued for the workers
    try:
        for path in paths:
            ahead.append(asyncio.ensure_future(record(path)))
            if len(ahead) >= 4 * pool.size:
                yield await ahead.popleft()
        while ahead:
            yield await ahead.popleft()
    finally:
        for task in ahead:
            task.cancel()
