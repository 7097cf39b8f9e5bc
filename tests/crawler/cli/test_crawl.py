from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from crawler import settings
from crawler.cli import main
from crawler.cli.crawl import LIBRARY_LOGGED, duration_seconds
from crawler.cli.exits import ExitCode
from crawler.mirror.server import MirrorServer
from pipelines.archive.keys import delta_key
from pipelines.archive.lock import archive_lock
from pipelines.archive.storage import LocalStore
from tests.conftest import FIXTURES, REPO, requested_as, run_cli
from tests.faultproxy import FaultProxy
from tests.test_hostile import stat
from tests.test_incremental import OUTLET, mirror

__all__ = ["mirror"]  # the fixture, shared with tests/test_incremental.py


def verdict(path) -> dict:
    return json.loads(path.read_text())


NO_AWS = {
    "AWS_ACCESS_KEY_ID": "",
    "AWS_SECRET_ACCESS_KEY": "",
    "AWS_CONFIG_FILE": "/dev/null",
    "AWS_SHARED_CREDENTIALS_FILE": "/dev/null",
    "AWS_EC2_METADATA_DISABLED": "true",
}


@pytest.mark.parametrize(
    ("archive", "message"),
    [
        ("gs://bucket/prefix", "unsupported scheme gs://"),
        ("s3://bucket/prefix", "no AWS credentials found"),
        ("s3://AKIAEXAMPLE:hunter2@bucket/prefix", "not in the URI"),
    ],
)
def test_unusable_archive_is_a_clear_error_before_crawling(archive, message, tmp_path):
    run = run_cli("crawl", "--mirror", "--archive", archive, "--spool", str(tmp_path), env=NO_AWS)
    assert run.returncode == 2
    assert message in run.stderr
    assert "Traceback" not in run.stderr and "hunter2" not in run.stderr + run.stdout
    assert not list(tmp_path.iterdir())


def test_flush_with_nothing_spooled_is_quiet(tmp_path):
    run = run_cli("flush", "--archive", str(tmp_path / "archive"), "--quiet")
    assert (run.returncode, run.stdout, run.stderr) == (0, "", "")


def test_unknown_outlet_is_a_clear_error():
    run = run_cli("crawl", "--mirror", "--outlet", "no-such-outlet")
    assert run.returncode == 2
    assert "unknown outlet id(s): no-such-outlet" in run.stderr


def test_the_crawl_process_gives_arrow_the_system_allocator():
    """mimalloc kept 45 MB after the last parts of a large crawl (see crawler/__init__.py)."""
    code = "import crawler.cli, pyarrow; print(pyarrow.default_memory_pool().backend_name)"
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True, text=True)
    assert done.stdout.strip() == "system", done.stderr


def test_a_crawl_that_cannot_start_says_why_and_exits_as_a_bug(tmp_path):
    """A setting naming a class that is no scheduler: Scrapy refuses to build the engine."""
    summary_json = tmp_path / "last-run.json"
    run = run_cli(
        "crawl", "--mirror", "--archive", str(tmp_path / "archive"), "-s", "SCHEDULER=builtins.object",
        "--summary-json", str(summary_json),
    )  # fmt: skip
    assert run.returncode == ExitCode.BUG
    assert "the crawl could not start" in run.stderr and "scheduler interface" in run.stderr
    assert "our own code raised (start: 1)" in run.stdout
    written = verdict(summary_json)
    assert written["exit_code"] == ExitCode.BUG and "our own code raised (start: 1)" in written["reason"]


def test_a_bug_of_ours_before_the_crawl_is_exit_5_with_its_traceback_and_verdict(
    tmp_path, capsys, monkeypatch
):
    def broken(settings):
        raise RuntimeError("a bug")

    monkeypatch.setattr("crawler.cli.crawl.store_from_settings", broken)
    summary_json = tmp_path / "last-run.json"
    assert main(["crawl", "--summary-json", str(summary_json)]) == ExitCode.BUG
    assert "Traceback" in capsys.readouterr().err
    written = verdict(summary_json)
    assert (written["exit_code"], written["reason"]) == (
        5,
        "our own code raised (RuntimeError: a bug); please report it",
    )


