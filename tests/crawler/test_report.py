"""The crawl's report (crawler/report.py): each outlet's figures from a stats fixture, one list of
them (FIGURES) that the summary, the ``--summary-json`` verdict and the live table show by the
same names, and the documented outputs: summary.txt and verdict.json are the shapes the
operators' guide describes, mirror_summary.txt the sample of ``newsarchive crawl --mirror`` it shows."""

from __future__ import annotations

import json
import re
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from crawler.cli import main
from crawler.progress import LIVE_COLUMNS
from crawler.report import (
    COUNTED_BY_REASON,
    FIGURES,
    SUMMARY_COLUMNS,
    VERDICT_SCHEMA,
    OutletFigures,
    outlet_figures,
    run_verdict,
    summary,
)
from tests.conftest import run_cli

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "report"
OPERATING = Path(__file__).resolve().parents[2] / "docs" / "operating.md"
OUTLETS = ["alpha", "beta", "gamma"]
NAMES = [figure.name for figure in FIGURES]


class Bucket:
    """A store that is no local folder (the summary then prints no DuckDB command)."""

    uri = "s3://bucket/prefix"


@pytest.fixture
def stats() -> dict[str, Any]:
    stats = json.loads((FIXTURES / "stats.json").read_text(encoding="utf-8"))
    for key in ("start_time", "finish_time"):
        stats[key] = datetime.fromisoformat(stats[key])
    return stats


def test_each_outlets_figures_from_the_stats(stats):
    alpha, beta, gamma = outlet_figures(stats, OUTLETS)
    assert alpha == OutletFigures(
        outlet_id="alpha",
        known=12,
        revisit_later=6,  # fetched lately with no row: held back
        fetched=30,
        archived=24,
        copies=2,
        changed=1,
        unchanged=3,
        not_article=4,  # empty, too_short, not_html
        noarchive=1,
        duplicates=2,
        failed_by_reason={"timeout": 2, "crashed": 1},
        refused_by_reason={"http_404": 4, "robots": 1},
        found=48,  # a page held back was found all the same
        seconds=109.623,
    )
    assert (alpha.failed, alpha.refused, alpha.discovered) == (3, 5, 12 + 6 + 5 + 30)
    assert (beta.fetched, beta.archived, beta.failed, beta.failed_by_reason) == (5, 5, 1, {"error": 1})
    assert (beta.seconds, beta.found) == (0.0, 5)  # no first and last page: no time
    assert (gamma.discovered, gamma.found) == (0, 0)


def test_the_summary_the_json_and_the_live_table_show_one_list_of_figures_by_the_same_names(stats):
    assert len(set(NAMES)) == len(NAMES) and set(COUNTED_BY_REASON) <= set(NAMES)
    text, _ = summary(OUTLETS, stats, Bucket())
    assert text.splitlines()[0].split() == ["outlet", *SUMMARY_COLUMNS]
    verdict = run_verdict(OUTLETS, stats, "20261123T041500Z-1a2b3c", 5, "a bug")
    by_reason = [f"{name}_by_reason" for name in COUNTED_BY_REASON]
    for figures in [*verdict["outlets"].values(), verdict["totals"]]:
        assert list(figures) == [*NAMES, *by_reason]
    for shown in (SUMMARY_COLUMNS, LIVE_COLUMNS):  # subsets, in the list's order
        assert [name for name in NAMES if name in shown] == list(shown)
    assert {"discovered", "fetched", "archived", "failed"} <= set(LIVE_COLUMNS)


def test_the_operators_guide_lists_the_figures_and_shows_the_sample_summary():
    """Its table of the figures is this list (names, meanings, where shown); its sample is
    mirror_summary.txt, which the mirror crawl's test holds to the real output."""
    guide = OPERATING.read_text(encoding="utf-8")
    section = guide.split("\n## The figures of a run\n", 1)[1].split("\n#", 1)[0]
    table = [line for line in section.splitlines() if line.startswith("| `")]
    shown = {True: "yes", False: ""}
    assert table == [
        f"| `{f.name}` | {f.meaning} | {shown[f.in_summary]} | {shown[f.in_live_table]} |" for f in FIGURES
    ]
    assert f"```\n{(FIXTURES / 'mirror_summary.txt').read_text(encoding='utf-8')}```" in guide


