"""Cron-grade runs through the CLI: corrections become versions, and one run at a time per archive."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from urllib.parse import urlsplit

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from crawler.mirror.server import MirrorServer
from crawler.mirror.sites import build_mirror
from pipelines.dedup import article_id
from pipelines.lock import BUSY_EXIT, archive_lock
from pipelines.storage import LocalStore
from tests.conftest import REPO, run_cli

OUTLET = "sxkjt"


@pytest.fixture
def mirror():
    with MirrorServer(build_mirror()) as server:
        yield server


def crawl(mirror: MirrorServer, archive, *extra: str):
    run = run_cli("crawl", "--mirror-url", mirror.url, "--archive", str(archive), "--outlet", OUTLET, *extra)
    assert run.returncode == 0, run.stdout + run.stderr
    return run


def rows(archive) -> list[dict]:
    return ds.dataset(archive, format="parquet", partitioning="hive").to_table().to_pylist()


def summary(run) -> dict[str, int]:
    lines = run.stdout.splitlines()
    header, line = (next(text for text in lines if text.startswith(start)) for start in ("outlet", OUTLET))
    names = [n.strip() for n in header.replace("not articles", "not_articles").split()]
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

    again = summary(crawl(mirror, archive))  # no --refetch-after: known pages are not fetched
    assert (again["known"], again["pages"], again["archived"]) == (5, 0, 0)

    refetched = crawl(mirror, archive, "--refetch-after", "0")
    counts = summary(refetched)
    assert (counts["known"], counts["pages"], counts["archived"], counts["changed"], counts["unchanged"]) == (
        0,
        5,
        1,
        1,
        4,
    )
    versions = sorted((r["article_id"], r["version"]) for r in rows(archive))
    corrected_id = article_id(articles[0].url)
    assert [v for a, v in versions if a == corrected_id] == [1, 2]
    assert len(versions) == 6
    crawl_id = refetched.stdout.split()[1]
    delta = pq.read_table(archive / "_index" / f"delta-{crawl_id}.parquet").to_pylist()
    assert sorted(e["version"] for e in delta) == [1, 1, 1, 1, 2]  # four notes and the new version
    assert all(e["last_fetched"] for e in delta)


def test_a_second_run_on_a_held_archive_exits_at_once_or_waits(mirror, tmp_path):
    archive = tmp_path / "archive"
    with archive_lock(LocalStore(archive), "the-first-run"):
        busy = run_cli("crawl", "--mirror-url", mirror.url, "--archive", str(archive), "--outlet", OUTLET)
        assert busy.returncode == BUSY_EXIT
        assert "is held by run the-first-run" in busy.stderr and "--wait" in busy.stderr
        assert not list(archive.glob("outlet=*"))
        waiting = subprocess.Popen(
            [
                *(sys.executable, "-m", "crawler.cli", "crawl", "--mirror-url", mirror.url),
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
