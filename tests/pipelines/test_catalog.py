"""The catalog: what the manifests say, with no Parquet file opened."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from pathlib import Path

from pipelines.catalog import Catalog
from pipelines.storage import LocalStore

# two manifests: one written before manifests counted languages, one cut short by a kill
ARCHIVE = LocalStore(Path(__file__).resolve().parent.parent / "fixtures" / "catalog")


def test_rows_of_manifests_older_than_languages_count_as_unknown_language():
    summary = Catalog.read(ARCHIVE).summary()
    assert summary["rows"] == 7 and summary["bytes"] == 3000 and summary["languages"] == {"?": 7}
    assert summary["months"] == {"2023-12": 4, "unknown": 3}
    assert summary["outlets"]["sxkjt"]["months"] == {"unknown": 3}


def test_an_unreadable_manifest_is_a_problem_named_not_a_crash():
    catalog = Catalog.read(ARCHIVE)
    assert [run.crawl_id for run in catalog.runs] == ["20240101T000000Z-old"]
    (problem,) = catalog.problems
    assert problem.startswith("_manifests/20240102T000000Z-cut.json: unreadable manifest")


def test_files_are_pruned_by_outlet_month_and_language():
    dated, undated = sorted(Catalog.read(ARCHIVE).files, key=lambda f: f.key)
    assert dated.may_hold({"gmw-cq"}) and not dated.may_hold({"sxkjt"})
    assert dated.may_hold(since=date(2023, 12, 31)) and not dated.may_hold(since=date(2024, 1, 1))
    assert not dated.may_hold(until=date(2023, 11, 30))
    assert not undated.may_hold(since=date(2000, 1, 1))  # a row without a date matches no date filter
    assert dated.may_hold(languages={"en"})  # its manifest does not say: the file is read
    assert not replace(dated, languages={"zh": 4}).may_hold(languages={"en"})
