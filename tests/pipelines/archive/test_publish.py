"""The spool and publication steps, on a local store: each step can be cut short and repeated."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.archive.index import part_entries, read_index_file
from pipelines.archive.publish import Publisher, archived_ids, publish_spool
from pipelines.archive.schema import SCHEMA
from pipelines.archive.spool import Spool
from pipelines.archive.storage import LocalStore
from pipelines.archive.warc import Exchange, WarcWriter
from tests.conftest import FIXTURES

KEY = "outlet=xx/published=2024-03/part-c1-00001.parquet"


def table(*ids: str) -> pa.Table:
    return pa.table({"article_id": list(ids), "text": [f"text of {i}" for i in ids]})


@pytest.fixture
def store(tmp_path):
    return LocalStore(tmp_path / "archive")


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


def manifest(store: LocalStore, crawl_id: str) -> dict:
    return json.loads(store.read(f"_manifests/{crawl_id}.json"))


def test_a_finished_crawl_is_published_then_sealed(store, spool):
    crawl = spool.open_crawl("c1", ["xx"])
    crawl.write_part(KEY, table("a", "b"))
    crawl.finish()
    crawl.release()
    report = publish_spool(store, spool)
    assert (report.files, report.manifests, report.pending_files) == (1, ["_manifests/c1.json"], 0)
    sealed = manifest(store, "c1")
    assert sealed["rows"] == 2 and not sealed["interrupted"] and sealed["outlets"] == ["xx"]
    assert sealed["schema_version"] == SCHEMA.metadata[b"newsarchive.schema_version"].decode()
    assert [f["article_ids"] for f in sealed["files"]] == [["a", "b"]]
    assert spool.crawl_ids() == []
    assert archived_ids(store) == {"a": KEY, "b": KEY}


def test_what_a_crawl_writes_of_itself_passes_the_checks_and_reaches_the_manifest(store, spool):
    """Every field a crawl records (crawl.json as :meth:`Publisher.close` leaves it, its journal,
    and the index entries it notes for unchanged articles) is checked before use: none of the
    crawl's own is refused (the forged ones: tests/test_security_spool.py). A server's validator
    no request may carry is not kept, or it would have the crawl's record refused."""
    earlier = "outlet=xx/published=2024-03/part-c0-00001.parquet"
    fetched = datetime(2024, 3, 2, tzinfo=UTC)
    held = table("z").append_column("fetched_at", pa.array([fetched], pa.timestamp("us", tz="UTC")))
    archive = Publisher(store, spool)
    archive.open("c1", ["xx"])
    archive.write_part("outlet=xx/published=2024-03", table("a", "b"), publish=False)
    archive.note(part_entries(held, earlier, "c1"))
    origin = {"archive": "s3://bucket/x", "runs": ["_manifests/c0.json"], "outlets": ["xx"]}
    page = {"etag": '"abc"', "last_modified": None, "read_at": "2024-03-02T00:00:00+00:00"}
    tabbed = {"etag": '"a\tb"', "last_modified": None, "read_at": "2024-03-02T00:00:00+00:00"}
    discovery = {"https://xx.example/sitemap.xml": page, "https://xx.example/feed.xml": tabbed}
    report = archive.close(discovery, stopped_early=True, reextracted_from=origin)
    assert (report.files, report.quarantined, report.damaged) == (1, [], [])
    sealed = manifest(store, "c1")
    assert sealed["discovery"] == {"https://xx.example/sitemap.xml": page}
    assert sealed["reextracted_from"] == origin and sealed["interrupted"] is True  # stopped early
    entries = read_index_file(store, sealed["index"]).entries.to_pylist()
    assert {(e["article_id"], e["file"]) for e in entries} == {("a", KEY), ("b", KEY), ("z", earlier)}


def test_parts_whose_columns_the_caller_holds_are_not_read_back(store, spool):
    """The crawl's last parts, just written, are published from the columns it kept of them (a
    read back was a third of the close). Here the file no longer reads: it is still published."""
    crawl = spool.open_crawl("c1", ["xx"])
    crawl.write_part(KEY, table("a", "b"))
    (crawl.folder / KEY).write_bytes((FIXTURES / "archive" / "not-a-part.parquet").read_bytes())
    crawl.finish()
    crawl.release()
    report = publish_spool(store, spool, columns={KEY: table("a", "b").select(["article_id"])})
    assert (report.files, report.quarantined) == (1, [])
    assert [f["article_ids"] for f in manifest(store, "c1")["files"]] == [["a", "b"]]


def test_a_running_crawl_is_left_alone(store, spool):
    crawl = spool.open_crawl("c1", ["xx"])
    crawl.write_part(KEY, table("a"))
    report = publish_spool(store, spool)
    assert report.busy_crawls == ["c1"] and list(store.object_keys()) == []
    crawl.release()  # the process died: its lock went with it
    report = publish_spool(store, spool)
    assert report.files == 1 and manifest(store, "c1")["interrupted"] is True


