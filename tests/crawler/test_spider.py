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
from crawler.spiders.outlets import refusal_reason
from pipelines.archive.keys import new_crawl_id
from tests.conftest import REPO


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
