"""The deploy examples (deploy/): the systemd units' numbers agree with the flags they run, and the
crontab line, run as cron runs it, is silent on exit 0 and 75 and speaks otherwise."""

from __future__ import annotations

import configparser
import json
import re
import shlex
import subprocess

import pytest

from crawler.cli.crawl import duration_seconds
from crawler.cli.exits import ExitCode
from crawler.common_settings import EXTRACT_TIMEOUT
from crawler.settings import DOWNLOAD_TIMEOUT
from pipelines.archive.lock import archive_lock
from pipelines.archive.storage import LocalStore
from tests.conftest import REPO

DEPLOY = REPO / "deploy"
HOUR = 3600
_SYSTEMD_UNITS = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600, "hr": 3600}


def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=False)  # %i is systemd's
    parser.optionxform = str  # systemd's keys are case-sensitive
    parser.read(DEPLOY / name)
    return parser


def systemd_seconds(value: str) -> float:
    """A systemd time span such as ``55min``, ``90s`` or ``1h 30min``."""
    spans = re.findall(r"(\d+)\s*([a-z]*)", value)
    assert spans and "".join(n + u for n, u in spans) == value.replace(" ", ""), value
    return sum(int(n) * _SYSTEMD_UNITS[u] for n, u in spans)


def command(execstart: str) -> list[str]:
    return shlex.split(execstart.replace("\\\n", " "))


@pytest.mark.parametrize("name", ["newsarchive.service", "newsarchive-worker@.service"])
def test_a_units_start_timeout_holds_its_bound_and_the_shutdown_and_fits_in_the_timers_period(name):
    service = unit(name)["Service"]
    argv = command(service["ExecStart"])
    assert argv[1:3] == ["crawl", "--quiet"]
    bound = duration_seconds(argv[argv.index("--max-runtime") + 1])
    start_timeout = systemd_seconds(service["TimeoutStartSec"])
    # after the bound: a page in flight (DOWNLOAD_TIMEOUT), its extraction, the last uploads
    assert bound + DOWNLOAD_TIMEOUT + EXTRACT_TIMEOUT < start_timeout
    timer = unit("newsarchive.timer")["Timer"]
    assert re.fullmatch(r"\*-\*-\* \*:\d\d:00", timer["OnCalendar"])  # hourly
    assert start_timeout + systemd_seconds(timer["RandomizedDelaySec"]) < HOUR
    assert service["SuccessExitStatus"].split() == [str(ExitCode.BUSY.value)]
    assert "--summary-json" in argv


def crontab_line(tmp_path, archive: str) -> str:
    """The hourly line's command, its paths moved into ``tmp_path``, crawling one mirrored outlet."""
    [line] = [line for line in (DEPLOY / "crontab.example").read_text().splitlines() if line.startswith("7 ")]
    crontab_command = line.split(None, 5)[5]
    for path, moved in (
        ("/opt/newsarchive", str(REPO)),
        ("s3://news-bucket/archive", archive),
        ("/var/lib/newsarchive", str(tmp_path / "state")),
        ("/var/log/newsarchive", str(tmp_path / "log")),
    ):
        crontab_command = crontab_command.replace(path, moved)
    for folder in ("state", "log"):
        (tmp_path / folder).mkdir(exist_ok=True)
    return crontab_command.replace("newsarchive crawl ", "newsarchive crawl --mirror --outlet sxkjt ", 1)


def run_as_cron(line: str) -> subprocess.CompletedProcess:
    return subprocess.run(["/bin/sh", "-c", line], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_crontab_line_is_silent_on_0_and_75_and_speaks_otherwise(tmp_path):
    archive = tmp_path / "archive"
    line = crontab_line(tmp_path, str(archive))
    verdict = tmp_path / "state" / "last-run.json"

    clean = run_as_cron(line)
    assert (clean.returncode, clean.stdout, clean.stderr) == (0, "", ""), (
        tmp_path / "log/crawl.log"
    ).read_text()
    assert json.loads(verdict.read_text())["exit_code"] == ExitCode.OK
    assert list(archive.glob("outlet=sxkjt/published=*/*.parquet"))

    with archive_lock(LocalStore(archive), "the-previous-run"):
        busy = run_as_cron(line)
    assert (busy.returncode, busy.stdout, busy.stderr) == (0, "", "")
    assert json.loads(verdict.read_text())["exit_code"] == ExitCode.BUSY

    refused = run_as_cron(crontab_line(tmp_path, "gs://bucket/archive"))
    assert refused.stdout.startswith("newsarchive crawl needs a look: ") and refused.stderr == ""
    assert json.loads(verdict.read_text())["exit_code"] == ExitCode.USAGE
    assert "unsupported scheme gs://" in (tmp_path / "log" / "crawl.log").read_text()
