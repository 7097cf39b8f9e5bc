"""On a terminal, ``newsarchive crawl`` shows a live table per outlet instead of Scrapy's log: figures
of its summary, by the same names, ending with the values ``--summary-json`` writes."""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys

import pytest

from crawler.mirror.server import MirrorServer
from crawler.progress import LIVE_COLUMNS
from tests.conftest import REPO


@pytest.mark.slow
def test_a_crawl_on_a_terminal_shows_its_outlets_progress(tmp_path):
    with MirrorServer() as mirror:
        primary, secondary = pty.openpty()
        crawl = subprocess.Popen(
            [
                *(sys.executable, "-m", "crawler", "crawl", "--mirror-url", mirror.url),
                *("--archive", str(tmp_path / "archive"), "--outlet", "sxkjt", "--log-level", "INFO"),
                *("--summary-json", str(tmp_path / "run.json")),
            ],
            cwd=REPO,
            stdout=subprocess.DEVNULL,
            stderr=secondary,
            env=os.environ | {"COLUMNS": "120", "TERM": "xterm"},
        )
        os.close(secondary)
        shown = b""
        while chunk := _read(primary):
            shown += chunk
        os.close(primary)
        assert crawl.wait(timeout=300) == 0
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", shown.decode("utf-8", "replace"))  # no colours
    assert re.search(r"outlet +" + " +".join(LIVE_COLUMNS), text)
    rows = re.findall(r"sxkjt" + r" +(\d+)" * len(LIVE_COLUMNS), text)
    figures = json.loads((tmp_path / "run.json").read_text(encoding="utf-8"))["outlets"]["sxkjt"]
    assert rows[-1] == tuple(str(figures[name]) for name in LIVE_COLUMNS)  # at the end: the run's
    assert figures["archived"] == 5
    # once the crawl runs, Scrapy's log prints through rich, above the table
    assert "Closing spider (finished)" in text and "[scrapy.core.engine] INFO: Closing" not in text


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the crawl closed its end of the terminal
        return b""
