"""Compaction stopped at every step it takes on the store (as a kill would stop it), then run
again: a reader that goes by manifests sees every row exactly once at every point, verify finds
the archive consistent, and the run that follows finishes the work."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.archive.catalog import Catalog
from pipelines.archive.keys import compacted_key, manifest_key, part_of
from pipelines.archive.rows import parquet_file
from pipelines.archive.schema import SCHEMA, SCHEMA_VERSION, statistics_columns
from pipelines.archive.storage import LocalStore
from pipelines.tools.compact import compact
from pipelines.tools.pull import Slice, pull
from pipelines.tools.verify import verify
from tests.archives import DiesAfter, Killed, hourly_runs


def rows_by_manifests(store: LocalStore, tmp_path: Path, name: str) -> list[tuple]:
    """Every row a manifest-reading reader gets, as sorted tuples (one per row, repeats kept)."""
    dest = tmp_path / name
    pull(store, dest, Slice(), "parquet")
    files = sorted(dest.rglob("*.parquet"))
    table = pa.concat_tables([pq.ParquetFile(f).read(columns=["article_id", "text_hash"]) for f in files])
    return sorted(
        zip(table.column("article_id").to_pylist(), table.column("text_hash").to_pylist(), strict=True)
    )


def steps_of_a_whole_compaction(archive: Path, tmp_path: Path) -> int:
    counter = DiesAfter(LocalStore(hourly_runs(archive, tmp_path / "count")), 10**6)
    compact(counter, tmp_path, "20260101T000000Z-count")
    return 10**6 - counter.steps


@pytest.mark.slow
def test_compaction_killed_at_any_step_loses_and_repeats_no_row(mirror_crawl, tmp_path):
    steps = steps_of_a_whole_compaction(mirror_crawl.archive, tmp_path)
    # 10 new files, the index delta, the manifest, 26 deletions, the catalog checkpoint
    assert steps == 10 + 1 + 1 + 26 + 1
    before = None
    hourly = hourly_runs(mirror_crawl.archive, tmp_path / "hourly")
    for step in range(steps):
        store = LocalStore(shutil.copytree(hourly, tmp_path / f"archive-{step}"))
        before = before or rows_by_manifests(store, tmp_path, f"before-{step}")
        with pytest.raises(Killed):
            compact(DiesAfter(store, step), tmp_path, f"20260101T000000Z-dies{step}")
        assert rows_by_manifests(store, tmp_path, f"killed-{step}") == before, step
        assert verify(store).problems == [], step
        report = compact(store, tmp_path, f"20260101T000001Z-again{step}")
        assert report.problems == [] and rows_by_manifests(store, tmp_path, f"after-{step}") == before
        checked = verify(store)
        assert (checked.problems, checked.notes, checked.files) == ([], [], 14), step
        assert len(list(store.root.glob("outlet=*/published=*/*.parquet"))) == 14, step


def test_a_compacted_partition_is_one_file_sorted_by_publication_time(mirror_crawl, tmp_path):
    store = LocalStore(hourly_runs(mirror_crawl.archive, tmp_path / "archive"))
    report = compact(store, tmp_path, "20260101T000000Z-sorted", outlets={"gmw-cq"})
    assert (report.partitions, report.files_before, report.files_after) == (1, 4, 1)  # 2024-03; 2024-02 has 1
    (compacted,) = [f for f in Catalog.read(store).files if f.outlet == "gmw-cq" and f.month == "2024-03"]
    times = pq.read_table(store.root / compacted.key).column("published_at").to_pylist()
    assert compacted.rows == 4 and "-compacted-" in compacted.key and times == sorted(times)
    # encoded as the crawl's parts are: statistics for the scalar columns but text
    chunks = pq.ParquetFile(store.root / compacted.key).metadata.row_group(0)
    with_statistics = {
        chunks.column(i).path_in_schema for i in range(chunks.num_columns) if chunks.column(i).is_stats_set
    }
    assert with_statistics == set(statistics_columns(SCHEMA))
    assert compact(store, tmp_path, "20260101T000001Z-again", outlets={"gmw-cq"}).manifest is None


def test_a_manifest_that_cannot_be_read_stops_compaction_before_any_delete(mirror_crawl, tmp_path):
    """Read around, the compaction's manifest would leave its files looking abandoned."""
    store = LocalStore(hourly_runs(mirror_crawl.archive, tmp_path / "archive"))
    sealed = compact(store, tmp_path, "20260101T000000Z-first").manifest
    (store.root / sealed).write_text('{"crawl_id": "cut short', encoding="utf-8")
    files = sorted(store.object_keys())
    report = compact(store, tmp_path, "20260101T000001Z-again")
    assert (report.deleted, report.abandoned, report.manifest) == (0, 0, None)
    assert report.problems[0].startswith(f"{sealed}: unreadable manifest")
    assert "nothing deleted" in report.problems[-1] and sorted(store.object_keys()) == files


