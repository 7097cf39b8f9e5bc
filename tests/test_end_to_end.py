"""The whole crawl of the offline mirrors, through the CLI, over real loopback sockets."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import tomllib

import duckdb
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines.archive.keys import delta_key
from pipelines.archive.schema import INDEX_SCHEMA, SCHEMA, SCHEMA_VERSION
from tests.conftest import ARCHIVED, FIXTURES, MIRROR, REPO, requested_as, run_cli

FURNITURE = tomllib.loads((FIXTURES / "furniture.toml").read_text(encoding="utf-8"))


def test_every_mirrored_article_is_archived_once(mirror_rows, mirror_crawl):
    assert sorted(mirror_rows) == sorted(a.url for a in ARCHIVED)
    assert len({r["article_id"] for r in mirror_rows.values()}) == len(ARCHIVED)
    assert {r["outlet_id"] for r in mirror_rows.values()} == set(FURNITURE)


@pytest.mark.parametrize("article", ARCHIVED, ids=lambda a: a.url.split("/", 3)[3][-40:])
def test_text_recall_and_no_furniture(mirror_rows, yardstick, article):
    text = mirror_rows[article.url]["text"]
    _, recall, _ = yardstick.prf(text, article.gold_text)
    assert recall >= 0.97
    for furniture in FURNITURE[article.outlet_id]:
        assert furniture not in article.gold_text, "fixture error: furniture string is article text"
        assert furniture not in text


@pytest.mark.parametrize("article", ARCHIVED, ids=lambda a: a.url.split("/", 3)[3][-40:])
def test_metadata(mirror_rows, article):
    row = mirror_rows[article.url]
    assert row["title"] == article.title
    assert row["published_at"] == article.published
    assert row["editor"] == article.editor
    assert row["source"] == article.source
    assert (
        row["charset"]
        .replace("-", "")
        .startswith({"gbk": "gb18030", "cp1252": "cp1252"}.get(article.encoding, "utf8"))
    )
    language = article.raw.get(
        "language",
        "zh" if article.outlet_id in ("gmw-cq", "tianyan-gzdaily", "sxkjt", "hangzhou-net") else "en",
    )
    assert row["language"] == language
    assert row["languages"][0]["language"] == language and row["language_confidence"] > 0.5
    assert row["language_script"] == ("Hans" if language == "zh" else None)
    assert row["text"].count("\n\n") == len(article.paragraphs) - 1 - sum(
        p.startswith("![") and not p[2:].split("]")[0] for p in article.paragraphs
    )


def test_non_articles_and_forbidden_pages_are_not_archived(mirror_rows, mirror_crawl, mirror_server):
    for article in MIRROR.articles:
        if article.expect != "archived":
            assert article.url not in mirror_rows
    forbidden = [a for a in MIRROR.articles if a.expect == "robots"]
    assert forbidden
    requested = set(mirror_server.requested)
    for article in forbidden:
        assert article.url.split("://", 1)[1] not in requested
    assert "not fetched, forbidden by robots.txt: 1" in mirror_crawl.stdout
    assert "article pages not fetched, by reason: http_404: 1, robots: 1" in mirror_crawl.stdout


def test_files_follow_the_schema_and_partitioning(mirror_crawl):
    files = sorted(mirror_crawl.archive.rglob("*"))
    assert not [f for f in files if f.name.endswith(".tmp")]
    parquet = [f for f in files if f.suffix == ".parquet" and "_index" not in f.parts]
    assert parquet
    index = [f.relative_to(mirror_crawl.archive).as_posix() for f in files if f.parent.name == "_index"]
    assert index == [delta_key(mirror_crawl.stdout.split()[1])]
    assert pq.read_schema(mirror_crawl.archive / index[0]).remove_metadata() == INDEX_SCHEMA
    for path in parquet:
        outlet, month = path.parent.parent.name, path.parent.name
        assert outlet.startswith("outlet=") and month.startswith("published=")
        schema = ds.dataset(path, format="parquet").schema
        assert schema.remove_metadata() == SCHEMA.remove_metadata()
        assert schema.metadata[b"newsarchive.schema_version"] == SCHEMA_VERSION.encode()


def test_the_run_is_sealed_by_a_manifest(mirror_crawl):
    """A local archive is published like a bucket: parts via the spool, then the manifest."""
    crawl_id = mirror_crawl.stdout.split()[1]
    manifest = json.loads((mirror_crawl.archive / "_manifests" / f"{crawl_id}.json").read_text())
    parquet = sorted(
        p.relative_to(mirror_crawl.archive).as_posix()
        for p in mirror_crawl.archive.glob("outlet=*/published=*/*.parquet")
    )
    assert sorted(f["key"] for f in manifest["files"]) == parquet
    assert manifest["rows"] == len(ARCHIVED) and manifest["interrupted"] is False
    for entry in manifest["files"]:
        data = (mirror_crawl.archive / entry["key"]).read_bytes()
        assert (len(data), hashlib.sha256(data).hexdigest()) == (entry["bytes"], entry["sha256"])
    assert not list((mirror_crawl.archive / ".spool").rglob("*.parquet"))


def test_duckdb_reads_the_archive_with_hive_partitions(mirror_crawl):
    glob = f"{mirror_crawl.archive}/outlet=*/published=*/*.parquet"
    counts = duckdb.sql(
        f"SELECT outlet, count(*) FROM read_parquet('{glob}', hive_partitioning = true) "
        "WHERE outlet = outlet_id GROUP BY outlet ORDER BY outlet"
    ).fetchall()
    assert counts == sorted((o, sum(a.outlet_id == o for a in ARCHIVED)) for o in FURNITURE)


def test_printed_duckdb_command_runs(mirror_crawl):
    prefix = "query it with DuckDB: "
    command = next(line for line in mirror_crawl.stdout.splitlines() if line.startswith(prefix))
    shown = subprocess.run(
        command.removeprefix(prefix), shell=True, capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert shown.returncode == 0, shown.stderr
    for outlet in FURNITURE:
        assert outlet in shown.stdout


@pytest.mark.slow
def test_a_second_run_fetches_no_known_article_and_writes_no_row(mirror_crawl, mirror_server, tmp_path):
    archive = tmp_path / "archive"  # a copy: the session's archive stays as one run left it
    shutil.copytree(mirror_crawl.archive, archive, ignore=shutil.ignore_patterns(".*"))
    before = sorted(p.name for p in archive.glob("outlet=*/published=*/*.parquet"))
    asked_before = len(mirror_server.requested)
    again = run_cli("crawl", "--mirror-url", mirror_server.url, "--archive", str(archive), "--quiet")
    assert again.returncode == 0, again.stdout + again.stderr
    assert again.stdout == "" and again.stderr == ""  # quiet when fine: cron mails nothing
    assert sorted(p.name for p in archive.glob("outlet=*/published=*/*.parquet")) == before
    asked = set(mirror_server.requested[asked_before:])
    assert asked  # sitemaps, feeds and listings are read again
    assert not asked & {requested_as(a.url) for a in ARCHIVED}


@pytest.mark.slow
def test_summary_is_loud_when_an_outlet_yields_nothing(tmp_path):
    # no mirror behind this URL: every request fails, so no outlet finds an article page
    run = run_cli(
        "crawl",
        "--mirror-url",
        "http://127.0.0.1:9/",
        "--archive",
        str(tmp_path),
        "--outlet",
        "sxkjt",
        "--quiet",
        "-s",
        "RETRY_TIMES=0",
    )
    assert run.returncode == 1
    assert "PROBLEM sxkjt: no article page found" in run.stdout
