"""Hostile sites, crawled through the CLI on loopback: bounded work, and every page accounted for.

(More hostile input: noarchive, listing traps, Retry-After, link budgets, SIGTERM in
tests/test_incremental.py; pages and JSON-LD in tests/pipelines/stages/test_extraction.py and
test_fuzz.py; the same inputs at full size, with peak memory, in benchmarks/bench_hostile.py.)
"""

from __future__ import annotations

import dataclasses
import gzip
import re
from urllib.parse import urlsplit

import pytest

from crawler.mirror.server import MirrorServer
from crawler.mirror.sites import Page
from tests.conftest import FIXTURES, requested_as, run_cli
from tests.test_incremental import OUTLET, crawl, mirror, rows

__all__ = ["mirror"]  # the fixture, shared with tests/test_incremental.py

pytestmark = pytest.mark.slow  # every test crawls in a subprocess

SITEMAP_OUTLET = "hangzhou-net"
SITEMAP = ("hznews.hangzhou.com.cn", "/sitemap/xinzheng.xml")


def key(url: str) -> tuple[str, str]:
    return urlsplit(url).netloc, urlsplit(url).path


def articles(server: MirrorServer, outlet: str = OUTLET) -> list:
    return [a for a in server.mirror.articles if a.outlet_id == outlet and a.expect == "archived"]


def stat(stderr: str, name: str) -> int:
    """A figure of Scrapy's stats dump at the end of the log (``--log-level INFO``)."""
    found = re.search(rf"'{re.escape(name)}': (\d+)", stderr)
    return int(found[1]) if found else 0


def more_in_a_sitemap(mirror: MirrorServer, count: int) -> list[str]:
    """hangzhou-net's first sitemap lists ``count`` more article URLs after its own (gone: 404)."""
    host = SITEMAP[0]
    page = mirror.mirror.pages[SITEMAP]
    gone = [f"https://{host}/xinzheng/content/2026-11/23/content_9{n:06d}.htm" for n in range(count)]
    more = "".join(f"<url><loc>{url}</loc></url>" for url in gone).encode()
    mirror.mirror.pages[SITEMAP] = dataclasses.replace(
        page, body=page.body.replace(b"</urlset>", more + b"</urlset>")
    )
    return gone


def test_pages_that_cannot_be_fetched_are_counted_by_reason_and_a_link_farm_is_archived(mirror, tmp_path):
    bomb, loop, offsite, farm, plain = articles(mirror)
    pages = mirror.mirror.pages
    pages[key(bomb.url)] = dataclasses.replace(
        pages[key(bomb.url)],
        body=gzip.compress(b"\0" * (64 << 20)),  # 64 MB, over DOWNLOAD_MAXSIZE, in 64 kB
        headers=(("Content-Encoding", "gzip"),),
    )
    pages[key(loop.url)] = Page(302, "text/html", b"", (("Location", loop.url),))
    pages[key(offsite.url)] = Page(302, "text/html", b"", (("Location", "https://elsewhere.example/a"),))
    links = "".join(f'<li><a href="/zhuanti/{n}.shtml">专题报道 {n}</a></li>' for n in range(5000))
    page = pages[key(farm.url)]
    pages[key(farm.url)] = dataclasses.replace(
        page, body=page.body.replace(b"</body>", f"<ul>{links}</ul></body>".encode())
    )
    run = crawl(mirror, tmp_path / "archive")
    assert (
        "article pages not fetched, by reason: decompression_bomb: 1, offsite: 1, redirect_loop: 1"
        in run.stdout
    )
    archived = {r["url"]: r["text"] for r in rows(tmp_path / "archive")}
    assert set(archived) == {farm.url, plain.url}
    assert farm.paragraphs[0][:20] in archived[farm.url] and "专题报道" not in archived[farm.url]


def test_a_listing_page_is_read_up_to_max_links_per_page(mirror, tmp_path):
    """sxkjt with max_links_per_page = 30; here its listing pages open with 40 other links."""
    junk = "".join(f'<a href="/zhuanti/{n}.shtml">专题</a>' for n in range(40)).encode()
    for (host, path), page in list(mirror.mirror.pages.items()):
        if host == "kjt.shanxi.gov.cn" and path.startswith("/zxzx/ywyl/index"):
            mirror.mirror.pages[(host, path)] = dataclasses.replace(
                page, body=page.body.replace(b"<body>", b"<body>" + junk, 1)
            )
    asked = len(mirror.requested)
    registry = FIXTURES / "registry" / "sxkjt_30_links_a_page.toml"
    run = run_cli(
        *("crawl", "--mirror-url", mirror.url, "--archive", str(tmp_path / "archive"), "--outlet", OUTLET),
        *("--outlets-file", str(registry)),
    )
    assert "pages of over max_links_per_page links, the rest not read: sxkjt: 1" in run.stdout
    requested = mirror.requested[asked:]
    assert not {requested_as(a.url) for a in articles(mirror)} & set(requested)
    assert requested_as("https://kjt.shanxi.gov.cn/zxzx/ywyl/index_1.shtml") not in requested  # past the cut


def test_sitemap_urls_wait_in_the_frontier_not_in_the_scheduler_and_all_are_fetched(mirror, tmp_path):
    """hangzhou-net's first sitemap lists 1,000 more articles after its own."""
    gone = more_in_a_sitemap(mirror, 1000)
    run = run_cli(
        *("crawl", "--mirror-url", mirror.url, "--archive", str(tmp_path / "archive")),
        *("--outlet", SITEMAP_OUTLET, "--log-level", "INFO"),
    )
    assert run.returncode == 0, run.stdout + run.stderr
    requested = [r for r in mirror.requested if "/content_9" in r]
    assert sorted(requested) == sorted(map(requested_as, gone))  # every one asked for, once
    # never more than 4 x CONCURRENT_REQUESTS (16) of them queued: the rest waited as strings
    assert stat(run.stderr, "discovery/frontier_max") >= 1000 - 64
    assert {a.url for a in articles(mirror, SITEMAP_OUTLET)} <= {r["url"] for r in rows(tmp_path / "archive")}


def test_a_sitemap_is_read_up_to_its_outlets_max_sitemap_urls(mirror, tmp_path):
    """hangzhou-net with max_sitemap_urls = 100; its first sitemap lists 1,000 more URLs."""
    listed_before = mirror.mirror.pages[SITEMAP].body.count(b"<url>")
    more_in_a_sitemap(mirror, 1000)
    registry = FIXTURES / "registry" / "hangzhou_100_sitemap_urls.toml"
    run = run_cli(
        *("crawl", "--mirror-url", mirror.url, "--archive", str(tmp_path / "archive")),
        *("--outlet", SITEMAP_OUTLET, "--outlets-file", str(registry)),
    )
    assert "sitemaps cut at max_sitemap_urls, the rest not read: 1" in run.stdout
    assert len([r for r in mirror.requested if "/content_9" in r]) == 100 - listed_before
