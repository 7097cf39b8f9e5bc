"""Each check of ``verify`` on one file, against what its manifest says; objects read as streams;
which runs ``--since`` reads, and the mark ``--since last`` keeps."""

from __future__ import annotations

import contextlib
import hashlib
import io
import tracemalloc
import zlib
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.archive.catalog import Catalog, read_verified
from pipelines.archive.keys import cdxj_key
from pipelines.archive.manifest import ArchivedFile, ArchivedWarc
from pipelines.archive.storage import LocalStore
from pipelines.tools.verify import (
    FOOTER_MAX_BYTES,
    VERIFY_MARK,
    Since,
    _hashed_problems,
    _part_problems,
    _read_mark,
    _warc_problems,
    derived_problems,
)
from tests.pipelines.archive.test_warc import _written

KEY = "outlet=gmw-cq/published=2024-03/part-x-00001.parquet"


def listed(data: bytes, rows: int) -> ArchivedFile:
    """``data`` as its manifest would list it, with ``rows`` rows."""
    return ArchivedFile(KEY, "x", rows, len(data), hashlib.sha256(data).hexdigest(), {})


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def placed(store: LocalStore, data: bytes, key: str = KEY) -> None:
    store.root.joinpath(key).parent.mkdir(parents=True, exist_ok=True)
    store.root.joinpath(key).write_bytes(data)


def part_problems(tmp_path: Path, data: bytes, file: ArchivedFile) -> list[str]:
    """What verify says of ``data`` published as ``file``."""
    store = LocalStore(tmp_path)
    placed(store, data)
    return _part_problems(store, file)


def test_a_file_as_published_has_no_problem(tmp_path):
    table = pa.table({"url": ["a", "b"]}).replace_schema_metadata({"newsarchive.schema_version": "1.1"})
    data = parquet(table)
    assert part_problems(tmp_path, data, listed(data, 2)) == []


def test_rows_and_schema_version_are_checked_once_the_bytes_are_right(tmp_path):
    data = parquet(pa.table({"url": ["a", "b"]}))
    assert part_problems(tmp_path, data, listed(data, 3)) == [
        f"{KEY}: 2 rows, the manifest says 3",
        f"{KEY}: schema version missing, not one this newsarchive reads",
    ]


@pytest.mark.parametrize("data", [b"not parquet at all", b"PAR1", b"PAR1" + bytes(4) + b"PAR1"])
def test_bytes_that_are_not_parquet_are_named(tmp_path, data):
    (problem,) = part_problems(tmp_path, data, listed(data, 1))
    assert problem.startswith(f"{KEY}: not readable as Parquet")


def test_a_file_of_another_size_is_named_before_its_digest_is_taken(tmp_path):
    data = parquet(pa.table({"url": ["a"]}))
    expected = f"{KEY}: {len(data) - 1} bytes, the manifest says {len(data)}"
    assert part_problems(tmp_path, data[:-1], listed(data, 1)) == [expected]


class CountingStream(LocalStore):
    """A local store that counts the bytes read from its streams, and their largest read."""

    served = largest = 0

    @contextlib.contextmanager
    def stream(self, key: str) -> Iterator[BinaryIO]:
        with super().stream(key) as handle:
            original = handle.read

            def read(size: int = -1) -> bytes:
                chunk = original(size)
                self.served += len(chunk)
                self.largest = max(self.largest, len(chunk))
                return chunk

            handle.read = read
            yield handle


@pytest.mark.parametrize("limit", ["manifest", "cap"])
def test_an_object_bigger_than_its_manifest_says_or_any_part_is_refused_unread(tmp_path, monkeypatch, limit):
    """Its manifest, or one planted, may list a part of a few bytes (or a huge one) under the key
    of an object of gigabytes: no more than the smaller of the two limits is read."""
    data = parquet(pa.table({"url": ["a"]}))
    store = CountingStream(tmp_path)
    store.root.joinpath(KEY).parent.mkdir(parents=True)
    store.root.joinpath(KEY).write_bytes(data + bytes(4 << 20))
    stated = len(data) if limit == "manifest" else 1 << 40
    if limit == "cap":
        monkeypatch.setattr("pipelines.archive.catalog.PART_MAX_BYTES", len(data))
    file = replace(listed(data, 1), bytes=stated)
    assert read_verified(store, file) == (
        None,
        [f"{KEY}: over {len(data)} bytes (the manifest says {stated}); not read"],
    )
    assert store.served <= len(data) + 1


class StreamsOnly(CountingStream):
    """A local store whose objects can only be streamed: a whole or ranged read fails the test."""

    def read(self, key: str) -> bytes:
        raise AssertionError(f"{key} read whole")

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        raise AssertionError(f"{key} read by range")


def test_a_big_part_is_hashed_as_a_stream_and_only_its_footer_kept(tmp_path):
    """32 MiB of rows (generated, in the test's folder): read once, a megabyte at a time, the
    sha256 taken as they pass, the rows counted from the footer kept from the stream's end; at no
    time does the check hold half the part."""
    rows = [bytes([n]) * (1 << 20) for n in range(32)]
    table = pa.table({"text": rows}).replace_schema_metadata({"newsarchive.schema_version": "1.2"})
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="none", use_dictionary=False)
    data = sink.getvalue()
    store = StreamsOnly(tmp_path)
    placed(store, data)
    del rows, table, sink
    tracemalloc.start()
    try:
        assert _part_problems(store, listed(data, 32)) == []
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(data) > 4 * FOOTER_MAX_BYTES and peak < len(data) // 2
    assert store.served == len(data) and store.largest <= 1 << 20
    assert _part_problems(store, listed(data, 31)) == [f"{KEY}: 32 rows, the manifest says 31"]


