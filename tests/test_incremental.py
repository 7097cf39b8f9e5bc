"""Cron-grade runs through the CLI: corrections become versions, and one run at a time per archive."""

from __future__ import annotations

import dataclasses
import json
import signal
import subprocess
import sys
from urllib.parse import urlsplit

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from crawler.cli.exits import ExitCode
from crawler.mirror.server import MirrorServer
from crawler.mirror.sites import build_mirror
from pipelines.archive.keys import delta_key
from pipelines.archive.lock import archive_lock
from pipelines.archive.storage import LocalStore
from pipelines.stages.dedup import article_id
from tests.conftest import FIXTURES, REPO, requested_as, run_cli
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.slow  # every test crawls in a subprocess, most of them twice

OUTLET = "sxkjt"


@pytest.fixture
def mirror():
    with MirrorServer(build_mirror()) as server:
        yield server


def crawl(mirror: MirrorServer, archive, *extra: str):
    """A crawl of OUTLET (and of any outlet ``extra`` names) that must go well."""
    run = run_cli("crawl", "--mirror-url", mirror.url, "--archive", str(archive), "--outlet", OUTLET, *extra)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def rows(archive) -> list[dict]:
    return ds.dataset(archive, format="parquet", partitioning="hive").to_table().to_pylist()


def summary(run) -> dict[str, int]:
    lines = run.stdout.splitlines()
    header, line = (next(text for text in lines if text.startswith(start)) for start in ("outlet", OUTLET))
    names = header.split()
    return dict(zip(names[1:], map(int, line.split()[1:]), strict=True))


def test_a_correction_is_a_new_version_and_an_unchanged_text_only_a_note(mirror, tmp_path):
    archive = tmp_path / "archive"
    first = summary(crawl(mirror, archive))
    assert first["archived"] == 5 and first["known"] == 0
    articles = [a for a in mirror.mirror.articles if a.outlet_id == OUTLET and a.expect == "archived"]
    corrected = urlsplit(articles[0].url)
    page = mirror.mirror.pages[(corrected.netloc, corrected.path)]
    body = page.body.decode("utf-8").replace(
        articles[0].paragraphs[0][:20], "（更正）" + articles[0].paragraphs[0][:20]
    )
    mirror.mirror.pages[(corrected.netloc, corrected.path)] = dataclasses.replace(
        page, body=body.encode("utf-8")
    )

    again = crawl(mirror, archive)  # no --refetch-after: the listing answers 304, nothing fetched
    assert (summary(again)["fetched"], summary(again)["archived"]) == (0, 0)
    assert "unchanged since the last run, not read again: 1 discovery page(s) (304)" in again.stdout

    refetched = crawl(mirror, archive, "--refetch-after", "0")
    counts = summary(refetched)
    figures = ("known", "fetched", "archived", "changed", "unchanged")
    assert [counts[name] for name in figures] == [0, 5, 1, 1, 4]
    versions = sorted((r["article_id"], r["version"]) for r in rows(archive))
    corrected_id = article_id(articles[0].url)
    assert [v for a, v in versions if a == corrected_id] == [1, 2]
    assert len(versions) == 6
    crawl_id = refetched.stdout.split()[1]
    delta = pq.read_table(archive / delta_key(crawl_id)).to_pylist()
    assert sorted(e["version"] for e in delta) == [1, 1, 1, 1, 2]  # four notes and the new version
    assert all(e["last_fetched"] for e in delta)


