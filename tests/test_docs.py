"""Every command the README and docs/ show is run by a test, and every link there leads somewhere.

A command is a line of a ```sh, ```bash, ```console or ```shell block that runs `newsarchive`,
`make`, `python` or `scrapy`. Each is run here, as written but for the placeholders below, or is
one of ELSEWHERE, which names the test that runs it (a real bucket, a Redis, CI itself); a command
that is neither fails, so a command added to the docs comes with its test.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

from crawler.cli import main
from tests.conftest import FIXTURES, REPO

DOCS = [REPO / "README.md", REPO / "CHANGELOG.md", *sorted((REPO / "docs").glob("*.md"))]
SHELL_FENCES = {"sh", "bash", "console", "shell"}
PROGRAMS = {"newsarchive", "make", "python", "scrapy"}

# The placeholders, written once. Commands run in a copy of WORKDIR (the saved pages, urls.tsv and
# my-outlets.toml they name), where `output` (ARCHIVE in a synopsis) is a copy of the mirror crawl's
# archive; PATHS maps the absolute paths the docs show into that folder.
WORKDIR = FIXTURES / "docs" / "workdir"
ARCHIVE = "output"
PATHS = {"/data/news": "news", "/tmp/news": "news"}
# Commands that fetch from the live outlets run on the offline mirrors instead: `--mirror-url` added.
FETCHING = {"crawl", "try"}


@dataclass(frozen=True)
class Command:
    doc: str
    words: tuple[str, ...]
    stdout_to: str | None  # `> FILE`

    @property
    def key(self) -> str:
        return shlex.join(self.words)


def documented_commands() -> list[Command]:
    found: dict[str, Command] = {}
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for fence, body in re.findall(r"^[ \t]*```(\w*)\n(.*?)^[ \t]*```", text, re.MULTILINE | re.DOTALL):
            if fence in SHELL_FENCES:  # a block indented in a list item too
                for line in body.replace("\\\n", " ").splitlines():
                    for words, stdout_to in _commands(line):
                        command = Command(doc.relative_to(REPO).as_posix(), words, stdout_to)
                        found.setdefault(command.key, command)
    return list(found.values())


def _commands(line: str) -> list[tuple[tuple[str, ...], str | None]]:
    """The commands of one shell line: a prompt, comments, environment assignments, cron's schedule,
    stderr's redirection and `&` left out; programs other than PROGRAMS (`cd`, `echo`) too."""
    line = re.sub(r"^\s*\$ ", "", line)
    line = re.sub(r"(^|\s)#.*$", "", line)
    commands = []
    for segment in re.split(r"&&|\|\||;", line):
        words = shlex.split(segment)
        while words and (re.fullmatch(r"[A-Z_]+=.*", words[0]) or re.fullmatch(r"[\d*/,-]+", words[0])):
            words = words[1:]
        if words and words[-1] == "&":
            words = words[:-1]
        words = [w for w in words if not re.fullmatch(r"\d>>?\S+", w)]  # stderr to a log
        stdout_to = None
        if len(words) > 2 and words[-2] == ">":
            words, stdout_to = words[:-2], words[-1]
        if words and Path(words[0]).name in PROGRAMS:
            commands.append(((Path(words[0]).name, *words[1:]), stdout_to))
    return commands


