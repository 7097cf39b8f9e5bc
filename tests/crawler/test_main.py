"""``newsarchive`` itself (crawler/__main__.py): a crawl's workers start before Scrapy is imported."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import REPO, run_cli


def test_the_program_starts_without_importing_scrapy():
    heavy = "('scrapy', 'twisted', 'pyarrow')"
    check = f"import sys, crawler.__main__; print(sorted(m for m in {heavy} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_crawls_pool_takes_over_the_workers_started_first_and_closes_the_rest(tmp_path):
    run = run_cli(
        "crawl", "--mirror", "--outlet", "sxkjt", "--archive", str(tmp_path / "archive"),
        "--log-level", "DEBUG", "-s", "EXTRACT_WORKERS=1",
    )  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr[-3000:]
    assert f"took over 1 worker(s) started ahead, closed {(os.cpu_count() or 1) - 1}" in run.stderr
    assert list((tmp_path / "archive").glob("outlet=sxkjt/published=*/*.parquet"))
