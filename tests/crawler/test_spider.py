from __future__ import annotations

import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

from crawler.spiders.outlets import _header_charset, new_crawl_id
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


def test_header_charset():
    assert _header_charset("text/html; charset=GBK") == "GBK"
    assert _header_charset('text/html; Charset="utf-8"') == "utf-8"
    assert _header_charset("text/html") is None
