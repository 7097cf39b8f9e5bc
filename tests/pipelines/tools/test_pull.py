"""A pull stopped at any point, then run again, gives the slice a pull in one go gives: also when
the archive was compacted in between, and when a kill cut the pull's journal short."""

from __future__ import annotations

import csv
import errno
import json
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from pipelines.archive.storage import LocalStore
from pipelines.tools.compact import compact
from pipelines.tools.pull import FORMATS, PullError, Slice, _Journal, pull
from tests.archives import copied_runs, hourly_runs


class Stop(Exception):
    pass


def stopping_after(files: int):
    read = []

    def count(file, total) -> None:
        read.append(file)
        if len(read) == files:
            raise Stop

    return count


def destination(folder: Path, output: str) -> Path:
    return folder / ("slice" if output == "parquet" else f"slice.{output}")


def journal(dest: Path, output: str) -> Path:
    return dest / ".pull.jsonl" if output == "parquet" else dest.with_name(f".{dest.name}.pull.jsonl")


def content(dest: Path, output: str) -> dict[str, bytes]:
    if output == "parquet":
        return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*.parquet"))}
    return {dest.name: dest.read_bytes()}


def versions(dest: Path, output: str) -> list[tuple[str, str, str]]:
    """Each row pulled as (article_id, version, text_hash), repeats kept."""
    if output == "parquet":
        rows = ds.dataset(dest, format="parquet", partitioning="hive").to_table().to_pylist()
    elif output == "jsonl":
        rows = [json.loads(line) for line in dest.read_bytes().splitlines()]
    else:
        with dest.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    return sorted((row["article_id"], str(row["version"]), row["text_hash"]) for row in rows)