@pytest.mark.slow
def test_the_crawl_process_never_imports_what_it_does_not_use(tmp_path):
    """pyarrow would import pandas (48 MB) to convert the parts' rows, when it is installed, as
    here; Scrapy's remote control, which is off, would import aiohttp (0.09 s); the extractor's
    libraries are the workers' (10 MB); py3AMF, through the WARC's indexer, would import
    pkg_resources (7 MB, 0.05 s) for what its own __file__ tells it; rich draws the progress
    table, shown only on a terminal (18-24 ms of the start); pyarrow.compute is for
    ``newsarchive pull`` (24 ms of the start)."""
    probe = tmp_path / "modules"
    extensions = json.dumps({**settings.EXTENSIONS, "tests.crawler.cli.modules_probe.ModulesProbe": 0})
    run = run_cli(
        "crawl", "--mirror", "--archive", str(tmp_path / "archive"),
        "-s", f"EXTENSIONS={extensions}", "-s", f"MODULES_PROBE_FILE={probe}",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    imported = set(probe.read_text().split())
    packages = {name.partition(".")[0] for name in imported}
    assert {"pyarrow", "scrapy"} <= packages
    unused = {"pandas", "aiohttp", "trafilatura", "readability", "htmldate", "pkg_resources", "rich"}
    assert not unused & packages
    assert "pyarrow.compute" not in imported
    assert "cdxj_indexer" in packages  # the WARC was indexed
    assert list((tmp_path / "archive").glob("outlet=*/published=*/*.parquet"))


@pytest.mark.parametrize(
    ("arguments", "said"),
    [
        (("-s", "FOO"), "-s FOO: not NAME=VALUE"),  # as Scrapy refuses it
        (("-s", "=1"), "-s =1: not NAME=VALUE"),
        (("-s", "DOWNLAOD_DELAY=2"), "-s DOWNLAOD_DELAY: no setting of Scrapy, newsarchive or scrapy-redis "
         "has this name; did you mean DOWNLOAD_DELAY or"),
        (("-s", "NO_SUCH_THING=1"), "-s NO_SUCH_THING: no setting of Scrapy, newsarchive or scrapy-redis"),
        (("--refetch-after", "-3"), "--refetch-after -3: not a number of days (0 or more)"),
        (("--refetch-after", "nan"), "--refetch-after nan: not a number of days"),
        (("--refetch-after", "inf"), "--refetch-after inf: not a number of days"),
        (("--refetch-after", "a week"), "--refetch-after a week: not a number of days"),
        (("-s", "REVISIT_AFTER_DAYS=-1"), "-s REVISIT_AFTER_DAYS -1: not a number of days (0 or more)"),
        (("--max-runtime", "0"), "--max-runtime 0: not a duration (90s, 30m, 2h, or seconds, more than 0)"),
        (("--max-runtime=-5m",), "--max-runtime -5m: not a duration"),
        (("--max-runtime", "10d"), "--max-runtime 10d: not a duration"),
        (("--max-runtime", "5m", "-s", "CLOSESPIDER_TIMEOUT=60"), "--max-runtime and -s CLOSESPIDER_TIMEOUT"),
        (("--mirror", "-s", "MIRROR_URL=http://127.0.0.1:9"), "-s MIRROR_URL: --mirror and --mirror-url"),
        (("--mirror-url", "http://127.0.0.1:9", "-s", "DOWNLOAD_HANDLERS={}"), "-s DOWNLOAD_HANDLERS: "),
        (("--outlet", "nosuch"), "unknown outlet id(s): nosuch (known: "),
        (("--archive", "gs://bucket/prefix"), "archive 'gs://bucket/prefix': unsupported scheme gs://"),
        (("--outlets-file", "tests/no-such-outlets.toml"), "registry error: "),
        (("-s", "EXTRACT_WORKERS=-1"), "-1 page workers (--jobs or EXTRACT_WORKERS): give 1 or more"),
    ],
)  # fmt: skip
def test_a_mistake_on_the_command_line_is_one_line_exit_2_and_the_verdict_says_it(
    arguments, said, tmp_path, capsys
):
    summary_json = tmp_path / "last-run.json"
    summary_json.write_text('{"exit_code": 0, "reason": "the last run"}')
    code = main(
        ["crawl", "--archive", str(tmp_path / "archive"), *arguments, "--summary-json", str(summary_json)]
    )
    out, err = capsys.readouterr()
    assert code == ExitCode.USAGE
    assert out == "" and err.startswith(f"newsarchive: {said}") and err.count("\n") == 1
    written = verdict(summary_json)
    assert (
        written["exit_code"] == ExitCode.USAGE
        and written["reason"] == err.removeprefix("newsarchive: ").strip()
    )
    assert written["crawl_id"] and written["started_at"] <= written["finished_at"]
    assert not (tmp_path / "archive").exists()


def test_a_summary_json_that_cannot_be_written_is_refused_before_the_crawl(tmp_path, capsys):
    code = main(["crawl", "--archive", str(tmp_path / "archive"), "--summary-json", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == ExitCode.USAGE and out == ""
    assert err == f"newsarchive: --summary-json {tmp_path}: not a file in an existing folder\n"
    assert not (tmp_path / "archive").exists()


def test_the_settings_of_scrapy_redis_and_of_an_added_component_are_not_refused(tmp_path, capsys):
    """Refused instead for an archive nobody can write: the -s before it passed."""
    for arguments in (
        ("-s", "SCHEDULER_PERSIST=1", "-s", "REDIS_HOST=127.0.0.1"),  # scrapy-redis's
        ("-s", "EXTENSIONS={}", "-s", "MY_EXTENSIONS_SETTING=1"),  # a component's, unknown here
        ("-s", "TWISTED_DNS_RESOLVER=my.module.Resolver", "-s", "MY_RESOLVERS_SETTING=1"),
    ):
        assert main(["crawl", *arguments, "--archive", "gs://bucket/prefix"]) == ExitCode.USAGE
        assert "unsupported scheme gs://" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("30m", 1800), ("2h", 7200), ("45", 45), ("1.5h", 5400)]
)
def test_max_runtime_takes_seconds_minutes_or_hours(text, seconds):
    assert duration_seconds(text) == seconds


@pytest.mark.parametrize("quiet", [(), ("--quiet",)])
def test_a_busy_archive_exits_75_with_its_verdict_and_says_nothing_under_quiet(quiet, tmp_path, capsys):
    archive, summary_json = tmp_path / "archive", tmp_path / "last-run.json"
    with archive_lock(LocalStore(archive), "the-first-run"):
        code = main(
            ["crawl", "--mirror", "--archive", str(archive), "--summary-json", str(summary_json), *quiet]
        )
    out, err = capsys.readouterr()
    assert code == ExitCode.BUSY
    written = verdict(summary_json)
    assert written["exit_code"] == ExitCode.BUSY and "is held by run the-first-run" in written["reason"]
    assert out == "" and (err == "" if quiet else written["reason"] in err)
    assert not list(archive.glob("outlet=*"))


def test_summary_json_dash_is_stdout(tmp_path, capsys):
    assert main(["crawl", "-s", "FOO", "--summary-json", "-"]) == ExitCode.USAGE
    out, err = capsys.readouterr()
    assert (
        json.loads(out)["reason"] == "-s FOO: not NAME=VALUE"
        and err == "newsarchive: -s FOO: not NAME=VALUE\n"
    )


def outlet_articles(mirror: MirrorServer) -> list:
    return [a for a in mirror.mirror.articles if a.outlet_id == OUTLET and a.expect == "archived"]


@pytest.mark.slow
def test_what_a_library_logs_about_one_page_is_counted_not_an_error_of_the_run(mirror, tmp_path):
    """trafilatura logs "ERROR parsed tree length: 1 ..." for a fragment served as a page: the
    page is counted (not an article), and the run, otherwise clean, exits 0 and prints nothing."""
    odd = urlsplit(outlet_articles(mirror)[0].url)
    page = mirror.mirror.pages[(odd.netloc, odd.path)]
    fragment = (FIXTURES / "crawl" / "fragment_page.html").read_bytes()
    mirror.mirror.pages[(odd.netloc, odd.path)] = dataclasses.replace(page, body=fragment)
    summary_json = tmp_path / "last-run.json"
    run = run_cli(
        "crawl", "--mirror-url", mirror.url, "--archive", str(tmp_path / "archive"), "--outlet", OUTLET,
        "--quiet", "--log-level", "INFO", "--summary-json", str(summary_json),
    )  # fmt: skip
    assert (run.returncode, run.stdout) == (0, ""), run.stdout + run.stderr[-3000:]
    said = "a worker's libraries logged, on one task: trafilatura.utils ERROR: parsed tree length: 1"
    assert f"[pipelines.runtime.pool] INFO: {said}" in run.stderr
    assert stat(run.stderr, LIBRARY_LOGGED) == 1 and stat(run.stderr, "log_count/ERROR") == 0
    written = verdict(summary_json)
    assert (written["exit_code"], written["reason"]) == (0, "all well")
    assert written["outlets"][OUTLET]["archived"] == len(outlet_articles(mirror)) - 1


@pytest.mark.slow
def test_max_runtime_stops_the_run_as_interrupted_even_with_a_page_that_never_answers(mirror, tmp_path):
    """The page held by the proxy outlives the bound and the run: the shutdown waits for it at
    most DOWNLOAD_TIMEOUT; the run is sealed as interrupted, exit 4, said even under --quiet."""
    archive, summary_json = tmp_path / "archive", tmp_path / "last-run.json"
    held = urlsplit(outlet_articles(mirror)[-1].url).path
    with FaultProxy(mirror.url, lambda method, path: "hold" if path.endswith(held) else "pass") as proxy:
        run = run_cli(
            "crawl", "--mirror-url", proxy.url, "--archive", str(archive), "--outlet", OUTLET,
            "--max-runtime", "1s", "-s", "DOWNLOAD_TIMEOUT=3", "--summary-json", str(summary_json), "--quiet",
        )  # fmt: skip
        assert proxy.held.is_set() and not proxy.release.is_set()  # the crawl ended while it held the page
    assert run.returncode == ExitCode.STOPPED, run.stdout + run.stderr[-3000:]
    stopped = "the crawl was stopped before its end (it reached its time bound, --max-runtime or "
    assert f"PROBLEM {stopped}" in run.stdout
    written = verdict(summary_json)
    assert written["exit_code"] == ExitCode.STOPPED and stopped in written["reason"]
    [manifest] = [json.loads(p.read_text()) for p in (archive / "_manifests").glob("*.json")]
    assert manifest["interrupted"] is True


def article_requests(server: MirrorServer, since: int = 0) -> list[str]:
    """The article pages of the mirror requested after the first ``since`` requests, in order."""
    pages = {requested_as(article.url) for article in server.mirror.articles}
    return [path for path in server.requested[since:] if path in pages]


def discovery_pages_changed(server: MirrorServer) -> None:
    """Every sitemap, feed and listing page of the mirror served with other bytes (another ETag),
    as a live site's change between two runs: discovery reads them all again and judges every
    link on them again."""
    articles = {
        (urlsplit(article.url).netloc, urlsplit(article.url).path) for article in server.mirror.articles
    }
    for place, page in list(server.mirror.pages.items()):
        if place not in articles and page.status == 200 and "text/plain" not in page.content_type:
            server.mirror.pages[place] = dataclasses.replace(page, body=page.body + b"\n<!-- changed -->\n")


@pytest.mark.slow
def test_run_2_on_an_unchanged_site_fetches_no_article_page(mirror_crawl, mirror, tmp_path):
    """Every discovery page read again, every link judged again: of the article pages, the
    archived ones are known and the one that was no article and the one robots.txt refused are
    remembered (``revisit_later``), so none is requested."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
    archive, summary_json = shutil.copytree(mirror_crawl.archive, tmp_path / "archive"), tmp_path / "run.json"
    discovery_pages_changed(mirror)
    run = run_cli(
        "crawl", "--mirror-url", mirror.url, "--archive", str(archive), "--summary-json", str(summary_json)
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert mirror.requested and not mirror.not_modified  # every discovery page read whole
    assert article_requests(mirror) == []
    totals = verdict(summary_json)["totals"]
    archived = [a for a in mirror.mirror.articles if a.expect == "archived"]
    # each counted once per link to it (a page can be in a sitemap and a feed)
    assert totals["fetched"] == 0 and totals["known"] >= len(archived) and totals["revisit_later"] >= 2
    assert "not fetched again yet, their last fetch archived no row" in run.stdout
    assert "published: 0 file(s), 0 bytes" in run.stdout  # no row (the listings' new captures are kept)


@pytest.mark.slow
def test_a_failed_page_is_fetched_next_run_and_one_of_no_row_after_revisit_after_days(mirror, tmp_path):
    """Run 1 remembers each article page that archived no row with its outcome; run 2 fetches
    only the one that failed; run 3, with REVISIT_AFTER_DAYS=0, the others again."""
    archive, summary_json = tmp_path / "archive", tmp_path / "run.json"
    outlet = "gmw-cq"
    pages = mirror.mirror.pages
    articles = [a for a in mirror.mirror.articles if a.outlet_id == outlet]
    (not_article,) = [a.url for a in articles if a.expect == "dropped"]
    noarchive, failing = [a.url for a in articles if a.expect == "archived"][:2]
    places = {url: (urlsplit(url).netloc, urlsplit(url).path) for url in (noarchive, failing)}
    served = pages[places[failing]]
    pages[places[noarchive]] = dataclasses.replace(
        pages[places[noarchive]], headers=(("X-Robots-Tag", "noarchive"),)
    )
    pages[places[failing]] = dataclasses.replace(served, status=500)

    def crawl(*extra: str) -> tuple[dict, list[str], str]:
        since = len(mirror.requested)
        command = ("crawl", "--mirror-url", mirror.url, "--archive", str(archive), "--outlet", outlet)
        run = run_cli(*command, "--summary-json", str(summary_json), *extra)
        assert run.returncode in (ExitCode.OK, ExitCode.PROBLEMS), run.stdout + run.stderr
        return (
            verdict(summary_json)["outlets"][outlet],
            sorted(set(article_requests(mirror, since))),
            run.stdout,
        )

    first, fetched, said = crawl()
    assert first["archived"] == len(articles) - 3 and requested_as(failing) in fetched
    delta = pq.read_table(archive / delta_key(said.split()[1])).to_pylist()
    visits = {entry["url"]: entry["outcome"] for entry in delta if entry["outcome"]}
    assert visits == {not_article: "not_article", noarchive: "noarchive", failing: "failed"}
    assert all(entry["article_id"] is None and entry["file"] is None for entry in delta if entry["outcome"])

    pages[places[failing]] = served
    discovery_pages_changed(mirror)
    second, fetched, _ = crawl()
    assert fetched == [requested_as(failing)]
    assert (second["archived"], second["revisit_later"], second["known"]) == (1, 2, len(articles) - 3)

    discovery_pages_changed(mirror)
    third, fetched, said = crawl("-s", "REVISIT_AFTER_DAYS=0")
    assert fetched == sorted(requested_as(url) for url in (not_article, noarchive))
    assert (third["revisit_later"], third["not_article"], third["noarchive"]) == (0, 1, 1)
    delta = pq.read_table(archive / delta_key(said.split()[1])).to_pylist()  # no row, sealed all the same
    assert {entry["url"]: entry["outcome"] for entry in delta} == {
        not_article: "not_article",
        noarchive: "noarchive",
    }
