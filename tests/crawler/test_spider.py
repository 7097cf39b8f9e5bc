from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from scrapy.exceptions import (
    CannotResolveHostError,
    DownloadConnectionRefusedError,
    DownloadFailedError,
    DownloadTimeoutError,
    IgnoreRequest,
)
from scrapy.http import HtmlResponse
from scrapy.spidermiddlewares.httperror import HttpError
from twisted.internet.error import ConnectionRefusedError, DNSLookupError
from twisted.internet.error import TimeoutError as TwistedTimeoutError

from crawler.middlewares import Confined
from crawler.registry import load_registry
from crawler.spiders.links import ARTICLE, LISTING, NO_PATTERN, NOT_HTTP, OFFSITE, LinkVerdict, judge_link
from crawler.spiders.outlets import _absolute, refusal_reason
from pipelines.archive.keys import new_crawl_id
from tests.conftest import FIXTURES, REPO, run_cli


def test_scrapy_project_lists_the_spider():
    scrapy = Path(sys.executable).with_name("scrapy")
    listed = subprocess.run([str(scrapy), "list"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.split() == ["outlets"]


def test_crawl_ids_sort_by_time_and_differ():
    first = new_crawl_id(datetime(2026, 11, 23, 4, 15, tzinfo=UTC))
    assert first.startswith("20261123T041500Z-")
    assert first != new_crawl_id(datetime(2026, 11, 23, 4, 15, tzinfo=UTC))
    assert new_crawl_id(datetime(2026, 11, 23, 4, 16, tzinfo=UTC)) > first


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (HttpError(HtmlResponse("https://x.cn/a", status=404), "Ignoring non-200 response"), "http_404"),
        (IgnoreRequest("max redirections reached"), "redirect_loop"),
        # Scrapy's own messages (scrapy/downloadermiddlewares/, scrapy/utils/_download_handlers.py)
        (
            IgnoreRequest(
                "Ignored response <200 https://x.cn/a> because its body (10 B compressed, 99 B decompressed "
                "so far) exceeded DOWNLOAD_MAXSIZE (50 B) during decompression."
            ),
            "decompression_bomb",
        ),
        (
            IgnoreRequest(
                "Expected to receive 9 bytes which is larger than download max size (5) in request"
            ),
            "too_large",
        ),
        (IgnoreRequest("Filtered offsite request to 'evil.example'"), "offsite"),
        (IgnoreRequest("Forbidden by robots.txt"), "robots"),
        (Confined("scheme", "file://x.cn/proc/self/environ"), "scheme"),
        (Confined("internal_address", "http://2130706433/"), "internal_address"),
        # Scrapy 2.19's HTTP handler says Twisted's errors as its own
        (CannotResolveHostError("no results for hostname lookup: x.cn"), "dns"),
        (DownloadTimeoutError("Getting https://x.cn/a took longer than 30 seconds."), "timeout"),
        (DownloadConnectionRefusedError("Connection was refused by other side"), "connection"),
        (DownloadFailedError("[<twisted.python.failure.Failure ...>]"), "connection"),
        (TwistedTimeoutError(), "timeout"),
        (DNSLookupError(), "dns"),
        (ConnectionRefusedError(), "connection"),
        (ValueError("odd"), "ValueError"),
    ],
)
def test_why_an_article_page_was_not_fetched_is_one_word(error, reason):
    assert refusal_reason(error) == reason


GMW = load_registry()["gmw-cq"]
GMW_ARTICLE = "https://difang.gmw.cn/cq/2024-03/11/content_37197155.htm"


@pytest.mark.parametrize(
    ("url", "kind", "pattern"),
    [
        (GMW_ARTICLE, ARTICLE, GMW.article_patterns[0].pattern),
        ("https://difang.gmw.cn/cq/index_2.htm", LISTING, GMW.listing_pattern.pattern),
        ("https://difang.gmw.cn/cq/preview/2024-03/12/content_37199999.htm", NO_PATTERN, None),
        (GMW_ARTICLE.replace("difang.", "www."), OFFSITE, None),
        ("mailto:news@difang.gmw.cn", NOT_HTTP, None),
        (GMW_ARTICLE.replace("https:", "file:"), NOT_HTTP, None),
    ],
)
def test_a_discovered_link_is_judged_by_the_outlets_patterns(url, kind, pattern):
    assert judge_link(GMW, url) == LinkVerdict(url, kind, pattern)


def test_a_link_that_is_no_url_is_left_out_of_a_listing_not_a_crash():
    listing = HtmlResponse("https://difang.gmw.cn/cq/", body=b"")
    assert _absolute(listing, ["http://[::1/", "index_2.htm"]) == ["https://difang.gmw.cn/cq/index_2.htm"]


@pytest.mark.slow
def test_a_crawl_whose_patterns_match_no_link_says_so_with_a_link(mirror_server, tmp_path):
    run = run_cli(
        "crawl",
        "--mirror-url",
        mirror_server.url,
        "--outlet",
        "gmw-cq",
        "--outlets-file",
        str(FIXTURES / "try" / "wrong_patterns.toml"),
        "--archive",
        str(tmp_path / "archive"),
    )
    assert run.returncode == 1
    assert (
        "PROBLEM gmw-cq: no article page found: 3 listing page(s) gave 23 link(s), 7 of them off-site, none "
        "matched article_patterns (e.g. https://difang.gmw.cn/cq/preview/2024-03/12/content_37199999.htm)"
    ) in run.stdout.splitlines()
