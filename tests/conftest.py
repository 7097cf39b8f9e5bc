"""Shared fixtures: the mirror server on loopback and one crawl of all mirrors into a tmp folder."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from crawler.mirror.server import MirrorServer

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
FIXTURES = Path(__file__).resolve().parent / "fixtures"


@dataclass
class CrawlRun:
    archive: Path
    returncode: int
    stdout: str
    stderr: str


def run_cli(*args: str) -> CrawlRun:
    """``newsarchive ARGS`` in a fresh process, as an operator runs it."""
    done = subprocess.run([sys.executable, "-m", "crawler.cli", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    archive = Path(args[args.index("--archive") + 1]) if "--archive" in args else REPO / "output"
    return CrawlRun(archive, done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def mirror_server():
    with MirrorServer() as server:
        yield server


@pytest.fixture(scope="session")
def mirror_crawl(mirror_server, tmp_path_factory) -> CrawlRun:
    archive = tmp_path_factory.mktemp("archive")
    return run_cli("crawl", "--mirror-url", mirror_server.url, "--archive", str(archive))


@pytest.fixture(scope="session")
def yardstick():
    """The shared extraction yardstick (../shared/tools/score_extract.py)."""
    spec = importlib.util.spec_from_file_location("score_extract", SHARED / "tools" / "score_extract.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
