from __future__ import annotations

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.storage import LocalStorage, storage_for


def test_write_is_atomic_and_readable(tmp_path):
    storage = LocalStorage(tmp_path)
    table = pa.table({"article_id": ["a", "b"]})
    size = storage.write_parquet("outlet=x/published=2024-03/part-1.parquet", table)
    written = tmp_path / "outlet=x/published=2024-03/part-1.parquet"
    assert size == written.stat().st_size
    assert pq.read_table(written).equals(table)
    assert [p.name for p in written.parent.iterdir()] == ["part-1.parquet"]
    assert storage.read_column("article_id").to_pylist() == ["a", "b"]


def test_failed_write_leaves_nothing_behind(tmp_path):
    storage = LocalStorage(tmp_path)
    not_a_table = object()
    with pytest.raises(AttributeError):
        storage.write_parquet("outlet=x/published=2024-03/part-1.parquet", not_a_table)
    assert list((tmp_path / "outlet=x/published=2024-03").iterdir()) == []


def test_empty_archive_has_no_ids(tmp_path):
    assert LocalStorage(tmp_path).read_column("article_id") is None


def test_object_store_uris_are_refused_clearly():
    with pytest.raises(ValueError, match="not implemented yet"):
        storage_for("s3://bucket/prefix")
