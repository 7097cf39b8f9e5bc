"""``newsarchive try OUTLET``: the links of an outlet's discovery pages with their verdicts, a few
articles extracted, nothing written; and why nothing was found when nothing was."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from crawler.cli import main
from crawler.cli.exits import ExitCode
from tests.conftest import ARCHIVED, FIXTURES, CrawlRun

TRY = FIXTURES / "try"
PREVIEW = "https://difang.gmw.cn/cq/preview/2024-03/12/content_37199999.htm"  # no article's URL
UNMATCHED = ["matched", "no", "article_patterns"]
GMW_ARTICLE = r"article_patterns ^https?://difang\.gmw\.cn/cq/\d{4}-\d{2}/\d{2}/content_\d+\.htm$"


def run_try(cwd: Path, *args: str) -> CrawlRun:
    """``newsarchive try ARGS`` in a fresh process (Scrapy's reactor runs once a process), in
    ``cwd``, where nothing is to be written."""
    done = subprocess.run(
        [sys.executable, "-m", "crawler", "try", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return CrawlRun(cwd, done.returncode, done.stdout, done.stderr)


@pytest.mark.slow
def test_try_on_the_mirror_shows_each_link_with_its_pattern_and_extracts_articles_writing_nothing(
    mirror_server, tmp_path
):
    run = run_try(tmp_path, "gmw-cq", "--limit", "2", "--mirror-url", mirror_server.url)
    assert run.returncode == ExitCode.OK, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert any(line.startswith("listing https://difang.gmw.cn/cq/: ") for line in lines)
    assert any(line.strip().endswith(GMW_ARTICLE) and "/content_" in line for line in lines)
    assert [PREVIEW, *UNMATCHED] in [line.split() for line in lines]
    assert any(line.strip().endswith("off-site: on no domain of allowed_domains") for line in lines)
    assert any("listing_pattern ^https?://difang" in line for line in lines)
    assert sum(line.startswith("article ") and " of 2: " in line for line in lines) == 2
    titles = {article.title for article in ARCHIVED if article.outlet_id == "gmw-cq"}
    shown = [line.split("title", 1)[1].strip() for line in lines if line.startswith("  title ")]
    assert len(shown) == 2 and set(shown) <= titles
    assert lines[-1] == "2 article(s) extracted of 2 page(s) fetched; nothing archived"
    assert run.stderr == ""
    assert list(tmp_path.iterdir()) == []  # no archive, spool, lock or WARC where it ran


@pytest.mark.slow
def test_try_reads_sitemap_indexes_and_feeds_and_says_why_an_article_page_was_not_fetched(
    mirror_server, tmp_path
):
    run = run_try(tmp_path, "hangzhou-net", "--limit", "20", "--mirror-url", mirror_server.url)
    assert run.returncode == ExitCode.OK, run.stdout + run.stderr
    lines = run.stdout.splitlines()
    assert "sitemap index https://hznews.hangzhou.com.cn/sitemap_index.xml: 2 link(s): 2 sitemap" in lines
    assert "sitemap https://hznews.hangzhou.com.cn/sitemap/shehui.xml: 3 link(s): 3 article" in lines
    assert "feed https://hznews.hangzhou.com.cn/rss/xinzheng.xml: 6 link(s): 6 article" in lines
    host = "https://hznews.hangzhou.com.cn"
    assert (
        f"article page not fetched (robots): {host}/internal/content/2024-05/08/content_9000001.htm" in lines
    )
    assert (
        f"article page not fetched (http_404): {host}/shehui/content/2024-04/30/content_8730000.htm" in lines
    )
    titles = {article.title for article in ARCHIVED if article.outlet_id == "hangzhou-net"}
    shown = {line.split("title", 1)[1].strip() for line in lines if line.startswith("  title ")}
    assert shown == titles
    assert (
        lines[-1] == f"{len(titles)} article(s) extracted of {len(titles)} page(s) fetched; nothing archived"
    )


@pytest.mark.slow
def test_try_with_patterns_that_match_nothing_names_the_links(mirror_server, tmp_path):
    registry = str(TRY / "wrong_patterns.toml")
    run = run_try(tmp_path, "gmw-cq", "--outlets-file", registry, "--mirror-url", mirror_server.url)
    assert run.returncode == ExitCode.PROBLEMS
    article = "https://difang.gmw.cn/cq/2024-03/11/content_37197155.htm"
    assert [article, *UNMATCHED] in [line.split() for line in run.stdout.splitlines()]
    assert "article 1 of" not in run.stdout
    assert run.stdout.splitlines()[-1] == (
        "PROBLEM gmw-cq: no article page found: 3 listing page(s) gave 23 link(s), 7 of them off-site, none "
        f"matched article_patterns (e.g. {PREVIEW})"
    )
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_try_of_pages_that_hold_no_article_says_so(mirror_server, tmp_path):
    registry = str(TRY / "gallery_only.toml")
    run = run_try(tmp_path, "gmw-cq", "--outlets-file", registry, "--mirror-url", mirror_server.url)
    assert run.returncode == ExitCode.PROBLEMS
    assert "  not an article (too_short): the crawl would not archive it" in run.stdout
    assert run.stdout.splitlines()[-1] == (
        "PROBLEM gmw-cq: 1 article page(s) fetched, none held an article (too_short: 1)"
    )


@pytest.mark.slow
def test_try_of_a_feed_without_links_says_so(mirror_server, tmp_path):
    registry = str(TRY / "feed_without_links.toml")
    run = run_try(tmp_path, "breakinglatest", "--outlets-file", registry, "--mirror-url", mirror_server.url)
    assert run.returncode == ExitCode.PROBLEMS
    assert "feed https://www.breakinglatest.news/news-sitemap.xml: 0 link(s)" in run.stdout.splitlines()
    assert run.stdout.splitlines()[-1] == (
        "PROBLEM breakinglatest: no article page found: no links on its 1 feed page(s)"
    )


@pytest.mark.slow
def test_try_a_missing_sitemap_says_its_http_status(mirror_server, tmp_path):
    registry = str(TRY / "missing_sitemap.toml")
    run = run_try(tmp_path, "gmw-cq", "--outlets-file", registry, "--mirror-url", mirror_server.url)
    assert run.returncode == ExitCode.PROBLEMS
    assert "sitemap https://difang.gmw.cn/cq/sitemap.xml: not read (http_404)" in run.stdout
    assert run.stdout.splitlines()[-1] == (
        "PROBLEM gmw-cq: no article page found: HTTP 404 on the sitemap https://difang.gmw.cn/cq/sitemap.xml"
    )


@pytest.mark.slow
def test_try_an_outlet_whose_host_does_not_resolve_says_so(tmp_path):
    run = run_try(tmp_path, "nowhere", "--outlets-file", str(TRY / "unresolvable.toml"))
    assert run.returncode == ExitCode.PROBLEMS
    assert "listing https://news.nowhere.invalid/: not read (dns)" in run.stdout
    assert run.stdout.splitlines()[-1] == (
        "PROBLEM nowhere: no article page found: start point unreachable: DNS lookup failed for "
        "news.nowhere.invalid (listing https://news.nowhere.invalid/)"
    )
    assert "Traceback" not in run.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["try", "gmw-c"], "newsarchive: unknown outlet 'gmw-c'; did you mean gmw-cq? "),
        (["try", "zzzz"], "newsarchive: unknown outlet 'zzzz'; `newsarchive outlets` lists them"),
        (["try", "gmw-cq", "--limit", "0"], "newsarchive: --limit must be 1 to 20, not 0"),
        (["try", "gmw-cq", "--limit", "21"], "newsarchive: --limit must be 1 to 20, not 21"),
    ],
)
def test_try_refuses_an_unknown_outlet_naming_the_close_ones_and_a_limit_out_of_bounds(argv, message, capsys):
    assert main(argv) == ExitCode.USAGE
    captured = capsys.readouterr()
    assert captured.err.startswith(message) and captured.err.count("\n") == 1
    assert captured.out == ""
