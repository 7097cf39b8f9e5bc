"""The archivist commands (crawler/cli/archivist.py) import neither Scrapy nor Twisted: 0.5 s of
every ``newsarchive ls`` went to importing them."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

# runs one command as the program does, then names the frameworks it imported (last line of stderr)
PROBE = """
import sys
from crawler.cli import main
code = main(sys.argv[1:])
print(sorted({name.partition(".")[0] for name in sys.modules} & {"scrapy", "twisted"}), file=sys.stderr)
sys.exit(code)
"""


@pytest.fixture
def archive(mirror_crawl, tmp_path):
    """A copy of the mirror crawl's archive, for the commands that write to it."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
    return shutil.copytree(mirror_crawl.archive, tmp_path / "archive")


@pytest.mark.parametrize(
    "command",
    [
        ["ls"],
        ["ls", "--json"],
        ["verify"],
        ["pull", "{tmp}/pulled.jsonl", "--format", "jsonl"],
        ["card", "--out", "{tmp}/card"],
        ["compact"],
        ["reindex"],
        ["reextract", "--to", "{tmp}/again", "--jobs", "1"],
    ],
    ids=lambda command: "-".join(word for word in command if "{" not in word),
)
@pytest.mark.slow
def test_an_archivist_command_imports_no_scrapy_nor_twisted(archive, tmp_path, command):
    name, *rest = command
    argv = [name, str(archive), *(word.format(tmp=tmp_path) for word in rest)]
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.splitlines()[-1] == "[]"
