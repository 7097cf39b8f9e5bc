"""Each check of ``verify`` on one file, against what its manifest says."""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.catalog import ArchivedFile
from pipelines.verify import file_problems

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
