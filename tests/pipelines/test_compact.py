"""Compaction stopped at every step it takes on the store (as a kill would stop it), then run
again: a reader that goes by manifests sees every row exactly once at every point, verify finds
the archive consistent, and the run that follows finishes the work."""

from __future__ import annotations

import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.catalog import Catalog
from pipelines.compact import compact
from pipelines.pull import Slice, pull
from pipelines.schema import SCHEMA, statistics_columns
from pipelines.storage import LocalStore
from pipelines.verify import verify
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


def test_compaction_killed_at_any_step_loses_and_repeats_no_row(mirror_crawl, tmp_path):
    steps = steps_of_a_whole_compaction(mirror_crawl.archive, tmp_path)
    assert steps == 10 + 1 + 1 + 26  # 10 new files, the index delta, the manifest, 26 deletions
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
