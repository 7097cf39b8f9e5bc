"""The README's pyarrow/pandas and Polars examples of reading the archive straight from the bucket,
run as written (the bucket's name aside) against both real S3 stores."""

from __future__ import annotations

import re

import pyarrow.dataset as ds
import pytest

from tests.conftest import ARCHIVED, REPO

BUCKET = "news-archive"  # the README's


def readme_examples() -> list[str]:
    """The Python blocks of the README's "Reading from the bucket" section."""
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("### Reading from the bucket", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.DOTALL)


@pytest.fixture
def bucket(object_store, mirror_crawl, monkeypatch) -> str:
    """The mirror crawl's archive under ``v1/`` of a fresh bucket, its store in the environment."""
    name, client = object_store.create_bucket(), object_store.client()
    for path in sorted(p for p in mirror_crawl.archive.rglob("*") if p.is_file()):
        key = path.relative_to(mirror_crawl.archive).as_posix()
        if not key.startswith("."):
            client.put_object(Bucket=name, Key=f"v1/{key}", Body=path.read_bytes())
    for variable, value in object_store.env.items():
        monkeypatch.setenv(variable, value)
    return name


def test_the_readme_reads_the_bucket_with_pyarrow_pandas_and_polars(bucket, mirror_crawl):
    pyarrow_example, polars_example = readme_examples()
    local = ds.dataset(mirror_crawl.archive, format="parquet", partitioning="hive").to_table()
    read: dict = {}
    exec(pyarrow_example.replace(BUCKET, bucket), read)
    rows = local.to_pylist()
    gmw = sorted(row["url"] for row in rows if row["outlet_id"] == "gmw-cq")
    assert sorted(read["table"].column("url").to_pylist()) == gmw
    assert sorted(read["frame"]["url"]) == gmw
    exec(polars_example.replace(BUCKET, bucket), read)
    chinese = read["chinese"]
    assert chinese.height == sum(1 for row in rows if row["language"] == "zh") > 0
    assert set(chinese["outlet_id"]) <= {a.outlet_id for a in ARCHIVED}
