"""The crawl's report (crawler/report.py): each outlet's figures from a stats fixture, and the
summary and ``--summary-json`` verdict made of them, byte for byte as the run printed them before
the figures were computed in one place (summary.txt and verdict.json were written by that code)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from crawler.report import OutletFigures, outlet_figures, run_verdict, summary

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "report"
OUTLETS = ["alpha", "beta", "gamma"]


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
        fetched=30,
        archived=24,
        copies=2,
        changed=1,
        unchanged=3,
        not_article=4,  # empty, too_short, not_html
        noarchive=1,
        duplicates=2,
        failed=3,
        failed_by_reason={"timeout": 2, "crashed": 1},
        refused={"http_404": 4, "robots": 1},
        found=42,
        seconds=109.623,
    )
    assert alpha.discovered == 42
    assert (beta.fetched, beta.archived, beta.failed, beta.failed_by_reason) == (5, 5, 0, {"error": 1})
    assert (beta.seconds, beta.found) == (0.0, 5)  # no first and last page: no time
    assert (gamma.discovered, gamma.found) == (0, 0)


def test_the_summary_is_the_one_printed_before(stats):
    text, healthy = summary(OUTLETS, stats, Bucket())
    assert f"{text}\n{healthy}\n" == (FIXTURES / "summary.txt").read_text(encoding="utf-8")


def test_the_verdict_is_the_one_written_before(stats):
    verdict = run_verdict(OUTLETS, stats, "20261123T041500Z-1a2b3c", 5)
    assert json.dumps(verdict, indent=1) + "\n" == (FIXTURES / "verdict.json").read_text(encoding="utf-8")
