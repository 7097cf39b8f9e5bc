"""The catalog: what the manifests say, with no Parquet file opened."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import date
from pathlib import Path

import pytest

from pipelines.archive.catalog import Catalog
from pipelines.archive.keys import shown
from pipelines.archive.storage import LocalStore
from tests.conftest import FIXTURES

# two manifests: one written before manifests counted languages, one cut short by a kill
ARCHIVE = LocalStore(FIXTURES / "catalog")


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


def manifest(store_root: Path, crawl_id: str, **fields: object) -> None:
    path = store_root / "_manifests" / f"{crawl_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"crawl_id": crawl_id, **fields}), encoding="utf-8")


def entry(key: object, *holding: dict) -> dict:
    """A manifest's entry for ``key``: one row of its own, or the rows of the entries ``holding``."""
    ids = [i for held in holding for i in held["article_ids"]] if holding else [f"article of {key}"]
    return {"key": key, "rows": len(ids), "bytes": 1, "sha256": "0" * 64, "article_ids": ids}


PART_A = "outlet=gmw-cq/published=2024-03/part-c1-00001.parquet"
PART_B = "outlet=gmw-cq/published=2024-04/part-c1-00002.parquet"
PART_OTHER_OUTLET = "outlet=sxkjt/published=2024-03/part-c1-00003.parquet"


@pytest.mark.parametrize(
    "key",
    [
        "../x.parquet",
        "/etc/passwd",
        "outlet=gmw-cq/published=2024-03/../../../x.parquet",
        "outlet=GMW/published=2024-03/part-c1-00001.parquet",
        "_warc/c1-00001.warc.gz",
        "_manifests/c1.json",
        5,
        None,
    ],
)
def test_an_entry_naming_no_part_is_left_out_and_named(tmp_path, key):
    manifest(tmp_path, "c1", files=[entry(PART_A), entry(key)])
    catalog = Catalog.read(LocalStore(tmp_path))
    assert [file.key for file in catalog.files] == [PART_A]
    (problem,) = catalog.problems
    assert problem.startswith("_manifests/c1.json: files entry left out") and shown(key) in problem
    assert catalog.unreadable == []


def test_a_warc_entry_whose_key_or_cdxj_is_not_a_warc_s_is_left_out(tmp_path):
    good = {**entry("_warc/c1-00001.warc.gz"), "records": 1, "cdxj": entry("_warc/c1-00001.cdxj")}
    moved = {**good, "key": "_warc/c1-00002.warc.gz"}  # its CDXJ is another WARC's
    outside = {**good, "key": "../../c1-00003.warc.gz", "cdxj": entry("../../c1-00003.cdxj")}
    manifest(tmp_path, "c1", files=[], warcs=[good, moved, outside])
    catalog = Catalog.read(LocalStore(tmp_path))
    assert [warc.key for warc in catalog.warcs] == [good["key"]] and len(catalog.problems) == 2


def test_supersedes_counts_only_from_a_compaction_and_only_in_its_files_partitions(tmp_path):
    compacted = "outlet=gmw-cq/published=2024-03/part-c9-compacted-00001.parquet"
    (tmp_path / compacted).parent.mkdir(parents=True)
    (tmp_path / compacted).write_bytes(b"its rows")
    crawled = [entry(PART_A), entry(PART_B), entry(PART_OTHER_OUTLET)]
    manifest(tmp_path, "c1", files=crawled)
    manifest(tmp_path, "c2", files=[], supersedes=[PART_A, PART_B])  # a crawl's: no say
    named = [PART_A, PART_B, PART_OTHER_OUTLET, "_warc/c1-00001.warc.gz", "../x.parquet", compacted]
    manifest(tmp_path, "c9", compaction=True, files=[entry(compacted, *crawled)], supersedes=named)
    catalog = Catalog.read(LocalStore(tmp_path))
    assert catalog.superseded == {PART_A}
    assert sorted(file.key for file in catalog.files) == sorted([compacted, PART_B, PART_OTHER_OUTLET])
    assert len(catalog.problems) == 2 + 5 and all("supersedes" in p for p in catalog.problems)


