"""The archivist commands (crawler/cli/archivist.py): they import neither Scrapy nor Twisted (0.5 s
of every ``newsarchive ls`` went to importing them), and refuse what is no archive, or a store
they cannot read, on one line with exit 2, leaving it as it was."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crawler.cli import main
from crawler.cli.exits import ExitCode
from tests.conftest import FIXTURES, REPO
from tests.objectstores import SECRET_KEY, free_port

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


# every archivist command, the archive left out: {tmp} is a folder of the test's own
COMMANDS = [
    ["ls"],
    ["ls", "--json"],
    ["verify"],
    ["pull", "{tmp}/pulled.jsonl", "--format", "jsonl"],
    ["card", "--out", "{tmp}/card"],
    ["compact"],
    ["reindex"],
    ["reextract", "--to", "{tmp}/again", "--jobs", "1"],
]
each_command = pytest.mark.parametrize(
    "command", COMMANDS, ids=lambda command: "-".join(word for word in command if "{" not in word)
)


def argv(command: list[str], archive: str, tmp: Path) -> list[str]:
    name, *rest = command
    return [name, archive, *(word.format(tmp=tmp) for word in rest)]


def refused(capsys: pytest.CaptureFixture[str], arguments: list[str]) -> str:
    """The one line ``arguments`` were refused with (exit 2, nothing on stdout, no traceback)."""
    code = main(arguments)
    out, err = capsys.readouterr()
    assert code == ExitCode.USAGE and out == "", out + err
    (line,) = err.splitlines()
    assert line.startswith("newsarchive: ")
    return line


def held(folder: Path) -> list[str]:
    return sorted(path.relative_to(folder).as_posix() for path in folder.rglob("*"))


@each_command
@pytest.mark.slow
def test_an_archivist_command_imports_no_scrapy_nor_twisted(archive, tmp_path, command):
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv(command, str(archive), tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.splitlines()[-1] == "[]"


@each_command
@pytest.mark.parametrize("made", ["an empty folder", "a folder of other files", "a file", "nothing"])
def test_a_path_that_holds_no_archive_is_refused_and_left_as_it_was(tmp_path, capsys, command, made):
    """A mistyped path verified green, listed and pulled nothing, and got a lock file."""
    path = tmp_path / "wrong"
    if made == "an empty folder":
        path.mkdir()
    elif made == "a folder of other files":  # parts, even: no manifest sealed them
        shutil.copytree(FIXTURES / "cli" / "no_archive", path)
    elif made == "a file":
        shutil.copy(FIXTURES / "cli" / "no_archive" / "notes.txt", path)
    before = held(tmp_path)
    line = refused(capsys, argv(command, str(path), tmp_path))
    reason = "not a folder" if made in ("a file", "nothing") else "no manifest under _manifests/"
    assert line.startswith(f"newsarchive: no archive at {path}: {reason}"), line
    assert held(tmp_path) == before


@each_command
@pytest.mark.parametrize("case", ["an empty prefix", "no such bucket", "wrong credentials"])
def test_a_bucket_that_holds_no_archive_or_cannot_be_read_is_refused_without_a_secret(
    object_store, monkeypatch, tmp_path, capsys, command, case
):
    for name, value in object_store.env.items():
        monkeypatch.setenv(name, value)
    bucket = object_store.create_bucket()
    uri = f"s3://{bucket}/archive"
    if case == "no such bucket":
        uri = f"s3://{bucket}-nosuch/archive"
    elif case == "wrong credentials":
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "WRONG" + SECRET_KEY)
    line = refused(capsys, argv(command, uri, tmp_path))
    if case == "an empty prefix":
        assert line == f"newsarchive: no archive at {uri}: no manifest under _manifests/ (no run sealed any)"
    else:
        assert line.startswith(f"newsarchive: the archive cannot be read: {uri}: list _manifests/ failed: ")
        assert ("NoSuchBucket" if case == "no such bucket" else "(HTTP 403)") in line, line
    assert SECRET_KEY not in line
    listed = object_store.client().list_objects_v2(Bucket=bucket)
    assert listed.get("KeyCount") == 0  # no lease, no index: the bucket as it was
    assert held(tmp_path) == []


def dead_store(monkeypatch: pytest.MonkeyPatch) -> None:
    """Credentials that would work, for an endpoint where nothing listens, given up at once."""
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "NEWSARCHIVETESTKEY")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    monkeypatch.setenv("AWS_CONFIG_FILE", "/dev/null")
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")


@each_command
def test_an_unreachable_store_is_said_on_one_line(monkeypatch, tmp_path, capsys, command):
    dead_store(monkeypatch)
    line = refused(capsys, argv(command, "s3://bucket/archive", tmp_path))
    assert line == (
        "newsarchive: the archive cannot be read: s3://bucket/archive: list _manifests/ failed: "
        "EndpointConnectionError"
    )
    assert held(tmp_path) == []


def test_reextract_to_an_unreachable_store_is_refused_before_any_work(monkeypatch, tmp_path, capsys):
    dead_store(monkeypatch)
    source = shutil.copytree(FIXTURES / "catalog", tmp_path / "source")  # manifests: an archive
    line = refused(capsys, ["reextract", str(source), "--to", "s3://bucket/again", "--jobs", "1"])
    assert line.endswith("s3://bucket/again: list _manifests/ failed: EndpointConnectionError"), line


@pytest.mark.parametrize(
    "command", [["card", "--out", "{taken}"], ["reextract", "--to", "{taken}", "--jobs", "1"]]
)
def test_a_destination_that_cannot_be_written_is_said_on_one_line(tmp_path, capsys, command):
    """A file where the command makes a folder: the path and the system's reason, no traceback."""
    archive = shutil.copytree(FIXTURES / "catalog", tmp_path / "archive")  # manifests: an archive
    taken = shutil.copy(FIXTURES / "cli" / "no_archive" / "notes.txt", tmp_path / "taken")
    name, *rest = command
    line = refused(capsys, [name, str(archive), *(word.format(taken=taken) for word in rest)])
    assert line.startswith(f"newsarchive: {taken}") and line.endswith(": File exists"), line