@pytest.mark.parametrize("output", FORMATS)
def test_a_pull_stopped_after_any_file_resumes_to_the_same_slice(mirror_crawl, tmp_path, output):
    store = LocalStore(mirror_crawl.archive)
    whole = destination(tmp_path / "whole", output)
    files = pull(store, whole, Slice(), output).files_read
    assert files == 14
    for stop in (1, files // 2, files - 1):
        dest = destination(tmp_path / f"stopped-{stop}", output)
        with pytest.raises(Stop):
            pull(store, dest, Slice(), output, stopping_after(stop))
        if output != "parquet":  # killed after writing a file's rows, before the journal noted them
            with dest.open("ab") as handle:
                handle.write(b'{"half": "a row')
        with journal(dest, output).open("ab") as handle:  # killed while the journal noted the next file
            handle.write(b'{"key": "outlet=gmw-cq/published=2024-05/part-x-00001.parquet", "rows": "AAAA')
        report = pull(store, dest, Slice(), output)
        assert (report.files_skipped, report.files_read) == (stop, files - stop)
        assert content(dest, output) == content(whole, output)


@pytest.mark.parametrize("output", FORMATS)
def test_a_pull_stopped_inside_a_partition_then_compacted_resumes_without_repeating_a_row(
    mirror_crawl, tmp_path, output
):
    """The compacted file holds rows the stopped pull wrote and rows it did not: only those go."""
    hourly = hourly_runs(mirror_crawl.archive, tmp_path / "hourly")
    whole = destination(tmp_path / "whole", output)
    pull(LocalStore(hourly), whole, Slice(), output)
    dest = destination(tmp_path / "stopped", output)
    with pytest.raises(Stop):
        pull(LocalStore(hourly), dest, Slice(), output, stopping_after(9))
    assert 0 < len(versions(dest, output)) < len(versions(whole, output))
    assert compact(LocalStore(hourly), tmp_path, "20260101T000000Z-compact").deleted == 26
    report = pull(LocalStore(hourly), dest, Slice(), output)
    assert report.rows_known > 0  # rows of a compacted file that the stopped pull wrote
    assert versions(dest, output) == versions(whole, output)
    assert len(set(versions(whole, output))) == len(versions(whole, output)) == 30


@pytest.mark.parametrize("output", FORMATS)
def test_files_of_the_same_bytes_are_read_once_and_the_slice_is_the_same(mirror_crawl, tmp_path, output):
    """Each later run lists a copy of every part: by their manifests' size and sha256, the copies
    hold the rows already read, so only the first of each is read; stopped and run again, the
    pull reads no copy either, and gives the same slice."""
    copied = LocalStore(copied_runs(mirror_crawl.archive, tmp_path / "copied", runs=3))
    once = destination(tmp_path / "once", output)
    pull(LocalStore(mirror_crawl.archive), once, Slice(), output)
    dest = destination(tmp_path / "copies", output)
    report = pull(copied, dest, Slice(), output)
    assert (report.files_read, report.files_identical, report.rows_known) == (14, 3 * 14, 0)
    assert versions(dest, output) == versions(once, output)
    for stop in (1, 20):
        resumed = destination(tmp_path / f"stopped-{stop}", output)
        with pytest.raises(Stop):
            pull(copied, resumed, Slice(), output, stopping_after(stop))
        report = pull(copied, resumed, Slice(), output)
        assert report.files_skipped == stop and report.files_read + report.files_identical == 4 * 14 - stop
        assert versions(resumed, output) == versions(once, output)


def test_a_copy_is_read_when_the_file_it_copies_did_not_check(mirror_crawl, tmp_path):
    """Damaged, the first file is left out and named; its copy is read in its place."""
    archive = copied_runs(mirror_crawl.archive, tmp_path / "copied", runs=2)
    first = min((archive / "_manifests").glob("*.json"))
    damaged = json.loads(first.read_text(encoding="utf-8"))["files"][0]["key"]
    (archive / damaged).unlink()  # a copy of its own, then damaged: the others keep their bytes
    (archive / damaged).write_bytes(b"not the bytes its manifest states")
    dest = tmp_path / "slice"
    report = pull(LocalStore(archive), dest, Slice(), "parquet")
    assert [problem.split(":")[0] for problem in report.problems] == [damaged]
    assert (report.files_read, report.files_identical) == (14, 2 * 14 - 1)
    pull(LocalStore(mirror_crawl.archive), tmp_path / "once", Slice(), "parquet")
    assert versions(dest, "parquet") == versions(tmp_path / "once", "parquet")


def test_a_journal_write_cut_short_by_a_full_disk_leaves_a_pull_that_resumes(
    mirror_crawl, tmp_path, monkeypatch
):
    """The disk fills while the journal notes a run of files: half a line is written. That line
    stays the last (it is not written again after itself), and the next pull resumes."""
    copied = LocalStore(copied_runs(mirror_crawl.archive, tmp_path / "copied", runs=3))
    once = tmp_path / "once.jsonl"
    pull(copied, once, Slice(), "jsonl")
    append = _Journal._append
    calls = []

    def disk_full_at_the_third(journal, entries):
        calls.append(len(entries))
        if len(calls) == 3:
            with journal.path.open("ab") as handle:
                handle.write(json.dumps(entries[0]).encode()[:20])
            raise OSError(errno.ENOSPC, "No space left on device")
        append(journal, entries)

    monkeypatch.setattr(_Journal, "_append", disk_full_at_the_third)
    dest = tmp_path / "slice.jsonl"
    with pytest.raises(OSError, match="No space left"):
        pull(copied, dest, Slice(), "jsonl")
    assert len(calls) == 3  # the lines of the failed write were not tried again
    monkeypatch.setattr(_Journal, "_append", append)
    pull(copied, dest, Slice(), "jsonl")
    assert versions(dest, "jsonl") == versions(once, "jsonl")


def test_a_pull_of_another_slice_into_the_same_place_is_refused(mirror_crawl, tmp_path):
    store = LocalStore(mirror_crawl.archive)
    pull(store, tmp_path / "slice", Slice(languages=("zh",)))
    with pytest.raises(PullError, match="another slice or format"):
        pull(store, tmp_path / "slice", Slice(languages=("en",)))


def test_a_journal_of_the_former_layout_is_refused_not_trusted(mirror_crawl, tmp_path):
    """It noted files, not rows: resumed from it, a compacted file would be pulled twice."""
    dest = tmp_path / "slice"
    dest.mkdir()
    (dest / ".pull.jsonl").write_text(json.dumps({"slice": Slice().to_json(), "format": "parquet"}) + "\n")
    with pytest.raises(PullError, match="older newsarchive"):
        pull(LocalStore(mirror_crawl.archive), dest, Slice())


def test_a_journal_damaged_in_the_middle_is_refused_not_trusted(mirror_crawl, tmp_path):
    store = LocalStore(mirror_crawl.archive)
    dest = tmp_path / "slice.jsonl"
    pull(store, dest, Slice(), "jsonl")
    lines = journal(dest, "jsonl").read_bytes().splitlines(keepends=True)
    journal(dest, "jsonl").write_bytes(b"".join([*lines[:2], b'{"key": 1, "length": 2}\n', *lines[2:]]))
    with pytest.raises(PullError, match="is no journal of a pull"):
        pull(store, dest, Slice(), "jsonl")