def test_a_compaction_whose_file_is_missing_takes_nothing_out_of_the_dataset(tmp_path):
    compacted = "outlet=gmw-cq/published=2024-03/part-c9-compacted-00001.parquet"
    manifest(tmp_path, "c1", files=[entry(PART_A)])
    manifest(tmp_path, "c9", compaction=True, files=[entry(compacted)], supersedes=[PART_A])
    catalog = Catalog.read(LocalStore(tmp_path))
    assert catalog.superseded == set() and PART_A in {file.key for file in catalog.files}
    assert catalog.problems == [f"_manifests/c9.json: supersedes ignored: its file {compacted} is missing"]


def test_a_compaction_replaced_in_turn_by_a_later_one_still_counts(tmp_path):
    first = "outlet=gmw-cq/published=2024-03/part-c8-compacted-00001.parquet"
    second = "outlet=gmw-cq/published=2024-03/part-c9-compacted-00001.parquet"
    (tmp_path / second).parent.mkdir(parents=True)
    (tmp_path / second).write_bytes(b"its rows")
    manifest(tmp_path, "c1", files=[entry(PART_A)])
    manifest(tmp_path, "c8", compaction=True, files=[entry(first, entry(PART_A))], supersedes=[PART_A])
    manifest(tmp_path, "c9", compaction=True, files=[entry(second, entry(PART_A))], supersedes=[first])
    catalog = Catalog.read(LocalStore(tmp_path))
    assert [file.key for file in catalog.files] == [second] and catalog.problems == []


@pytest.mark.parametrize("planted", ["a0", "z9"])  # its manifest read before the crawl's, or after
@pytest.mark.parametrize("compaction", [False, True])
def test_a_part_listed_by_another_run_s_manifest_counts_once_in_its_own_run_s(tmp_path, planted, compaction):
    crawled = [entry(PART_A), entry(PART_B)]
    manifest(tmp_path, "c1", files=crawled)
    manifest(tmp_path, planted, compaction=compaction, files=crawled, supersedes=[PART_A, PART_B])
    catalog = Catalog.read(LocalStore(tmp_path))
    assert sorted((file.key, file.crawl_id) for file in catalog.files) == [(PART_A, "c1"), (PART_B, "c1")]
    assert catalog.summary()["rows"] == 2 and catalog.superseded == set()
    left_out = [p for p in catalog.problems if "left out: listed again" in p]
    assert len(left_out) == 2 and all(
        p.startswith(f"_manifests/{planted}.json") and p.endswith("in _manifests/c1.json") for p in left_out
    ), catalog.problems


def test_a_part_listed_twice_where_its_run_s_manifest_is_absent_counts_once(tmp_path):
    manifest(tmp_path, "a0", files=[entry(PART_A), entry(PART_A)])
    manifest(tmp_path, "b0", files=[entry(PART_A)])
    catalog = Catalog.read(LocalStore(tmp_path))
    assert [(file.key, file.crawl_id) for file in catalog.files] == [(PART_A, "a0")]
    assert len(catalog.problems) == 2 and all("left out: listed again" in p for p in catalog.problems)


COMPACTED_A = "outlet=gmw-cq/published=2024-03/part-c9-compacted-00001.parquet"
NOT_STATED = "its files do not state the article ids of all its rows"


@pytest.mark.parametrize(
    "stated",
    [
        {"rows": 0, "article_ids": []},  # the reviewer's: an empty file
        {"rows": 2},  # rows, but no ids
        {"rows": 1, "article_ids": ["article of another part"]},
        {"rows": 2, "article_ids": ["article of another part", f"article of {PART_A}"]},  # one short
        {"rows": 1, "article_ids": [f"article of {PART_A}", f"article of {PART_A}"]},  # ids but rows
    ],
)
def test_a_compaction_whose_files_do_not_state_a_part_s_rows_leaves_it_in_the_dataset(tmp_path, stated):
    """A compaction's file that verifies, of the part's partition, naming the part: unless its
    manifest states the part's article ids (every listing of it: here its crawl's says two rows),
    as many as its rows, the part stays in the dataset and the supersedes is named."""
    (tmp_path / COMPACTED_A).parent.mkdir(parents=True)
    (tmp_path / COMPACTED_A).write_bytes(b"its rows")
    two_rows = {**entry(PART_A), "rows": 2, "article_ids": [f"article of {PART_A}", "article two"]}
    manifest(tmp_path, "c1", files=[two_rows])
    manifest(tmp_path, "c9", compaction=True, files=[{**entry(COMPACTED_A), **stated}], supersedes=[PART_A])
    catalog = Catalog.read(LocalStore(tmp_path))
    assert catalog.superseded == set() and PART_A in {file.key for file in catalog.files}
    (problem,) = catalog.problems
    assert problem == f"_manifests/c9.json: supersedes {PART_A} ignored: {NOT_STATED}"


