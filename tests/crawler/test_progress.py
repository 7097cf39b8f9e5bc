"""On a terminal, ``newsarchive crawl`` shows a live table per outlet instead of Scrapy's log."""

from __future__ import annotations

import os
import pty
import re
import subprocess
import sys

from crawler.mirror.server import MirrorServer
from tests.conftest import REPO


def test_a_crawl_on_a_terminal_shows_its_outlets_progress(tmp_path):
    with MirrorServer() as mirror:
        primary, secondary = pty.openpty()
        crawl = subprocess.Popen(
            [
                *(sys.executable, "-m", "crawler", "crawl", "--mirror-url", mirror.url),
                *("--archive", str(tmp_path / "archive"), "--outlet", "sxkjt", "--log-level", "INFO"),
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
    assert "discovered" in text and "archived" in text
    rows = re.findall(r"sxkjt +(\d+) +(\d+) +(\d+) +(\d+)", text)
    assert rows[-1] == ("5", "5", "5", "0")  # discovered, fetched, archived, failed: at the end
    # once the crawl runs, Scrapy's log prints through rich, above the table
    assert "Closing spider (finished)" in text and "[scrapy.core.engine] INFO: Closing" not in text


def _read(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the crawl closed its end of the terminal
        return b""
