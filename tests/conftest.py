"""Shared fixtures: the mirror server on loopback, one crawl of all mirrors into a tmp folder, and
the two real object stores (SeaweedFS, Ceph RGW), each started once per session."""

from __future__ import annotations

import asyncio
import os
import resource
import subprocess
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pyarrow.dataset as ds
import pytest
from scrapy.settings import Settings

from benchmarks.eval_extraction import yardstick as load_yardstick
from crawler.from_settings import page_pool
from crawler.mirror.server import MirrorServer
from crawler.mirror.sites import build_mirror
from pipelines.article import Article
from pipelines.tools.saved_pages import extract_pages
from tests.objectstores import S3_STORES, CephRGW, ObjectStore, SeaweedFS
from tests.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
MIRROR = build_mirror()
ARCHIVED = [a for a in MIRROR.articles if a.expect == "archived"]


@dataclass
class CrawlRun:
    archive: Path
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str, env: dict[str, str] | None = None, limit: int | None = None) -> CrawlRun:
    """``newsarchive ARGS`` in a fresh process, as an operator runs it (``env`` added to ours;
    ``limit``: a cap on its address space, in bytes)."""
    done = subprocess.run(
        [sys.executable, "-m", "crawler", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        # under a cap on address space, glibc's arena per thread (64 MiB reserved, little used)
        # would count as memory: two arenas, so that the cap measures what the process uses
        env={**os.environ, **({} if limit is None else {"MALLOC_ARENA_MAX": "2"}), **(env or {})},
        preexec_fn=None if limit is None else lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit)),
    )
    archive = Path(args[args.index("--archive") + 1]) if "--archive" in args else REPO / "output"
    return CrawlRun(archive, done.returncode, done.stdout, done.stderr)


def requested_as(url: str) -> str:
    """A URL as the mirror server records a request for it: ``host/path?query``."""
    parts = urlsplit(url)
    return parts.netloc + parts.path + (f"?{parts.query}" if parts.query else "")


def fetched_article(**fields: Any) -> Article:
    """An item as the spider makes it, for one test page (``fields`` override the defaults)."""
    defaults: dict[str, Any] = {
        "url": "https://news.example.cn/a/1.html",
        "outlet_id": "x",
        "outlet_name": "X",
        "region": "CN",
        "outlet_timezone": "Asia/Shanghai",
        "body": b"",
        "http_status": 200,
        "content_type": "text/html",
        "header_charset": None,
        "fetched_at": datetime.now(UTC),
        "crawl_id": "c",
    }
    return Article(**(defaults | fields))


def extract_saved(
    paths: Iterable[Path],
    url: str | None = None,
    timezone: str = "UTC",
    workers: int = 2,
    urls: dict[Path, str] | None = None,
) -> list[dict[str, Any]]:
    """What ``newsarchive extract`` prints of ``paths``, as records, through the same worker pool
    (``urls``: as ``--urls-file`` gives them)."""

    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")

    async def collect() -> list[dict[str, Any]]:
        async with page_pool(settings, workers) as pool:
            return [record async for record in extract_pages(paths, pool, url, timezone, urls)]

    return asyncio.run(collect())


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a test that would start Ceph RGW in ``make test-fast``: its Ceph run must be marked
    ``second_store`` (``S3_STORES`` does it), or the fast tier starts both stores again."""
    for item in items:
        params = item.callspec.params.values() if hasattr(item, "callspec") else ()
        uses_ceph = "ceph_rgw" in item.fixturenames or "ceph_rgw" in [p for p in params if isinstance(p, str)]
        if uses_ceph and item.get_closest_marker("second_store") is None:
            raise pytest.UsageError(f"{item.nodeid} runs on Ceph RGW unmarked: use objectstores.S3_STORES")


@pytest.fixture(scope="session")
def mirror_server():
    with MirrorServer() as server:
        yield server


@pytest.fixture(scope="session")
def mirror_crawl(mirror_server, tmp_path_factory) -> CrawlRun:
    archive = tmp_path_factory.mktemp("archive")
    return run_cli("crawl", "--mirror-url", mirror_server.url, "--archive", str(archive))


@pytest.fixture(scope="session")
def mirror_rows(mirror_crawl) -> dict[str, dict]:
    """The rows the mirror crawl archived, by URL."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
    table = ds.dataset(mirror_crawl.archive, format="parquet", partitioning="hive").to_table()
    return {row["url"]: row for row in table.to_pylist()}


@pytest.fixture(scope="session")
def yardstick():
    """The shared extraction yardstick (../shared/tools/score_extract.py)."""
    return load_yardstick()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    yield server
    server.stop(grace=0)  # its folder is thrown away


@pytest.fixture(scope="session")
def ceph_rgw(tmp_path_factory):
    server = CephRGW(tmp_path_factory.mktemp("ceph"))
    yield server
    server.stop(grace=0)  # its folder is thrown away


@pytest.fixture(params=S3_STORES)
def object_store(request) -> ObjectStore:
    """Each S3 test runs against both real stores (``make test-fast``: SeaweedFS only)."""
    return request.getfixturevalue(request.param)


@pytest.fixture
def redis_server(tmp_path) -> Iterator[RedisServer]:
    """A real redis-server on loopback, with its data in the test's folder."""
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()
