"""The catalog: what the manifests say, with no Parquet file opened."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawler.cli import main
from pipelines.archive import catalog as catalog_module
from pipelines.archive.catalog import Catalog, drop_stale_checkpoints, seal_checkpoint
from pipelines.archive.keys import CATALOG, new_crawl_id, shown
from pipelines.archive.publish import Publisher, publish_spool
from pipelines.archive.spool import Spool
from pipelines.archive.storage import LocalStore, store_for
from tests.archives import hourly_runs
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


# The checkpoint: what ls and pull read instead of every manifest


class CountingStore(LocalStore):
    """A local store that counts its reads (whole or streamed) and its listings."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.reads: list[str] = []
        self.listings: list[str] = []

    def object_keys(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        self.listings.append(prefix)
        return super().object_keys(prefix, start_after)

    def read(self, key: str) -> bytes:
        self.reads.append(key)
        return super().read(key)

    @contextlib.contextmanager
    def stream(self, key: str) -> Iterator[BinaryIO]:
        self.reads.append(key)
        with super().stream(key) as handle:
            yield handle


def run(capsys, *argv: str) -> tuple[int, str]:
    """``newsarchive ARGV`` in this process: its exit code and standard output."""
    code = main(list(argv))
    return code, capsys.readouterr().out


def checkpoint_of(archive: Path) -> Path:
    (path,) = (archive / CATALOG).glob("checkpoint-*")
    return path


def rewritten(path: Path, rows=None, footer=None) -> None:
    """The checkpoint at ``path`` with its rows or its footer changed as a forger would."""
    table = pq.read_table(path)
    stated = json.loads(table.schema.metadata[b"newsarchive.catalog"])
    table = rows(table) if rows else table
    stated = footer(stated) or stated if footer else stated
    path.unlink()
    pq.write_table(table.replace_schema_metadata({b"newsarchive.catalog": json.dumps(stated)}), path)


@pytest.fixture
def archive(mirror_crawl, tmp_path) -> Path:
    """A copy of the mirror crawl's archive: one run, 14 files."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
    return shutil.copytree(mirror_crawl.archive, tmp_path / "archive")


@pytest.fixture
def hourly(mirror_crawl, tmp_path) -> Path:
    """The same rows as 30 hourly runs would leave them: 30 files of one row, 30 manifests."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
    return hourly_runs(mirror_crawl.archive, tmp_path / "hourly")


@pytest.mark.parametrize("made", ["archive", "hourly"])
def test_through_its_checkpoint_ls_and_pull_say_what_every_manifest_says(request, tmp_path, capsys, made):
    archive = request.getfixturevalue(made)
    before = run(capsys, "ls", "--json", str(archive)), run(capsys, "ls", str(archive))
    assert run(capsys, "pull", "--outlet", "gmw-cq", str(archive), str(tmp_path / "before.jsonl"))[0] == 0
    key = seal_checkpoint(LocalStore(archive), tmp_path, every=1)
    assert key == checkpoint_of(archive).relative_to(archive).as_posix()
    assert (run(capsys, "ls", "--json", str(archive)), run(capsys, "ls", str(archive))) == before
    assert run(capsys, "pull", "--outlet", "gmw-cq", str(archive), str(tmp_path / "after.jsonl"))[0] == 0
    assert (tmp_path / "after.jsonl").read_bytes() == (tmp_path / "before.jsonl").read_bytes()
    store = CountingStore(archive)
    Catalog.read(store, checkpoint=True, outlets=()).summary()
    assert store.reads == [key]  # no manifest read
    assert sorted(store.listings) == [f"{CATALOG}/", "_manifests/"]


def test_pull_reads_the_files_of_its_outlets_only_and_the_same_as_every_manifest_says(hourly, tmp_path):
    full = [file for file in Catalog.read(LocalStore(hourly)).files if file.outlet == "gmw-cq"]
    seal_checkpoint(LocalStore(hourly), tmp_path, every=1)
    catalog = Catalog.read(LocalStore(hourly), checkpoint=True, outlets=["gmw-cq"])
    assert sorted(catalog.files, key=lambda f: f.key) == sorted(
        (replace(file, article_ids=None) for file in full), key=lambda f: f.key
    )
    assert catalog.held("outlet") == Catalog.read(LocalStore(hourly)).held("outlet")  # all, by the figures


def test_the_manifests_after_the_checkpoint_are_read_and_counted(hourly, tmp_path):
    aside = sorted((hourly / "_manifests").glob("*.json"))[-5:]
    for path in aside:
        path.rename(tmp_path / path.name)
    seal_checkpoint(LocalStore(hourly), tmp_path, every=1)
    for path in aside:
        (tmp_path / path.name).rename(path)
    store = CountingStore(hourly)
    summary = Catalog.read(store, checkpoint=True, outlets=()).summary()
    assert store.reads == [checkpoint_of(hourly).relative_to(hourly).as_posix()] + [
        f"_manifests/{path.name}" for path in aside
    ]
    assert summary == Catalog.read(LocalStore(hourly)).summary()
    assert len(summary["runs"]) == 30 and summary["rows"] == 30


@pytest.mark.parametrize("dropped", [True, False], ids=["checkpoint dropped", "a store that refuses deletes"])
def test_a_crawl_sealed_late_under_an_older_id_is_not_missed(hourly, tmp_path, dropped):
    """A crawl killed before it sealed is sealed by a later run under its own, older crawl id:
    its publication drops the checkpoints through later manifests; where the store refused, the
    next checkpoint, written from every manifest listed, covers it."""
    late = sorted((hourly / "_manifests").glob("*.json"))[10]
    late.rename(tmp_path / late.name)
    store = LocalStore(hourly)
    seal_checkpoint(store, tmp_path, every=1)
    if dropped:
        drop_stale_checkpoints(store, f"_manifests/{late.name}")
        assert not list(store.object_keys(f"{CATALOG}/"))
    else:
        manifest(hourly, "20250102T000000Z-later")  # and a run since
    (tmp_path / late.name).rename(late)
    assert seal_checkpoint(store, tmp_path, every=1)
    assert Catalog.read(store, checkpoint=True).summary() == Catalog.read(store).summary()


def _more_rows(table):
    return table.set_column(2, "rows", pa.array([r + 1 for r in table["rows"].to_pylist()], pa.int64()))


def _foreign_key(table):
    return table.set_column(0, "key", pa.array(["../x.parquet", *table["key"].to_pylist()[1:]]))


def _fewer_rows(footer):
    name = min(name for name in footer["partitions"] if name.startswith("outlet=gmw-cq/"))  # one pull reads
    footer["partitions"][name]["rows"] -= 1


def _no_run(footer):
    footer["runs"]["crawl_id"][0] = "../run"


def _no_warc(footer):
    footer["warcs"]["records"][0] = -1


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (lambda path: path.write_bytes(path.read_bytes()[:-100]), "ArrowInvalid"),
        (lambda path: path.write_bytes(b"not parquet"), "ArrowInvalid"),
        (lambda path: rewritten(path, rows=_more_rows), "are not those of its files"),
        (lambda path: rewritten(path, rows=_foreign_key), "is no part key"),
        (lambda path: rewritten(path, footer=_fewer_rows), "are not those of its files"),
        (lambda path: rewritten(path, footer=_no_run), "crawl id"),
        (lambda path: rewritten(path, footer=_no_warc), "WARC"),
        (lambda path: rewritten(path, footer=lambda f: {**f, "through": "_manifests/x.json"}), "newest"),
    ],
    ids=["cut", "no parquet", "rows", "a key", "figures", "a run", "a WARC", "through"],
)
def test_a_damaged_or_lying_checkpoint_is_read_around_and_named(hourly, tmp_path, damage, why):
    seal_checkpoint(LocalStore(hourly), tmp_path, every=1)
    path = checkpoint_of(hourly)
    damage(path)
    full = Catalog.read(LocalStore(hourly)).summary()
    summary = Catalog.read(LocalStore(hourly), checkpoint=True, outlets=["gmw-cq"]).summary()
    first, *rest = summary["problems"]
    assert first.startswith(f"{CATALOG}/{path.name}: catalog checkpoint read around") and why in first, first
    assert {**summary, "problems": rest} == full
    manifest(hourly, "20250102T000000Z-later")  # a run of no file, and the next seal replaces it
    assert seal_checkpoint(LocalStore(hourly), tmp_path, every=1) is not None
    full = Catalog.read(LocalStore(hourly)).summary()
    assert Catalog.read(LocalStore(hourly), checkpoint=True).summary() == full