def test_a_second_run_on_a_held_archive_exits_at_once_or_waits(mirror, tmp_path):
    archive = tmp_path / "archive"
    with archive_lock(LocalStore(archive), "the-first-run"):
        busy = run_cli("crawl", "--mirror-url", mirror.url, "--archive", str(archive), "--outlet", OUTLET)
        assert busy.returncode == ExitCode.BUSY
        assert "is held by run the-first-run" in busy.stderr and "--wait" in busy.stderr
        assert not list(archive.glob("outlet=*"))
        waiting = subprocess.Popen(
            [
                *(sys.executable, "-m", "crawler", "crawl", "--mirror-url", mirror.url),
                *("--archive", str(archive), "--outlet", OUTLET, "--wait", "--quiet"),
            ],
            cwd=REPO,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert "waiting for the archive: run the-first-run" in waiting.stderr.readline()
    rest = waiting.communicate(timeout=300)[1]  # closes the pipe too
    assert waiting.returncode == 0, rest
    manifests = [json.loads(p.read_text()) for p in (archive / "_manifests").glob("*.json")]
    assert [m["rows"] for m in manifests] == [5]


def test_discovery_pages_are_asked_conditionally_and_nothing_is_lost(mirror, tmp_path):
    """A run that left work undone keeps no validators; a clean one's make the next run's 304s."""
    archive, outlets = tmp_path / "archive", ("--outlet", "hangzhou-net", "--outlet", OUTLET)
    host = "hznews.hangzhou.com.cn"
    index = mirror.mirror.pages[(host, "/sitemap_index.xml")]
    dated = index.body.replace(b"</loc></sitemap>", b"</loc><lastmod>2020-01-01</lastmod></sitemap>")
    mirror.mirror.pages[(host, "/sitemap_index.xml")] = dataclasses.replace(index, body=dated)
    article = next(
        a for a in mirror.mirror.articles if a.outlet_id == "hangzhou-net" and a.expect == "archived"
    )
    key = (host, urlsplit(article.url).path)
    page = mirror.mirror.pages[key]
    mirror.mirror.pages[key] = dataclasses.replace(page, status=503)

    undone = run_cli(
        "crawl", "--mirror-url", mirror.url, "--archive", str(archive), *outlets, "-s", "RETRY_TIMES=0"
    )
    assert undone.returncode == 1 and "503 Service Unavailable" in undone.stderr
    assert [json.loads(p.read_text())["discovery"] for p in (archive / "_manifests").glob("*.json")] == [{}]

    mirror.mirror.pages[key] = page  # back up: the next run must find it through the same pages
    asked = len(mirror.requested)
    recovered = crawl(mirror, archive, *outlets[2:], "--outlet", "hangzhou-net")
    assert mirror.not_modified == [] and summary(recovered)["archived"] == 0  # sxkjt's row
    assert article_id(article.url) in {r["article_id"] for r in rows(archive)}
    assert f"{host}/sitemap/xinzheng.xml" in mirror.requested[asked:]

    asked = len(mirror.requested)
    quiet = run_cli("crawl", "--mirror-url", mirror.url, "--archive", str(archive), *outlets, "--quiet")
    assert quiet.returncode == 0 and quiet.stdout == "", quiet.stdout + quiet.stderr
    assert sorted(mirror.not_modified) == sorted(
        [f"{host}/sitemap_index.xml", f"{host}/rss/xinzheng.xml", "kjt.shanxi.gov.cn/zxzx/ywyl/index.shtml"]
    )
    assert not [r for r in mirror.requested[asked:] if "/sitemap/" in r]  # children older than our read


@pytest.mark.parametrize(
    ("outlet", "host", "copy_path", "listing"),
    [
        (OUTLET, "kjt.shanxi.gov.cn", "/zxzx/ywyl/202311/t20231101_9999999.shtml", "/zxzx/ywyl/index.shtml"),
        ("jzyinliu", "jzyinliu.cn", "/detail/d_guizhou/99999999.html", "/list/d_guizhou/"),  # a wire copy
    ],
)
def test_a_new_article_alone_is_fetched_and_a_copy_names_the_first(
    mirror, tmp_path, outlet, host, copy_path, listing
):
    archive, outlets = tmp_path / "archive", ("--outlet", "jzyinliu")
    crawl(mirror, archive, *outlets)
    original = next(a for a in mirror.mirror.articles if a.outlet_id == OUTLET and a.expect == "archived")
    source = urlsplit(original.url)
    mirror.mirror.pages[(host, copy_path)] = mirror.mirror.pages[(source.netloc, source.path)]
    page = mirror.mirror.pages[(host, listing)]
    link = f'<a href="https://{host}{copy_path}">again</a></body>'.encode()
    mirror.mirror.pages[(host, listing)] = dataclasses.replace(page, body=page.body.replace(b"</body>", link))
    asked = len(mirror.requested)
    crawl(mirror, archive, *outlets, "--summary-json", str(tmp_path / "run.json"))
    every_article = {requested_as(a.url) for a in mirror.mirror.articles} | {host + copy_path}
    assert set(mirror.requested[asked:]) & every_article == {host + copy_path}  # the known: not asked
    verdict = json.loads((tmp_path / "run.json").read_text())
    figures = verdict["outlets"][outlet]
    assert (figures["fetched"], figures["archived"], figures["copies"], figures["failed"]) == (1, 1, 1, 0)
    assert figures["known"] >= 5 and verdict["totals"]["archived"] == 1
    assert (verdict["exit_code"], verdict["pending_uploads"]) == (0, 0)
    assert verdict["started_at"] < verdict["finished_at"] and verdict["crawl_id"]
    copy = next(r for r in rows(archive) if r["url"].endswith(copy_path))
    assert copy["duplicate_of"] == article_id(original.url) != copy["article_id"]
    assert copy["outlet_id"] == outlet


def test_sigterm_stops_the_crawl_honestly_and_the_next_run_fetches_the_rest(mirror, tmp_path):
    archive = tmp_path / "archive"
    last = [a for a in mirror.mirror.articles if a.outlet_id == OUTLET and a.expect == "archived"][-1]
    target = urlsplit(last.url).path
    with FaultProxy(mirror.url, lambda method, path: "hold" if path.endswith(target) else "pass") as proxy:
        running = subprocess.Popen(
            [
                *(sys.executable, "-m", "crawler", "crawl", "--mirror-url", proxy.url),
                *("--archive", str(archive), "--outlet", OUTLET),
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert proxy.held.wait(120)  # the crawl is under way
        running.send_signal(signal.SIGTERM)  # what timeout, systemd and Kubernetes send
        proxy.release.set()
        out, err = running.communicate(timeout=300)
    assert running.returncode == ExitCode.STOPPED, out + err
    assert "PROBLEM the crawl was stopped before its end (shutdown)" in out
    [manifest] = [json.loads(p.read_text()) for p in (archive / "_manifests").glob("*.json")]
    assert manifest["interrupted"] is True and manifest["discovery"] == {}
    crawl_again = summary(crawl(mirror, archive))
    assert crawl_again["fetched"] >= 1  # the listing is read whole: the rest is fetched
    assert sorted(r["url"] for r in rows(archive)) == sorted(
        a.url for a in mirror.mirror.articles if a.outlet_id == OUTLET and a.expect == "archived"
    )


def test_a_bug_of_ours_has_its_own_exit_code(mirror, tmp_path):
    pipelines = {
        "tests.crawler.raising_pipeline.RaisingPipeline": 50,
        "crawler.pipelines.ExtractPipeline": 100,
        "crawler.pipelines.DedupPipeline": 300,
        "crawler.pipelines.ArchivePipeline": 900,
    }
    run = run_cli(
        *("crawl", "--mirror-url", mirror.url, "--archive", str(tmp_path / "archive"), "--outlet", OUTLET),
        *("-s", f"ITEM_PIPELINES={json.dumps(pipelines)}"),
    )
    assert run.returncode == ExitCode.BUG, run.stdout + run.stderr
    assert "PROBLEM our own code raised (pipeline: 1)" in run.stdout
    assert "ZeroDivisionError: a bug in our own code" in run.stderr


def test_a_page_that_says_noarchive_is_counted_not_archived(mirror, tmp_path):
    article = next(a for a in mirror.mirror.articles if a.outlet_id == OUTLET and a.expect == "archived")
    key = (urlsplit(article.url).netloc, urlsplit(article.url).path)
    page = mirror.mirror.pages[key]
    robots = b'<head><meta name="robots" content="noarchive">'
    mirror.mirror.pages[key] = dataclasses.replace(page, body=page.body.replace(b"<head>", robots, 1))
    run = crawl(mirror, tmp_path / "archive", "--summary-json", str(tmp_path / "run.json"))
    assert "not archived, the page says noarchive: 1" in run.stdout
    assert json.loads((tmp_path / "run.json").read_text())["outlets"][OUTLET]["noarchive"] == 1
    assert (
        article.url not in {r["url"] for r in rows(tmp_path / "archive")}
        and len(rows(tmp_path / "archive")) == 4
    )


def test_max_listing_pages_bounds_the_pages_not_the_depth(mirror, tmp_path):
    """sxkjt follows 3 listing pages in all; here every listing page links 8 more."""
    host, base = "kjt.shanxi.gov.cn", "/zxzx/ywyl/"
    start = mirror.mirror.pages[(host, f"{base}index.shtml")]

    def links(n: int) -> bytes:
        return "".join(f'<a href="{base}index_{8 * n + k}.shtml">{k}</a>' for k in range(1, 9)).encode()

    mirror.mirror.pages[(host, f"{base}index.shtml")] = dataclasses.replace(
        start, body=start.body.replace(b"</body>", links(0) + b"</body>")
    )
    for n in range(1, 80):
        body = b"<html><body><p>listing</p>" + links(n) + b"</body></html>"
        mirror.mirror.pages[(host, f"{base}index_{n}.shtml")] = dataclasses.replace(start, body=body)
    asked = len(mirror.requested)
    crawl(mirror, tmp_path / "archive")
    listings = [r for r in mirror.requested[asked:] if r.startswith(f"{host}{base}index")]
    assert len(listings) == 3  # the start page and two more, as registered


def test_retry_after_is_honoured_and_the_page_archived(mirror, tmp_path):
    article = next(a for a in mirror.mirror.articles if a.outlet_id == OUTLET and a.expect == "archived")
    target, answered = urlsplit(article.url).path, []

    def rationed(method: str, path: str) -> str:  # the first request for the article: 429
        if path.endswith(target) and not answered:
            answered.append(path)
            return "429"
        return "pass"

    with FaultProxy(mirror.url, rationed) as proxy:
        run = run_cli(
            *("crawl", "--mirror-url", proxy.url, "--archive", str(tmp_path / "archive"), "--outlet", OUTLET),
            *("--log-level", "INFO"),
        )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "kjt.shanxi.gov.cn asks us to wait (429, Retry-After): 2 s between its requests" in run.stderr
    assert "'retry_after/honoured': 1" in run.stderr and "'retry_after/max_seconds': 2.0" in run.stderr
    assert article.url in {r["url"] for r in rows(tmp_path / "archive")}  # retried, then archived


def test_an_outlets_link_budget_bounds_a_run_and_the_next_runs_take_the_rest(mirror, tmp_path):
    archive, budget = (
        tmp_path / "archive",
        ("--outlets-file", str(FIXTURES / "registry" / "sxkjt_two_links.toml")),
    )
    archived = []
    for _ in range(3):  # 5 articles, 2 new links a run
        run = crawl(mirror, archive, *budget)
        archived.append(summary(run)["archived"])
    assert archived == [2, 2, 1]
    assert len({r["article_id"] for r in rows(archive)}) == len(rows(archive)) == 5
