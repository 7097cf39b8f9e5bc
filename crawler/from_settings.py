"""What every run builds from its settings, without Scrapy: its store and spool, the page
workers; and :class:`PlainSettings`, the settings as the archivist commands read them.

A crawl passes Scrapy's settings, an archivist command a :class:`PlainSettings`: both read the
same values (:mod:`crawler.common_settings`) with the same typed getters.
"""

from __future__ import annotations

import os
from types import ModuleType
from typing import Any, Protocol

from crawler import PAGE_WORKER, common_settings
from pipelines.archive.spool import Spool, spool_for
from pipelines.archive.storage import Store, store_for
from pipelines.runtime.pool import WorkerPool


class SettingsReader(Protocol):
    """The getters of Scrapy's ``BaseSettings`` that the builders here use."""

    def get(self, name: str, default: Any = None) -> Any: ...
    def getbool(self, name: str, default: bool = False) -> bool: ...
    def getint(self, name: str, default: int = 0) -> int: ...
    def getfloat(self, name: str, default: float = 0.0) -> float: ...
    def getlist(self, name: str, default: list[Any] | None = None) -> list[Any]: ...


class PlainSettings(dict[str, Any]):
    """A settings module's values (and overrides), read as Scrapy's ``BaseSettings`` reads them."""

    @classmethod
    def of(cls, module: ModuleType = common_settings, **overrides: Any) -> PlainSettings:
        values = {name: getattr(module, name) for name in dir(module) if name.isupper()}
        return cls(values, **overrides)

    def get(self, name: str, default: Any = None) -> Any:
        value = super().get(name)
        return value if value is not None else default

    def getbool(self, name: str, default: bool = False) -> bool:
        got = self.get(name, default)
        try:
            return bool(int(got))
        except ValueError:
            if got in {"True", "true"}:
                return True
            if got in {"False", "false"}:
                return False
            raise ValueError(
                "Supported values for boolean settings are 0/1, True/False, '0'/'1', 'True'/'False' and "
                "'true'/'false'"
            ) from None

    def getint(self, name: str, default: int = 0) -> int:
        return int(self.get(name, default))

    def getfloat(self, name: str, default: float = 0.0) -> float:
        return float(self.get(name, default))

    def getlist(self, name: str, default: list[Any] | None = None) -> list[Any]:
        value = self.get(name, default or [])
        if not value:
            return []
        return value.split(",") if isinstance(value, str) else list(value)


def store_from_settings(settings: SettingsReader) -> Store:
    """The store of ``ARCHIVE_URI``, tuned by ``ARCHIVE_S3_*``."""
    return store_for(
        settings.get("ARCHIVE_URI"),
        multipart_threshold=settings.getint("ARCHIVE_S3_MULTIPART_THRESHOLD"),
        multipart_chunksize=settings.getint("ARCHIVE_S3_MULTIPART_CHUNKSIZE"),
        connect_timeout=settings.getfloat("ARCHIVE_S3_CONNECT_TIMEOUT"),
        read_timeout=settings.getfloat("ARCHIVE_S3_READ_TIMEOUT"),
    )


def spool_from_settings(settings: SettingsReader, store: Store) -> Spool:
    """``ARCHIVE_SPOOL``, by default the archive's own (:func:`pipelines.archive.spool.spool_for`)."""
    return spool_for(store, settings.get("ARCHIVE_SPOOL"))


def extract_workers(settings: SettingsReader, jobs: int | None = None) -> int:
    """How many page workers: ``jobs`` (``--jobs``), else ``EXTRACT_WORKERS``, else every core
    (0 or unset). Fewer than one is refused (ValueError, exit 2): such a pool would wait for ever."""
    count = jobs if jobs is not None else settings.getint("EXTRACT_WORKERS") or os.cpu_count() or 1
    if count < 1:
        raise ValueError(f"{count} page workers (--jobs or EXTRACT_WORKERS): give 1 or more")
    return count


def page_pool(settings: SettingsReader, workers: int | None = None) -> WorkerPool:
    """Worker processes running :class:`pipelines.stages.page.PageAnalyser` as the settings say:
    the crawl's (:class:`crawler.pipelines.ExtractPipeline`), ``newsarchive extract``'s and
    ``reextract``'s."""
    options = {
        "language_seed": settings.getint("LANGUAGE_SEED"),
        "language_sample_chars": settings.getint("LANGUAGE_SAMPLE_CHARS"),
        "min_chars": settings.getint("EXTRACT_MIN_CHARS"),
        "obey_noarchive": settings.getbool("ROBOTS_NOARCHIVE_OBEY"),
        "max_links": settings.getint("EXTRACT_MAX_LINKS"),
    }
    return WorkerPool(
        PAGE_WORKER,
        options,
        extract_workers(settings, workers),
        settings.getfloat("EXTRACT_TIMEOUT"),
        cpu_limit=settings.getfloat("EXTRACT_CPU_LIMIT"),
        started=settings.getlist("EXTRACT_STARTED_WORKERS"),
    )