def test_a_compacted_file_is_abandoned_only_when_its_run_has_no_manifest(mirror_crawl, tmp_path):
    store = LocalStore(hourly_runs(mirror_crawl.archive, tmp_path / "archive"))
    sealed = compact(store, tmp_path, "20260101T000000Z-first").manifest
    run = sealed.removeprefix("_manifests/").removesuffix(".json")
    listed = next(file for file in Catalog.read(store).files if run in file.key)
    stray = listed.key.replace("-compacted-00", "-compacted-99")
    shutil.copy(store.root / listed.key, store.root / stray)  # its manifest is there, not listing it
    died = "outlet=gmw-cq/published=2024-03/part-20260101T000002Z-died-compacted-00001.parquet"
    shutil.copy(store.root / listed.key, store.root / died)  # a compaction that died before its manifest
    report = compact(store, tmp_path, "20260101T000003Z-again")
    assert report.abandoned == 1 and not (store.root / died).exists() and (store.root / stray).exists()


def changed(column: str) -> Callable[[pa.Table], pa.Table]:
    """The rows, but for one value of ``column`` (a string's) in the first: same article ids."""

    def forge(table: pa.Table) -> pa.Table:
        values = table.column(column).to_pylist()
        values[0] = f"{values[0]} (forged)"
        index = table.schema.get_field_index(column)
        return table.set_column(
            index, table.schema.field(index), pa.array(values, table.schema.field(index).type)
        )

    return forge


FORGERIES: dict[str, Callable[[pa.Table], pa.Table]] = {
    "no rows": lambda table: table.slice(0, 0),
    "a row short": lambda table: table.slice(1),
    "the first row twice, the last not": lambda table: pa.concat_tables(
        [table.slice(0, 1), table.slice(0, -1 + table.num_rows)]
    ),
    "a title changed": changed("title"),
    "a text changed": changed("text"),
    "a url changed": changed("url"),
}


def planted_compaction(run_id: str, replacing: list[tuple[dict, pa.Table | bytes, bool]]) -> dict[str, bytes]:
    """The objects of a compaction nobody ran: for each part (its crawl's manifest entry) a file
    of its partition holding the table (or the bytes), there with its true size and sha256, and
    the manifest naming the parts under ``supersedes``, stating (where asked) the part's rows and
    article ids as its file's, as a compaction's manifest does, else no rows (as the reviewer's)."""
    objects, files = {}, []
    for serial, (part, table, stating) in enumerate(replacing, 1):
        key = compacted_key(part_of(part["key"]).partition, run_id, serial)
        objects[key] = table if isinstance(table, bytes) else parquet_file(table).to_pybytes()
        stated = {"rows": part["rows"], "article_ids": part["article_ids"]} if stating else {"rows": 0}
        files.append(
            {
                "key": key,
                "bytes": len(objects[key]),
                "sha256": hashlib.sha256(objects[key]).hexdigest(),
                **stated,
            }
        )
    manifest = {
        "crawl_id": run_id,
        "schema_version": SCHEMA_VERSION,
        "compaction": True,
        "files": files,
        "supersedes": [part["key"] for part, _, _ in replacing],
    }
    return {**objects, manifest_key(run_id): json.dumps(manifest).encode()}


@pytest.mark.parametrize("forgery", FORGERIES)
def test_a_replaced_part_is_deleted_only_when_every_row_of_it_whole_is_in_the_compaction(
    mirror_crawl, tmp_path, forgery
):
    """A planted compaction whose manifest states the part's rows and article ids (so readers take
    its word) and whose file verifies, but holds the part's rows other than they are: the part is
    kept and named; with the rows as they are (in another order) it goes."""
    store = LocalStore(
        shutil.copytree(mirror_crawl.archive, tmp_path / "archive", ignore=shutil.ignore_patterns(".*"))
    )
    (manifest,) = (store.root / "_manifests").glob("*.json")
    part = max(json.loads(manifest.read_text())["files"], key=lambda entry: entry["rows"])
    data = (store.root / part["key"]).read_bytes()
    table = pq.read_table(store.root / part["key"])
    for key, body in planted_compaction(
        "20990101T000000Z-forged", [(part, FORGERIES[forgery](table), True)]
    ).items():
        (store.root / key).write_bytes(body)
    report = compact(store, tmp_path, "20990101T000001Z-again")
    assert (store.root / part["key"]).read_bytes() == data, report.problems
    assert [
        p
        for p in report.problems
        if p.startswith(f"{part['key']}: kept, though _manifests/20990101T000000Z-forged.json replaces it")
    ], report.problems
    reversed_rows = table.take(list(reversed(range(table.num_rows))))
    for key, body in planted_compaction("20990101T000002Z-true", [(part, reversed_rows, True)]).items():
        (store.root / key).write_bytes(body)
    report = compact(store, tmp_path, "20990101T000003Z-again")
    assert not (store.root / part["key"]).exists(), report.problems


