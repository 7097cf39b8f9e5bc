"""The crawl's extraction and language stages over pages saved on disk (``newsarchive extract``).

Bytes go in as the crawler would have received them, so charset detection is the crawl's too.
Pages are spread over worker processes (extraction is CPU-bound); results come back in input order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from functools import cache
from pathlib import Path
from typing import Any

from pipelines.extraction import extract
from pipelines.language import LanguageDetector

# what a folder is searched for; files named on the command line are read whatever their name
PAGE_SUFFIXES = frozenset({".html", ".htm", ".shtml", ".xhtml", ".raw"})


def page_paths(paths: Iterable[Path]) -> Iterator[Path]:
    """Each file named, and the pages under each folder named (sorted, recursively)."""
    for path in paths:
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.suffix.lower() in PAGE_SUFFIXES and p.is_file())
        else:
            yield path


def extract_pages(paths: Iterable[Path], url: str | None = None, timezone: str = "UTC",
                  language_seed: int = 0, language_sample_chars: int = 2000,
                  jobs: int | None = None) -> Iterator[dict[str, Any]]:
    """One record per page, in the order of ``paths``; ``jobs`` processes (default: all cores)."""
    tasks = [(str(path), url, timezone, language_seed, language_sample_chars) for path in paths]
    if not tasks:
        return
    jobs = min(jobs or os.cpu_count() or 1, len(tasks))
    if jobs == 1:
        yield from (page_record(*task) for task in tasks)
        return
    with ProcessPoolExecutor(jobs) as pool:
        yield from pool.map(_page_record_task, tasks, chunksize=max(1, min(16, len(tasks) // (jobs * 4))))


def _page_record_task(task: tuple[str, str | None, str, int, int]) -> dict[str, Any]:
    return page_record(*task)


def page_record(path: str, url: str | None, timezone: str, language_seed: int,
                language_sample_chars: int) -> dict[str, Any]:
    """What the crawl would archive of the page at ``path``; ``error`` instead when it can't be read
    or the stages fail on it (the crawl logs such a page as an error and goes on; so do we)."""
    try:
        body = Path(path).read_bytes()
    except OSError as exc:
        return {"path": path, "error": f"{type(exc).__name__}: {exc.strerror or exc}"}
    try:
        result = extract(body, url or Path(path).resolve().as_uri(), timezone=timezone)
        guess = _detector(language_seed, language_sample_chars).detect(result.text or "")
    except Exception as exc:  # one bad page must not end a run over thousands
        return {"path": path, "error": f"{type(exc).__name__}: {exc}"}
    metadata = result.metadata
    return {
        "path": path,
        "title": metadata.title,
        "text": result.text,
        "language": guess.language,
        "language_script": guess.script,
        "published_at": result.published_at.isoformat() if result.published_at else None,
        "authors": metadata.authors,
        "editor": metadata.editor,
        "source": metadata.source,
    }


@cache
def _detector(seed: int, sample_chars: int) -> LanguageDetector:
    """One detector per worker process: its models load once, not once per page."""
    return LanguageDetector(seed, sample_chars)