@pytest.mark.parametrize("kind", ["part", "cdxj"])
def test_an_object_longer_than_its_manifest_says_is_read_no_further(tmp_path, kind):
    """A sparse object of a gigabyte under the key its manifest lists at 4 KB: 4 KB and one byte read."""
    store = CountingStream(tmp_path)
    placed(store, b"")
    with store.root.joinpath(KEY).open("r+b") as handle:
        handle.truncate(1 << 30)
    stated = 4096
    file = replace(listed(b"", 1), bytes=stated)
    problems = (
        _part_problems(store, file) if kind == "part" else _hashed_problems(store, KEY, stated, file.sha256)
    )
    assert problems == [f"{KEY}: over the {stated} bytes the manifest says; not read past them"]
    assert store.served == stated + 1


def test_a_footer_past_what_is_kept_is_named_not_read(tmp_path, monkeypatch):
    data = parquet(pa.table({"url": ["a"] * 1000}))
    monkeypatch.setattr("pipelines.tools.verify.FOOTER_MAX_BYTES", 64)
    (problem,) = part_problems(tmp_path, data, listed(data, 1000))
    assert problem.startswith(f"{KEY}: a Parquet footer of ") and problem.endswith("bytes, over the 64 read")


def listed_warc(store: LocalStore, key: str, records: int) -> ArchivedWarc:
    """The WARC ``key`` as its manifest would list it (its bytes as they are now)."""
    data = store.read(key)
    cdxj = ArchivedFile(cdxj_key(key), "run1", 0, 0, "", None)
    return ArchivedWarc(key, "run1", len(data), hashlib.sha256(data).hexdigest(), records, cdxj)


def test_a_warc_is_read_through_record_by_record_not_only_hashed(tmp_path):
    captures, (warc,) = _written(tmp_path)
    store = LocalStore(tmp_path)
    records = 1 + 2 * len(captures)
    assert _warc_problems(store, listed_warc(store, warc.key, records)) == []
    assert _warc_problems(store, listed_warc(store, warc.key, records + 1)) == [
        f"{warc.key}: {records} records, the manifest says {records + 1}"
    ]
    data, capture = bytearray(warc.path.read_bytes()), captures[0]
    record = zlib.decompress(bytes(data[capture.offset : capture.offset + capture.length]), 31)
    changed = record[:-10] + bytes([record[-10] ^ 1]) + record[-9:]  # a byte of its body
    compressor = zlib.compressobj(6, zlib.DEFLATED, 31)
    data[capture.offset : capture.offset + capture.length] = compressor.compress(changed) + compressor.flush()
    warc.path.write_bytes(data)
    # the manifest's sha256 is of these bytes (a WARC damaged before it was published, or replaced
    # along with its manifest): the records' own digests still tell
    (problem,) = _warc_problems(store, listed_warc(store, warc.key, records))
    assert problem.startswith(f"{warc.key}: not whole records with matching digests") and "digest" in problem


def test_every_index_file_and_template_is_checked_by_name_and_content(tmp_path):
    store = LocalStore(tmp_path)
    objects = {
        "_index/notes.txt": b"",
        "_index/delta-c1.parquet": b"PAR1 cut",
        "_index/open-c4.json": b"",  # an open marker: its name is all anything reads
        "_templates/gmw-cq/c1.json": b'{"pages": 5, "seen_on": []}',
        "_templates/c2.json": b"{}",  # no outlet's
        "_templates/gmw-cq/c3.json": b'{"pages": 5, "seen_on": {}}',  # sound
    }
    for key, data in objects.items():
        (tmp_path / key).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / key).write_bytes(data)
    problems = derived_problems(store, set(store.object_keys()), Catalog([]))
    assert [line.split(":")[0] for line in problems] == [
        "_index/delta-c1.parquet",
        "'_index/notes.txt'",
        "'_templates/c2.json'",
        "_templates/gmw-cq/c1.json",
    ]
    # since c2 (verify --since): the crawl c1's files are not read, every name still checked
    problems = derived_problems(store, set(store.object_keys()), Catalog([]), Since("c2").covers)
    assert [line.split(":")[0] for line in problems] == ["'_index/notes.txt'", "'_templates/c2.json'"]


def test_runs_since_a_crawl_id_include_it_and_after_a_mark_do_not():
    assert [Since("b").covers(c) for c in ("a", "b", "c")] == [False, True, True]
    assert [Since("b", after=True).covers(c) for c in ("a", "b", "c")] == [False, False, True]


@pytest.mark.parametrize(
    "content, said",
    [
        (None, None),
        (b'{"through": "20261123T041500Z-1a2b3c", "manifests": 3}', None),
        (b"{not json", "cannot be read"),
        (b'{"through": "../x", "manifests": 3}', "names no crawl id and count"),
        (b'{"through": "20261123T041500Z-1a2b3c", "manifests": "3"}', "names no crawl id and count"),
        (b"[" * 5000, "cannot be read"),
    ],
)
def test_the_last_pass_s_mark_is_read_bounded_and_checked(tmp_path, content, said):
    mark, notes = tmp_path / VERIFY_MARK, []
    if content is not None:
        mark.write_bytes(content)
    since = _read_mark(mark, notes)
    if said is None:
        assert notes == []
        assert since == (None if content is None else Since("20261123T041500Z-1a2b3c", True, 3))
    else:
        (note,) = notes
        assert since is None and said in note and note.endswith("every run checked")
