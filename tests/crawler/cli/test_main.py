"""``newsarchive`` itself (crawler/__main__.py): a crawl's workers start before Scrapy is imported."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO, run_cli


def test_the_program_starts_without_importing_scrapy():
    heavy = "('scrapy', 'twisted', 'pyarrow')"
    check = f"import sys, crawler.__main__; print(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("setting", "taken", "closed"),
    [
        (("-s", "EXTRACT_WORKERS=3"), 3, 0),  # as many as asked, not one per core
        (("--set=EXTRACT_WORKERS=1",), 1, (os.cpu_count() or 1) - 1),  # unread here: the pool closes the rest
    ],
)
@pytest.mark.slow
def test_a_crawls_pool_takes_over_the_workers_started_first(tmp_path, setting, taken, closed):
    run = run_cli(
        "crawl", "--mirror", "--outlet", "sxkjt", "--archive", str(tmp_path / "archive"),
        "--log-level", "DEBUG", *setting,
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert f"took over {taken} worker(s) started ahead, closed {closed}" in run.stderr
    assert list((tmp_path / "archive").glob("outlet=sxkjt/published=*/*.parquet"))