def test_the_next_checkpoint_is_written_from_every_manifest_when_one_it_covered_is_gone(hourly, tmp_path):
    store = LocalStore(hourly)
    seal_checkpoint(store, tmp_path, every=1)
    old = checkpoint_of(hourly)
    (hourly / "_manifests" / "20250101T000100Z-hourly.json").unlink()
    manifest(hourly, "20250102T000000Z-later")
    assert seal_checkpoint(store, tmp_path, every=1) and not old.exists()
    summary = Catalog.read(store, checkpoint=True).summary()
    assert summary == Catalog.read(store).summary() and len(summary["runs"]) == 30


def test_a_checkpoint_over_its_cap_is_not_read(hourly, tmp_path, monkeypatch):
    seal_checkpoint(LocalStore(hourly), tmp_path, every=1)
    monkeypatch.setattr(catalog_module, "CHECKPOINT_MAX_BYTES", checkpoint_of(hourly).stat().st_size - 1)
    store = CountingStore(hourly)
    (problem, *_) = Catalog.read(store, checkpoint=True, outlets=()).problems
    assert "catalog checkpoint read around (Damaged" in problem and "over" in problem
    assert len(store.reads) == 31  # it, then every manifest


def test_a_sealing_run_writes_one_once_enough_manifests_are_new_and_deletes_the_older(hourly, tmp_path):
    store = LocalStore(hourly)
    summary = Catalog.read(store, checkpoint=True).summary()  # an archive from before: as it was
    assert seal_checkpoint(store, tmp_path, every=31) is None and not (hourly / CATALOG).exists()
    first = seal_checkpoint(store, tmp_path, every=30)
    assert first and seal_checkpoint(store, tmp_path, every=1) is None  # nothing new since
    manifest(hourly, "20250102T000000Z-later")  # a run of no file
    second = seal_checkpoint(store, tmp_path, every=1)
    assert second > first and list(store.object_keys(f"{CATALOG}/")) == [second]
    assert Catalog.read(store, checkpoint=True).summary()["runs"][:-1] == summary["runs"]


