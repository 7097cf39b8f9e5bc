"""Rows become parts by rows, bytes and age, and memory is bounded across partitions; parts
are encoded as the schema module says."""

from __future__ import annotations

import sys

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.archive.index import ArchiveIndex
from pipelines.archive.rows import ROW_OVERHEAD, PartBuffers, parquet_file, read_parquet, to_row, to_table
from pipelines.stages.dedup import Deduplicator
from pipelines.stages.page import PageAnalyser
from tests.conftest import FIXTURES, fetched_article


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def row(text: str = "") -> dict:
    return {"text": text}  # ROW_OVERHEAD + len(text) bytes


def sizes(parts: list) -> list[tuple[str, int]]:
    return [(part.partition, len(part.rows)) for part in parts]


def test_a_partition_becomes_a_part_at_its_row_limit():
    buffers = PartBuffers(max_rows=3, max_bytes=10**9, max_age=60, max_total_bytes=10**9)
    assert [sizes(buffers.add("a", row())) for _ in range(4)] == [[], [], [("a", 3)], []]


def test_a_partition_becomes_a_part_at_its_byte_limit():
    buffers = PartBuffers(max_rows=100, max_bytes=2 * ROW_OVERHEAD + 10, max_age=60, max_total_bytes=10**9)
    assert sizes(buffers.add("a", row("x" * 5))) == []
    assert sizes(buffers.add("a", row("x" * 5))) == [("a", 2)]


def test_rows_that_waited_too_long_go_even_without_new_rows():
    clock = Clock()
    buffers = PartBuffers(max_rows=100, max_bytes=10**9, max_age=60, max_total_bytes=10**9, clock=clock)
    buffers.add("old", row())
    clock.now = 30
    buffers.add("new", row())
    assert buffers.aged() == []
    clock.now = 60
    assert sizes(buffers.aged()) == [("old", 1)]
    clock.now = 90
    assert sizes(buffers.aged()) == [("new", 1)]
    assert list(buffers.drain()) == []


def test_memory_is_bounded_across_partitions_the_largest_goes_first():
    buffers = PartBuffers(max_rows=100, max_bytes=10**9, max_age=60, max_total_bytes=5 * ROW_OVERHEAD)
    for partition in "abcd":
        assert buffers.add(partition, row()) == []
    buffers.add("b", row())
    assert buffers.total_bytes == 5 * ROW_OVERHEAD
    assert sizes(buffers.add("c", row())) == [("b", 2)]
    assert buffers.total_bytes == 4 * ROW_OVERHEAD
    assert sizes(buffers.drain()) == [("a", 1), ("c", 2), ("d", 1)] and buffers.total_bytes == 0


def test_a_part_has_statistics_for_every_scalar_column_but_the_text_and_no_dictionaries():
    analyse, dedup = PageAnalyser(), Deduplicator(ArchiveIndex())
    rows = []
    for path in sorted((FIXTURES / "pages").glob("*.html")):
        item = analyse(
            fetched_article(url=f"https://news.example.cn/{path.stem}.html", body=path.read_bytes())
        )
        if item.text and dedup.duplicate(item) is None:
            rows.append(to_row(item))
    table = to_table(rows)
    part = pq.ParquetFile(pa.BufferReader(parquet_file(table)))
    chunks = [part.metadata.row_group(0).column(i) for i in range(part.metadata.num_columns)]
    with_statistics = {chunk.path_in_schema for chunk in chunks if chunk.is_stats_set}
    scalar = {field.name for field in table.schema if not pa.types.is_nested(field.type)}
    assert len(rows) > 5 and with_statistics == scalar - {"text"}
    assert not [chunk.path_in_schema for chunk in chunks if "DICTIONARY" in " ".join(chunk.encodings)]
    assert part.read().equals(table)


def test_a_parquet_read_leaves_arrow_no_reference_to_the_bytes_it_was_read_from():
    """Arrow's workers drop a scan's last references after the read returns; a reference to
    Python bytes dropped while the interpreter exits aborts the process (see read_parquet).
    Read straight from the bytes, one read in three still held them when it returned."""
    data = parquet_file(pa.table({"n": list(range(2000))})).to_pybytes()
    held = []
    for _ in range(50):
        before = sys.getrefcount(data)
        table = read_parquet(data)
        held.append(sys.getrefcount(data) - before)
        assert table.column("n").to_pylist() == list(range(2000))
    assert held == [0] * 50
