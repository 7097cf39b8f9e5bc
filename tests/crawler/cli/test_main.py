"""``newsarchive`` itself (crawler/__main__.py, crawler/cli/__init__.py): a crawl's workers start
before Scrapy is imported; ``--version``; a closed pipe ends a command quietly."""

from __future__ import annotations

import os
import subprocess
import sys
from importlib.metadata import version

import pytest

from crawler.cli import main
from crawler.cli.exits import ExitCode
from pipelines.stages.extraction.provenance import RULES_DIGEST
from tests.conftest import FIXTURES, REPO, run_cli


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


def test_version_names_newsarchive_and_the_libraries_that_decide_the_rows(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    out, err = capsys.readouterr()
    assert done.value.code == 0 and err == ""
    (line,) = out.splitlines()
    assert line.startswith(f"newsarchive {version('newsarchive')} rules {RULES_DIGEST} (")
    for package in ("trafilatura", "readability-lxml", "pyarrow", "scrapy"):
        assert f"{package} {version(package)}" in line


@pytest.mark.parametrize(
    "command",
    [
        ["ls", "{archive}"],
        ["ls", "--json", "{archive}"],
        ["verify", "{archive}"],
        ["pull", "{archive}", "-", "--format", "jsonl"],
        ["extract", "--jsonl", "--jobs", "1", str(FIXTURES / "pages" / "article_among_furniture.html")],
        ["--version"],
    ],
    ids=lambda command: "-".join(word for word in command if "/" not in word and "{" not in word),
)
@pytest.mark.parametrize("unbuffered", ["", "1"], ids=["buffered", "unbuffered"])
@pytest.mark.slow
def test_a_reader_that_left_ends_the_command_quietly(request, command, unbuffered):
    """``newsarchive ls A | head -1``: the pipe's reader is gone before the command writes (a
    buffered output finds out when it is flushed, an unbuffered one at its first line)."""
    if "{archive}" in command:
        mirror_crawl = request.getfixturevalue("mirror_crawl")
        assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
        command = [word.format(archive=mirror_crawl.archive) for word in command]
    reading, writing = os.pipe()
    os.close(reading)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "crawler", *command],
            cwd=REPO,
            stdout=writing,
            stderr=subprocess.PIPE,
            text=True,
            timeout=300,
            env={**os.environ, "PYTHONUNBUFFERED": unbuffered},
        )
    finally:
        os.close(writing)
    assert done.returncode == ExitCode.CLOSED_PIPE == 141, done.stderr
    assert done.stderr == ""