# The README's crontab line is deploy/crontab.example's (a test below), which tests/test_deploy.py runs.
CRONTAB = (REPO / "deploy" / "crontab.example").read_text(encoding="utf-8")
(CRON_LINE,) = [line for line in CRONTAB.splitlines() if line.startswith("7 ")]
(CRON_COMMAND,) = [shlex.join(words) for words, _ in _commands(CRON_LINE)]
# Commands run by another test, and that test. Keys are the commands as the docs show them (without
# `.venv/bin/`, comments, redirections and environment assignments).
S3_CRAWL = "tests/test_object_storage.py::test_the_crawl_lands_in_the_store_as_in_a_local_folder"
S3_FLUSH = "tests/test_object_storage.py::test_store_down_for_the_whole_run"
REDIS_CRAWL = (
    "tests/test_redis_crawl.py::"
    "test_two_workers_archive_exactly_what_one_process_does_and_fetch_each_page_once"
)
ELSEWHERE = {
    "make test": ".ci/run",
    "make run": "tests/test_end_to_end.py::test_every_mirrored_article_is_archived_once",
    "newsarchive crawl --archive s3://news-archive/v1": S3_CRAWL,
    "newsarchive crawl --archive s3://news-bucket/archive --outlet gmw-cq --outlet sxkjt": S3_CRAWL,
    "newsarchive crawl --archive s3://news-bucket/archive": S3_CRAWL,
    "newsarchive flush --archive s3://news-bucket/archive": S3_FLUSH,
    "newsarchive crawl --redis redis://HOST:6379/0 --archive s3://news-bucket/archive": REDIS_CRAWL,
    "newsarchive crawl --redis redis://10.0.0.5:6379/0 --archive s3://news-bucket/archive"
    " -s EXTRACT_WORKERS=1": REDIS_CRAWL,
    "scrapy list": "tests/crawler/test_spider.py::test_scrapy_project_lists_the_spider",
    CRON_COMMAND: "tests/test_deploy.py::test_the_crontab_line_is_silent_on_0_and_75_and_speaks_otherwise",
}


COMMANDS = documented_commands()


def _param(command: Command):
    slow = command.key not in ELSEWHERE and (
        command.words[0] != "newsarchive" or command.words[1] in {*FETCHING, "mirror", "extract", "reextract"}
    )
    return pytest.param(command, id=command.key, marks=[pytest.mark.slow] if slow else [])


@pytest.fixture
def workdir(tmp_path, mirror_crawl, monkeypatch) -> Path:
    """A copy of WORKDIR with the mirror crawl's archive as `output`, the current folder."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stderr
    folder = tmp_path / "work"
    shutil.copytree(WORKDIR, folder)
    shutil.copytree(mirror_crawl.archive, folder / ARCHIVE)
    monkeypatch.chdir(folder)
    return folder


@pytest.mark.parametrize("command", [_param(c) for c in COMMANDS])
def test_every_documented_command_is_run(command, request):
    if command.key in ELSEWHERE:
        _assert_the_test_exists(ELSEWHERE[command.key], command.key)
        return
    program, *args = command.words
    if program == "newsarchive" and not any("s3://" in a or a.startswith("redis") for a in args):
        workdir, mirror_server = request.getfixturevalue("workdir"), request.getfixturevalue("mirror_server")
        args = [PATHS.get(a, a) for a in args]
        if args[0] == "mirror":
            _serve_the_mirrors(args)
        elif args[0] in FETCHING:
            if "--mirror" not in args:
                args += ["--mirror-url", mirror_server.url]
            ran = subprocess.run(
                [sys.executable, "-m", "crawler", *args],
                cwd=workdir,
                capture_output=True,
                text=True,
                timeout=300,
            )
            assert ran.returncode == 0, f"{command.doc}: {command.key}\n{ran.stdout}{ran.stderr}"
        else:
            capsys = request.getfixturevalue("capsys")
            try:
                code = main(args)
            except SystemExit as exit_:  # --help, --version
                code = exit_.code
            out, err = capsys.readouterr()
            assert code == 0, f"{command.doc}: {command.key}\n{out}{err}"
            if command.stdout_to:
                (workdir / command.stdout_to).write_text(out, encoding="utf-8")
                assert out.strip()
    elif program == "scrapy" and args[:1] == ["crawl"]:
        workdir, mirror_server = request.getfixturevalue("workdir"), request.getfixturevalue("mirror_server")
        handler = "crawler.mirror.handler.MirrorDownloadHandler"
        mirrored = [
            *("-s", f"MIRROR_URL={mirror_server.url}"),
            *("-s", "DOWNLOAD_HANDLERS=" + json.dumps({"http": handler, "https": handler})),
        ]
        settings = [_in(workdir, a) for a in args]
        scrapy = Path(sys.executable).with_name("scrapy")  # run where scrapy.cfg is
        ran = subprocess.run(
            [str(scrapy), *settings, *mirrored], cwd=REPO, capture_output=True, text=True, timeout=300
        )
        assert ran.returncode == 0, f"{command.doc}: {command.key}\n{ran.stdout}{ran.stderr}"
        assert list((workdir / "news").glob("outlet=gmw-cq/*/*.parquet"))
    else:
        pytest.fail(
            f"{command.doc}: `{command.key}` is run by no test: run it in tests/test_docs.py, or name "
            "the test that runs it in ELSEWHERE"
        )


def _in(workdir: Path, setting: str) -> str:
    """A `NAME=PATH` setting with the docs' path put into the work folder."""
    name, _, value = setting.partition("=")
    return f"{name}={workdir / PATHS[value]}" if value in PATHS else setting


