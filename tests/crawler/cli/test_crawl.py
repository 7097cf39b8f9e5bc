from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from crawler import settings
from crawler.cli.exits import ExitCode
from tests.conftest import REPO, run_cli

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
    run = run_cli(
        "crawl", "--mirror", "--archive", str(tmp_path / "archive"), "-s", "SCHEDULER=builtins.object"
    )
    assert run.returncode == ExitCode.BUG
    assert "the crawl could not start" in run.stderr and "scheduler interface" in run.stderr
    assert "our own code raised (start: 1)" in run.stdout


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
