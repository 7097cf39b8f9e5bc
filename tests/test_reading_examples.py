"""docs/object-storage.md's pyarrow/pandas and Polars examples of reading the archive straight from
the bucket, run as written (the bucket's name aside) against both real S3 stores."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import duckdb
import polars as pl
import pyarrow.dataset as ds
import pytest

from crawler.cli import main
from crawler.cli.exits import ExitCode
from pipelines.archive.keys import FORMER_INDEX_SUFFIX, INDEX_SUFFIX, is_key
from tests.conftest import ARCHIVED, REPO, run_cli

BUCKET = "news-archive"  # docs/object-storage.md's


def bucket_examples() -> list[str]:
    """The Python blocks of docs/object-storage.md's "Reading from the bucket" section."""
    page = (REPO / "docs" / "object-storage.md").read_text(encoding="utf-8")
    section = page.split("## Reading from the bucket", 1)[1].split("\n## ", 1)[0]
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


def test_the_docs_read_the_bucket_with_pyarrow_pandas_and_polars(bucket, mirror_crawl):
    pyarrow_example, polars_example = bucket_examples()
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


# The data glob: whatever a reader's glob matches by ``*.parquet`` must be article rows alone.


def archive_copy(mirror_crawl, tmp_path) -> Path:
    """The mirror crawl's archive as it lies on disk, hidden folders and all (``**`` enters them)."""
    archive = tmp_path / "archive"
    shutil.copytree(mirror_crawl.archive, archive)
    assert any(archive.glob("_index/*")), "the archive has an index for the glob to miss"
    return archive


def with_former_index_names(archive: Path) -> list[str]:
    """The archive's index files renamed as an older newsarchive named them (``.parquet``)."""
    renamed = []
    for path in sorted(archive.glob(f"_index/*{INDEX_SUFFIX}")):
        former = path.with_name(path.name.removesuffix(INDEX_SUFFIX) + FORMER_INDEX_SUFFIX)
        path.rename(former)
        renamed.append(former.relative_to(archive).as_posix())
    return renamed


def read_by_globs(archive: Path) -> dict[str, tuple[int, bool]]:
    """Rows, and whether ``title`` is a column, as each reader's glob over the archive reads them:
    DuckDB and Polars with ``**``, and DuckDB with one ``*`` per folder, the way a Spark (Hadoop)
    glob, which has no ``**``, names the partitions."""
    everything = f"{archive}/**/*.parquet"
    duck = duckdb.sql(f"SELECT * FROM read_parquet('{everything}', hive_partitioning = true)")
    per_folder = duckdb.sql(
        f"SELECT * FROM read_parquet('{archive}/*/*/*.parquet', hive_partitioning = true)"
    )
    polars = pl.scan_parquet(everything)
    return {
        "duckdb **": (duck.count("*").fetchall()[0][0], "title" in duck.columns),
        "duckdb */*/*": (per_folder.count("*").fetchall()[0][0], "title" in per_folder.columns),
        "polars **": (polars.select(pl.len()).collect().item(), "title" in polars.collect_schema().names()),
    }


def rows_of_ls(archive: Path, capsys) -> int:
    assert main(["ls", str(archive)]) == ExitCode.OK
    return int(re.search(r"([\d,]+) rows", capsys.readouterr().out)[1].replace(",", ""))


def parquet_names(archive: Path) -> list[str]:
    """Every file of the archive, hidden ones included, whose name a ``*.parquet`` glob matches."""
    return sorted(p.relative_to(archive).as_posix() for p in archive.rglob("*.parquet"))


def test_the_data_glob_reads_exactly_the_article_rows(mirror_crawl, tmp_path, capsys):
    archive = archive_copy(mirror_crawl, tmp_path)
    rows = rows_of_ls(archive, capsys)
    assert rows == len(ARCHIVED)
    assert read_by_globs(archive) == dict.fromkeys(["duckdb **", "duckdb */*/*", "polars **"], (rows, True))
    assert all(is_key(name, "part") for name in parquet_names(archive))


def test_an_archive_with_the_former_index_names_reads_verifies_pulls_and_reindex_renames(
    mirror_crawl, tmp_path, capsys
):
    archive = archive_copy(mirror_crawl, tmp_path)
    renamed = with_former_index_names(archive)
    assert renamed and set(renamed) <= set(parquet_names(archive))  # what the glob read as articles
    rows = rows_of_ls(archive, capsys)
    assert rows == len(ARCHIVED)
    assert main(["verify", str(archive)]) == ExitCode.OK
    assert f"{len(renamed)} index files have the former name" in capsys.readouterr().out
    pulled = tmp_path / "pulled.jsonl"
    assert main(["pull", str(archive), str(pulled), "--format", "jsonl"]) == ExitCode.OK
    assert len(pulled.read_text(encoding="utf-8").splitlines()) == rows
    assert main(["reindex", str(archive)]) == ExitCode.OK
    assert f"replacing {len(renamed)} index files" in capsys.readouterr().out
    assert [p.name.endswith(INDEX_SUFFIX) for p in (archive / "_index").iterdir()] == [True]  # one base
    assert read_by_globs(archive) == dict.fromkeys(["duckdb **", "duckdb */*/*", "polars **"], (rows, True))
    assert main(["verify", str(archive)]) == ExitCode.OK
    assert "former name" not in capsys.readouterr().out


@pytest.mark.slow
def test_the_next_crawl_renames_the_former_index_files(mirror_crawl, mirror_server, tmp_path):
    archive = archive_copy(mirror_crawl, tmp_path)
    renamed = with_former_index_names(archive)
    again = run_cli("crawl", "--mirror-url", mirror_server.url, "--archive", str(archive), "--quiet")
    assert again.returncode == 0, again.stdout + again.stderr
    assert renamed and not set(renamed) & set(parquet_names(archive))
    assert all(p.name.endswith(INDEX_SUFFIX) for p in (archive / "_index").iterdir())


def test_the_data_glob_over_the_bucket_reads_exactly_the_article_rows(bucket, mirror_crawl):
    articles = pl.scan_parquet(
        f"s3://{bucket}/v1/**/*.parquet",
        storage_options={"aws_endpoint_url": os.environ["AWS_ENDPOINT_URL"], "aws_allow_http": "true"},
    )
    assert "title" in articles.collect_schema().names()
    assert articles.select(pl.len()).collect().item() == len(ARCHIVED)