def test_each_article_id_a_compaction_states_covers_one_replaced_row(tmp_path):
    """Two parts holding the same article, a compaction stating it once: one part is covered,
    the other stays (a multiset, not a set); a part listed twice must be covered as each says."""
    (tmp_path / COMPACTED_A).parent.mkdir(parents=True)
    (tmp_path / COMPACTED_A).write_bytes(b"its rows")
    twin = PART_A.replace("c1", "c2")
    manifest(tmp_path, "c1", files=[entry(PART_A)])
    manifest(tmp_path, "c2", files=[{**entry(twin), "article_ids": [f"article of {PART_A}"]}])
    manifest(
        tmp_path, "c9", compaction=True, files=[entry(COMPACTED_A, entry(PART_A))], supersedes=[PART_A, twin]
    )
    catalog = Catalog.read(LocalStore(tmp_path))
    assert catalog.superseded == {PART_A} and twin in {file.key for file in catalog.files}
    manifest(tmp_path, "c3", files=[{**entry(PART_A), "rows": 0, "article_ids": []}])  # planted beside
    manifest(
        tmp_path,
        "c9",
        compaction=True,
        files=[{**entry(COMPACTED_A), "rows": 0, "article_ids": []}],
        supersedes=[PART_A],
    )
    assert Catalog.read(LocalStore(tmp_path)).superseded == set()


@pytest.mark.parametrize(
    "body", [b"not json", b'{"crawl_id": "../x", "files": []}', b'{"crawl_id": "c1", "files": 5}', b"[]"]
)
def test_a_manifest_that_cannot_be_read_is_named_as_unreadable(tmp_path, body):
    (tmp_path / "_manifests").mkdir()
    (tmp_path / "_manifests" / "c1.json").write_bytes(body)
    catalog = Catalog.read(LocalStore(tmp_path))
    assert catalog.unreadable == ["_manifests/c1.json"] and catalog.runs == []


MISTYPED = ARCHIVE.root / "mistyped"


def test_fields_of_the_wrong_type_are_named_problems_of_their_manifest_never_a_crash():
    """Each manifest of the fixture holds fields of the wrong type (counts as strings, floats,
    bools or below 0, rows per language as strings, lists where objects go and the reverse): an
    entry so damaged is left out, a manifest so damaged is unreadable, each named; what is left
    sums up, and only the good entries (the first of each list) are taken."""
    catalog = Catalog.read(LocalStore(MISTYPED))
    bodies = {path.name: json.loads(path.read_text()) for path in (MISTYPED / "_manifests").glob("*.json")}
    entries = bodies.pop("20240102T000000Z-mistyped-entries.json")
    good = bodies.pop("20240101T000000Z-good.json")
    assert sorted(catalog.unreadable) == sorted(f"_manifests/{name}" for name in bodies)
    assert [run.crawl_id for run in catalog.runs] == [good["crawl_id"], entries["crawl_id"]]
    left_out = [p for p in catalog.problems if p.startswith(f"_manifests/{entries['crawl_id']}.json: ")]
    assert len(left_out) == len(entries["files"]) - 1 + len(entries["warcs"]) - 1, left_out
    assert len(catalog.problems) == len(left_out) + len(bodies)
    summary = catalog.summary()
    assert [f.key for f in catalog.files] == [good["files"][0]["key"], entries["files"][0]["key"]]
    assert (summary["rows"], summary["bytes"], summary["warcs"]) == (5, 20, 2)
    assert summary["languages"] == {"en": 3, "zh": 2}
