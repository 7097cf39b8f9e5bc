"""Each check of ``verify`` on one file, against what its manifest says."""

from __future__ import annotations

import contextlib
import hashlib
import io
import zlib
from collections.abc import Iterator
from dataclasses import replace
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.archive.catalog import Catalog, read_verified
from pipelines.archive.keys import cdxj_key
from pipelines.archive.manifest import ArchivedFile, ArchivedWarc
from pipelines.archive.storage import LocalStore
from pipelines.tools.verify import _warc_problems, derived_problems, file_problems
from tests.pipelines.archive.test_warc import _written

KEY = "outlet=gmw-cq/published=2024-03/part-x-00001.parquet"


def listed(data: bytes, rows: int) -> ArchivedFile:
    """``data`` as its manifest would list it, with ``rows`` rows."""
    return ArchivedFile(KEY, "x", rows, len(data), hashlib.sha256(data).hexdigest(), {})


def parquet(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


def test_a_file_as_published_has_no_problem():
    table = pa.table({"url": ["a", "b"]}).replace_schema_metadata({"newsarchive.schema_version": "1.1"})
    data = parquet(table)
    assert file_problems(data, listed(data, 2)) == []


def test_rows_and_schema_version_are_checked_once_the_bytes_are_right():
    data = parquet(pa.table({"url": ["a", "b"]}))
    assert file_problems(data, listed(data, 3)) == [
        f"{KEY}: 2 rows, the manifest says 3",
        f"{KEY}: schema version missing, not one this newsarchive reads",
    ]


def test_bytes_that_are_not_parquet_are_named():
    data = b"not parquet at all"
    (problem,) = file_problems(data, listed(data, 1))
    assert problem.startswith(f"{KEY}: not readable as Parquet")


def test_a_file_of_another_size_is_named_before_its_digest_is_taken():
    data = parquet(pa.table({"url": ["a"]}))
    expected = f"{KEY}: {len(data) - 1} bytes, the manifest says {len(data)}"
    assert file_problems(data[:-1], listed(data, 1)) == [expected]


class CountingStream(LocalStore):
    """A local store that counts the bytes read from its streams."""

    served = 0

    @contextlib.contextmanager
    def stream(self, key: str) -> Iterator[BinaryIO]:
        with super().stream(key) as handle:
            original = handle.read

            def read(size: int = -1) -> bytes:
                chunk = original(size)
                self.served += len(chunk)
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