def _assert_the_test_exists(where: str, key: str) -> None:
    path, _, name = where.partition("::")
    source = (REPO / path).read_text(encoding="utf-8")
    assert (f"def {name}(" in source) if name else (key in source), f"{key}: {where} does not run it"


def _serve_the_mirrors(args: list[str]) -> None:
    """`newsarchive mirror` serves until interrupted: on a free port, one page asked, then Ctrl-C."""
    args = [*args[: args.index("--port") + 1], "0"] if "--port" in args else args
    with subprocess.Popen(
        [sys.executable, "-u", "-m", "crawler", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as server:
        first = server.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+", first)
        assert url, first + server.stderr.read()
        with urllib.request.urlopen(f"{url.group(0)}/difang.gmw.cn/cq/", timeout=30) as page:
            assert page.status == 200
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=60) == 0


# Python blocks that read the local archive `output`, by document and section; the blocks of other
# sections run elsewhere (tests/test_reading_examples.py: from a bucket; tests/test_warc.py: a WARC).
READING_EXAMPLES = [("README.md", "## Read the result"), ("docs/archivists.md", "## Reading the archive")]


@pytest.mark.parametrize(("doc", "section"), READING_EXAMPLES, ids=[d for d, _ in READING_EXAMPLES])
def test_the_reading_examples_read_the_archive(doc, section, workdir):
    text = (REPO / doc).read_text(encoding="utf-8").split(f"\n{section}\n", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    scope: dict = {}
    exec(example, scope)
    frames = [
        v for v in scope.values() if hasattr(v, "collect") or hasattr(v, "num_rows") or hasattr(v, "shape")
    ]
    assert frames, "the example reads nothing"
    for frame in frames:
        rows = frame.collect().height if hasattr(frame, "collect") else len(frame)
        assert rows > 0


def test_the_readmes_crontab_line_is_the_one_deploy_ships():
    assert CRON_LINE in (REPO / "README.md").read_text(encoding="utf-8").splitlines()


@pytest.mark.parametrize("doc", ["README.md", "docs/operating.md"])
def test_the_sample_summary_is_what_the_crawl_prints(doc):
    """tests/crawler/test_report.py holds the fixture to a real crawl's output; the docs show it."""
    sample = (FIXTURES / "report" / "mirror_summary.txt").read_text(encoding="utf-8")
    assert f"```\n{sample}```\n" in (REPO / doc).read_text(encoding="utf-8")


def test_every_command_named_elsewhere_is_still_in_the_docs():
    shown = {c.key for c in COMMANDS}
    assert sorted(set(ELSEWHERE) - shown) == []


def test_the_docs_show_commands_at_all():
    assert {c.words[1] for c in COMMANDS if c.words[0] == "newsarchive"} >= {"crawl", "ls", "verify", "pull"}


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(doc: Path) -> set[str]:
    text = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    return {_slug(h) for h in re.findall(r"^#+ (.+)$", text, re.MULTILINE)}


@pytest.mark.parametrize("doc", DOCS, ids=lambda d: d.relative_to(REPO).as_posix())
def test_every_relative_link_leads_to_a_file_and_heading(doc):
    text = re.sub(r"^```.*?^```", "", doc.read_text(encoding="utf-8"), flags=re.MULTILINE | re.DOTALL)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        linked = (doc.parent / path).resolve() if path else doc
        if not linked.exists() or (anchor and (linked.suffix != ".md" or anchor not in _anchors(linked))):
            broken.append(target)
    assert broken == []


def test_the_readme_is_one_screen_of_reading():
    assert len((REPO / "README.md").read_text(encoding="utf-8").splitlines()) <= 300