def test_publisher_close_writes_the_checkpoint_when_due(hourly, tmp_path, monkeypatch):
    monkeypatch.setattr(catalog_module, "CHECKPOINT_EVERY", 30)
    publisher = Publisher(LocalStore(hourly), Spool(tmp_path / "spool"))
    publisher.open(new_crawl_id(), ["gmw-cq"])
    publisher.close()
    assert checkpoint_of(hourly).exists()


def test_a_compaction_since_the_checkpoint_is_read_from_every_manifest_and_compact_writes_one(
    hourly, tmp_path, capsys
):
    seal_checkpoint(LocalStore(hourly), tmp_path, every=1)
    old = checkpoint_of(hourly)
    kept = old.read_bytes()
    assert run(capsys, "compact", str(hourly))[0] == 0
    new = checkpoint_of(hourly)  # the older one deleted
    assert new != old and Catalog.read(LocalStore(hourly), checkpoint=True) == Catalog.read(
        LocalStore(hourly), checkpoint=True, outlets=None
    )
    full = Catalog.read(LocalStore(hourly)).summary()
    assert Catalog.read(LocalStore(hourly), checkpoint=True).summary() == full
    new.unlink()
    old.write_bytes(kept)  # only the checkpoint from before the compaction
    store = CountingStore(hourly)
    assert Catalog.read(store, checkpoint=True, outlets=()).summary() == full
    # the compaction's manifest, then every manifest: its supersedes needs their article ids
    assert sum(key.startswith("_manifests/") for key in store.reads) == 1 + 31


@pytest.mark.slow
def test_on_s3_ls_and_pull_through_the_checkpoint_say_what_every_manifest_says(
    hourly, object_store, monkeypatch, tmp_path, capsys
):
    bucket, client = object_store.create_bucket(), object_store.client()
    for variable, value in object_store.env.items():
        monkeypatch.setenv(variable, value)
    for path in sorted(p for p in hourly.rglob("*") if p.is_file() and not p.name.startswith(".")):
        client.put_object(
            Bucket=bucket, Key=f"news/{path.relative_to(hourly).as_posix()}", Body=path.read_bytes()
        )
    uri = f"s3://{bucket}/news"
    before = run(capsys, "ls", "--json", uri)
    assert run(capsys, "pull", "--outlet", "gmw-cq", uri, str(tmp_path / "before.jsonl"))[0] == 0
    assert seal_checkpoint(store_for(uri), tmp_path, every=1)
    listed = client.list_objects_v2(Bucket=bucket, Prefix=f"news/{CATALOG}/")["Contents"]
    assert len(listed) == 1 and run(capsys, "ls", "--json", uri) == before
    assert run(capsys, "pull", "--outlet", "gmw-cq", uri, str(tmp_path / "after.jsonl"))[0] == 0
    assert (tmp_path / "after.jsonl").read_bytes() == (tmp_path / "before.jsonl").read_bytes()


def test_a_crawl_sealed_by_a_later_run_drops_the_checkpoints_through_later_manifests(tmp_path):
    """The spool of a crawl killed before it sealed is published by the next run, its manifest
    under its own, older id: readers would not list it after the checkpoint's manifest."""
    store, spool = LocalStore(tmp_path / "archive"), Spool(tmp_path / "spool")
    manifest(store.root, "c9")  # a run sealed since the killed crawl began
    seal_checkpoint(store, tmp_path, every=1)
    crawl = spool.open_crawl("c1", ["gmw-cq"])
    crawl.write_part(PART_A, pa.table({"article_id": ["a"], "text": ["text of a"]}))
    crawl.finish()
    crawl.release()
    assert publish_spool(store, spool).manifests == ["_manifests/c1.json"]
    assert not list(store.object_keys(f"{CATALOG}/"))
    assert [run.crawl_id for run in Catalog.read(store, checkpoint=True, outlets=()).runs] == ["c1", "c9"]
