"""Many machines, one crawl: workers sharing a real Redis, against the mirrors, through the CLI.

A fault proxy in front of the mirror holds one article page open (``hold``), so a test acts at a
known point of the crawl: a second worker joins, a worker is killed, Redis is restarted.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from crawler.mirror.server import MirrorServer
from crawler.mirror.sites import build_mirror
from tests.conftest import REPO, run_cli
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.slow  # crawls in subprocesses, one killed, Redis restarted mid-crawl

HELD = "/kjt.shanxi.gov.cn/zxzx/ywyl/"  # the first sxkjt article page asked for is held open


@pytest.fixture
def mirror():
    with MirrorServer(build_mirror()) as server:
        yield server


def holding_one_article(mirror: MirrorServer) -> FaultProxy:
    held: list[str] = []

    def rule(method: str, path: str) -> str:
        if path.startswith(HELD) and path.endswith(".shtml") and "index" not in path and not held:
            held.append(path)
            return "hold"
        return "pass"

    return FaultProxy(mirror.url, rule)


def worker(
    proxy: FaultProxy, archive: Path | str, redis_url: str, *extra: str, cwd: Path = REPO
) -> subprocess.Popen[str]:
    """``newsarchive crawl --redis`` in a process group of its own (its extraction workers too)."""
    return subprocess.Popen(
        [
            *(sys.executable, "-m", "crawler", "crawl", "--mirror-url", proxy.url),
            *("--archive", str(archive), "--redis", redis_url, "--log-level", "INFO", *extra),
        ],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def finished(process: subprocess.Popen[str]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=300)
    return process.returncode, out, err


def archived(archive: Path) -> list[dict]:
    dataset = ds.dataset(archive, format="parquet", partitioning="hive")
    return dataset.to_table(columns=["article_id", "url", "text_hash"]).to_pylist()


def total(summary: str, column: str) -> int:
    """A column of the summary's total line."""
    lines = summary.splitlines()
    header = next(line for line in lines if line.startswith("outlet")).replace("not articles", "not_articles")
    figures = next(line for line in lines if line.startswith("total")).split()
    return int(figures[header.split().index(column)])


def article_pages_asked(mirror: MirrorServer) -> Counter[str]:
    pages = {a.url.split("://", 1)[1] for a in mirror.mirror.articles}
    return Counter(r for r in mirror.requested if r in pages)


@pytest.fixture
def single_crawl(mirror, tmp_path) -> list[dict]:
    run = run_cli("crawl", "--mirror-url", mirror.url, "--archive", str(tmp_path / "single"))
    assert run.returncode == 0, run.stdout + run.stderr
    return archived(tmp_path / "single")


def test_two_workers_archive_exactly_what_one_process_does_and_fetch_each_page_once(
    mirror, redis_server, tmp_path, single_crawl
):
    """The first worker fetches one page at a time and is held on its first article page
    until the second is at work, so both take part."""
    asked_before = len(mirror.requested)
    archive, second_at_work = tmp_path / "shared", threading.Event()

    def passing(method: str, path: str) -> str:
        if path.startswith(HELD) and "index" not in path:
            second_at_work.set()
        return "pass"

    with holding_one_article(mirror) as first_proxy, FaultProxy(mirror.url, passing) as second_proxy:
        first = worker(first_proxy, archive, redis_server.url, "-s", "CONCURRENT_REQUESTS=1")
        assert first_proxy.held.wait(120)  # the first worker is inside the crawl
        second = worker(second_proxy, archive, redis_server.url)
        assert second_at_work.wait(120)
        first_proxy.release.set()  # the held page fails once (dropped), is retried, and is fetched
        (first_code, first_out, first_err), (second_code, second_out, second_err) = map(
            finished, (first, second)
        )
    assert (first_code, second_code) == (0, 0), first_out + first_err + second_out + second_err
    rows = archived(archive)
    assert sorted((r["url"], r["text_hash"]) for r in rows) == sorted(
        (r["url"], r["text_hash"]) for r in single_crawl
    )
    assert len({r["article_id"] for r in rows}) == len(rows)  # no article twice
    del mirror.requested[:asked_before]
    assert set(article_pages_asked(mirror).values()) == {1}  # no article page fetched twice
    assert "queueing the start points" in first_err and "queueing the start points" not in second_err
    assert "PROBLEM" not in first_out + second_out
    assert all(total(out, "archived") > 0 for out in (first_out, second_out))  # both took part


def test_a_worker_killed_mid_crawl_loses_nothing_and_another_finishes_its_work(
    mirror, redis_server, tmp_path, single_crawl
):
    archive = tmp_path / "shared"
    with holding_one_article(mirror) as proxy:
        doomed = worker(proxy, archive, redis_server.url, "-s", "REDIS_WORKER_TIMEOUT=3")
        assert proxy.held.wait(120)
        os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its extraction processes
        doomed.communicate()
        proxy.release.set()
        code, out, err = finished(worker(proxy, archive, redis_server.url, "-s", "REDIS_WORKER_TIMEOUT=3"))
    assert code == 0, out + err
    assert "go back to the queue" in err  # the dead worker's requests, taken over
    rows = archived(archive)
    assert {r["url"] for r in rows} == {r["url"] for r in single_crawl}  # complete
    assert len({r["article_id"] for r in rows}) == len(rows)  # no article twice


def test_redis_restarted_mid_crawl_the_crawl_completes_and_nothing_is_lost(
    mirror, redis_server, tmp_path, single_crawl
):
    archive = tmp_path / "shared"
    with holding_one_article(mirror) as proxy:
        only = worker(proxy, archive, redis_server.url)
        assert proxy.held.wait(120)
        redis_server.stop()  # a clean shutdown: the append-only file has every write
        redis_server.start()
        proxy.release.set()
        code, out, err = finished(only)
    assert code == 0, out + err
    rows = archived(archive)
    assert {r["url"] for r in rows} == {r["url"] for r in single_crawl}
    assert len({r["article_id"] for r in rows}) == len(rows)
