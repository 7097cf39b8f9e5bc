"""A pull stopped at any point, then run again, gives the slice a pull in one go gives."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipelines.archive.storage import LocalStore
from pipelines.tools.pull import FORMATS, PullError, Slice, pull


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


def content(dest: Path, output: str) -> dict[str, bytes]:
    if output == "parquet":
        return {p.relative_to(dest).as_posix(): p.read_bytes() for p in sorted(dest.rglob("*.parquet"))}
    return {dest.name: dest.read_bytes()}


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
        report = pull(store, dest, Slice(), output)
        assert (report.files_skipped, report.files_read) == (stop, files - stop)
        assert content(dest, output) == content(whole, output)


def test_a_pull_of_another_slice_into_the_same_place_is_refused(mirror_crawl, tmp_path):
    store = LocalStore(mirror_crawl.archive)
    pull(store, tmp_path / "slice", Slice(languages=("zh",)))
    with pytest.raises(PullError, match="another slice or format"):
        pull(store, tmp_path / "slice", Slice(languages=("en",)))