@pytest.mark.parametrize("damaged", ["the compaction's file", "the replaced part"])
def test_a_file_that_is_not_parquet_on_either_side_keeps_the_part_and_is_named(
    mirror_crawl, tmp_path, damaged
):
    """A compaction's file that verifies but is no Parquet, or a replaced part damaged since it was
    compacted: no rows can be compared, the part stays, the run goes on and names it."""
    store = LocalStore(
        shutil.copytree(mirror_crawl.archive, tmp_path / "archive", ignore=shutil.ignore_patterns(".*"))
    )
    (manifest,) = (store.root / "_manifests").glob("*.json")
    part = max(json.loads(manifest.read_text())["files"], key=lambda entry: entry["rows"])
    rows = pq.read_table(store.root / part["key"])
    contents = b"PAR1 no rows" if damaged == "the compaction's file" else rows
    for key, body in planted_compaction("20990101T000000Z-planted", [(part, contents, True)]).items():
        (store.root / key).write_bytes(body)
    if damaged == "the replaced part":
        (store.root / part["key"]).write_bytes(b"PAR1 cut short")
    report = compact(store, tmp_path, "20990101T000001Z-again")
    assert (store.root / part["key"]).exists() and report.deleted == 0
    assert any("not Parquet" in p and "kept" in p for p in report.problems), report.problems


def retyped(column: str, type_: pa.DataType) -> Callable[[pa.Table], pa.Table]:
    """The rows, values the same, but ``column`` stored as ``type_`` (cast back, they compare equal)."""

    def forge(table: pa.Table) -> pa.Table:
        index = table.schema.get_field_index(column)
        return table.set_column(index, column, table.column(column).cast(type_))

    return forge


RETYPINGS: dict[str, Callable[[pa.Table], pa.Table]] = {
    "fetched_at as text": retyped("fetched_at", pa.string()),
    "fetched_at in nanoseconds": retyped("fetched_at", pa.timestamp("ns", tz="UTC")),
    "language_confidence as float64": retyped("language_confidence", pa.float64()),
    "language_confidence as text": retyped("language_confidence", pa.string()),
    "http_status as int64": retyped("http_status", pa.int64()),
    "title dictionary-encoded": retyped("title", pa.dictionary(pa.int32(), pa.string())),
    "article_id nullable": lambda table: table.cast(
        pa.schema([field.with_nullable(True) for field in table.schema], metadata=table.schema.metadata)
    ),
}


@pytest.mark.parametrize("retyping", RETYPINGS)
def test_a_compaction_file_holds_rows_only_in_the_archive_schema_exactly(mirror_crawl, tmp_path, retyping):
    """A planted compaction stating the part's rows, its file holding them with a column of another
    type (or nullability) than the archive's: cast to the schema they compare equal, but readers
    would get other types (DuckDB a VARCHAR). The part is kept and the file named."""
    store = LocalStore(
        shutil.copytree(mirror_crawl.archive, tmp_path / "archive", ignore=shutil.ignore_patterns(".*"))
    )
    (manifest,) = (store.root / "_manifests").glob("*.json")
    part = max(json.loads(manifest.read_text())["files"], key=lambda entry: entry["rows"])
    data = (store.root / part["key"]).read_bytes()
    forged = RETYPINGS[retyping](pq.read_table(store.root / part["key"]))
    objects = planted_compaction("20990101T000000Z-retyped", [(part, forged, True)])
    for key, body in objects.items():
        (store.root / key).write_bytes(body)
    report = compact(store, tmp_path, "20990101T000001Z-again")
    assert (store.root / part["key"]).read_bytes() == data, report.problems
    (planted,) = (key for key in objects if part_of(key))
    assert [
        p
        for p in report.problems
        if p.startswith("_manifests/20990101T000000Z-retyped.json: the files it replaces are kept")
        and planted in p
    ], report.problems