def test_a_publication_cut_short_is_finished_once(store, spool):
    """Killed after the store took a part but before the journal said so: no second copy."""
    crawl = spool.open_crawl("c1", ["xx"])
    crawl.write_part(KEY, table("a", "b"))
    crawl.release()
    store.publish(spool.root / "c1" / KEY, KEY)  # what the killed run managed
    assert archived_ids(store) == {"a": KEY, "b": KEY}  # an unsealed part still counts
    report = publish_spool(store, spool)
    assert (report.files, report.duplicate_rows) == (1, 0)
    assert manifest(store, "c1")["rows"] == 2
    assert [k for k in store.object_keys() if k.startswith("outlet=")] == [KEY]


def test_rows_archived_meanwhile_are_not_published_twice(store, spool, tmp_path):
    """A crawl that could not read the store at start may spool what is archived already."""
    earlier = tmp_path / "earlier.parquet"
    pq.write_table(table("a"), earlier)
    store.publish(earlier, "outlet=xx/published=2024-03/part-c0-00001.parquet")
    crawl = spool.open_crawl("c1", ["xx"])
    crawl.write_part(KEY, table("a", "b"))
    crawl.write_part(KEY.replace("00001", "00002"), table("a"))
    crawl.release()
    report = publish_spool(store, spool)
    assert (report.files, report.duplicate_rows) == (1, 2)
    assert pq.read_table(store.root / KEY).column("article_id").to_pylist() == ["b"]
    assert sorted(archived_ids(store)) == ["a", "b"]


JUNK = "outlet=xx/published=2024-03/part-junk-00001.parquet"  # a part's name, not its bytes


def test_foreign_or_broken_files_in_the_archive_are_skipped_loudly(store, spool, caplog):
    """Someone else's junk under the prefix must not stop the crawl that reads the archive."""
    store.publish(FIXTURES / "archive" / "not-a-part.parquet", JUNK)
    store.publish(FIXTURES / "archive" / "not-a-manifest.json", "_manifests/junk.json")
    crawl = spool.open_crawl("c1", ["xx"])
    crawl.write_part(KEY, table("a"))
    crawl.release()
    report = publish_spool(store, spool)
    assert (report.files, report.errors) == (1, [])
    assert archived_ids(store) == {"a": KEY}
    assert f"not a readable archive part, ignored: {JUNK}" in caplog.text
    assert [line.split(":")[0] for line in report.damaged] == ["_manifests/junk.json"]  # reported


def test_an_unreadable_spooled_part_is_set_aside_and_the_rest_published(store, spool):
    """One bad file left by an earlier crawl must not hold back that crawl or any later one."""
    crawl = spool.open_crawl("c1", ["xx"])
    crawl.write_part(KEY, table("a"))
    broken = crawl.folder / KEY.replace("00001", "00002")
    broken.write_bytes((FIXTURES / "archive" / "not-a-part.parquet").read_bytes())
    crawl.release()
    later = spool.open_crawl("c2", ["xx"])
    later.write_part(KEY.replace("c1", "c2"), table("b"))
    later.release()
    report = publish_spool(store, spool)
    assert (report.files, report.manifests, report.pending_crawls) == (
        2,
        ["_manifests/c1.json", "_manifests/c2.json"],
        [],
    )
    assert [Path(p).name for p in report.quarantined] == [broken.name]
    assert (
        Path(report.quarantined[0]).read_bytes() == (FIXTURES / "archive" / "not-a-part.parquet").read_bytes()
    )
    assert sorted(archived_ids(store)) == ["a", "b"]


@pytest.mark.parametrize("captured", [False, True])
def test_a_run_of_no_row_is_sealed_only_for_a_page_it_captured(store, spool, captured):
    """A run that found nothing new publishes nothing, not even the WARC of its listing pages;
    one that captured a page judged no article keeps that capture (a later reextract's only copy)."""
    archive = Publisher(store, spool)
    archive.open("c1", ["xx"])
    writer = WarcWriter(archive.crawl.folder, "c1", 1 << 20, {"software": "newsarchive test"})
    writer.write(
        Exchange(
            url="https://xx.example/gallery.html",
            method="GET",
            request_headers=[],
            request_body=b"",
            protocol="HTTP/1.1",
            status=200,
            response_headers=[("Content-Type", "text/html")],
            body=b"<html><body><img src=a.jpg></body></html>",
            ip_address="127.0.0.1",
            fetched_at=datetime(2024, 3, 2, tzinfo=UTC),
        )
    )
    if captured:
        archive.keep_capture()
    archive.publish_warc(writer.finish())
    archive.close()
    held = sorted(store.object_keys(""))
    if captured:
        assert held == ["_index/delta-c1.parquet-index", "_manifests/c1.json", *warc_keys("c1")]
    else:
        assert held == []
    assert spool.crawl_ids() == []


def warc_keys(crawl_id: str) -> list[str]:
    return [f"_warc/{crawl_id}-00001.cdxj", f"_warc/{crawl_id}-00001.warc.gz"]