def test_the_summary_is_the_documented_one(stats):
    text, healthy = summary(OUTLETS, stats, Bucket())
    assert f"{text}\n{healthy}\n" == (FIXTURES / "summary.txt").read_text(encoding="utf-8")


def test_the_verdict_has_the_documented_shape(stats):
    verdict = run_verdict(OUTLETS, stats, "20261123T041500Z-1a2b3c", 5, "our own code raised (pipeline: 1)")
    assert json.dumps(verdict, indent=1) + "\n" == (FIXTURES / "verdict.json").read_text(encoding="utf-8")


def test_a_run_that_ended_before_its_crawl_has_a_verdict_of_the_same_shape():
    """Refused or busy (exit 2, 75): no stats, no times; every figure nought, the reason on one line."""
    verdict = run_verdict(["alpha"], {}, None, 75, "the archive is held by\n  run x")
    assert verdict["schema"] == VERDICT_SCHEMA and verdict["crawl_id"] is None
    assert (verdict["exit_code"], verdict["reason"]) == (75, "the archive is held by run x")
    assert verdict["started_at"] is verdict["finished_at"] is None
    zeros = {name: 0 for name in NAMES} | {f"{name}_by_reason": {} for name in COUNTED_BY_REASON}
    assert verdict["outlets"] == {"alpha": zeros} and verdict["totals"] == zeros


SAMPLE_BYTES = ("255660", "123731")  # the sample's sizes of the parts, then of the WARCs


def _as_documented(stdout: str, archive: Path) -> str:
    """A run's summary with what differs from run to run (its id, the archive's path, this
    interpreter's, the bytes its files take: they hold times) as the documentation shows them."""
    stdout = re.sub(r"\b\d{8}T\d{6}Z-[0-9a-f]{6}\b", "20261123T164604Z-396dce", stdout)
    sizes = iter(SAMPLE_BYTES)
    stdout = re.sub(r"\b\d+ bytes\b", lambda found: f"{next(sizes, '?')} bytes", stdout)
    stdout = stdout.replace(shlex.quote(sys.executable), ".venv/bin/python")
    return stdout.replace(str(archive), "output")


@pytest.mark.slow
def test_the_mirror_crawl_prints_the_documented_summary_and_a_run_that_finds_nothing_writes_nothing(
    tmp_path,
):
    """``newsarchive crawl --mirror`` prints mirror_summary.txt (the operators' guide's sample); a
    second run into the same archive finds nothing new: it publishes no part, WARC, index delta
    or manifest, leaves nothing in the spool, and the archive still verifies."""
    archive, spool, verdict = tmp_path / "archive", tmp_path / "spool", tmp_path / "run.json"
    command = (
        "crawl",
        "--mirror",
        "--archive",
        str(archive),
        "--spool",
        str(spool),
        "--summary-json",
        str(verdict),
    )
    first = run_cli(*command)
    assert first.returncode == 0, first.stdout + first.stderr
    assert _as_documented(first.stdout, archive) == (FIXTURES / "mirror_summary.txt").read_text(
        encoding="utf-8"
    )
    for outlet in json.loads(verdict.read_text(encoding="utf-8"))["outlets"].values():
        assert outlet["discovered"] == outlet["known"] + outlet["refused"] + outlet["fetched"] > 0
        outcomes = ("archived", "unchanged", "not_article", "noarchive", "duplicates", "failed")
        assert outlet["fetched"] == sum(outlet[name] for name in outcomes)  # each page counted once
    held = {p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file()}

    again = run_cli(*command)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "published: 0 file(s), 0 bytes, 0 manifest(s)" in again.stdout
    run = json.loads(verdict.read_text(encoding="utf-8"))
    assert (run["exit_code"], run["totals"]["archived"], run["totals"]["fetched"]) == (0, 0, 0)
    after = {p.relative_to(archive).as_posix() for p in archive.rglob("*") if p.is_file()}
    assert after == held  # no template written again either: none learned a page
    assert not [p for p in spool.rglob("*") if p.is_file() and p.name != "archive.json"]
    assert main(["verify", str(archive)]) == 0
