"""The archive's index: a delta per crawl, read before the crawl fetches, compacted into a base."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.dedup import article_id, text_hash
from pipelines.index import ArchiveIndex, compact
from pipelines.publish import Spool, publish_spool
from pipelines.storage import LocalStore, S3Store
from tests.conftest import FIXTURES

FETCHED = datetime(2026, 11, 23, 4, 0, tzinfo=UTC)


def part(*urls: str, version: int = 1, redirected_from: str | None = None) -> pa.Table:
    return pa.table(
        {
            "article_id": [article_id(u) for u in urls],
            "url": list(urls),
            "canonical_url": list(urls),
            "text_hash": [text_hash(f"text of {u} v{version}") for u in urls],
            "version": pa.array([version] * len(urls), pa.int32()),
            "fetched_at": pa.array([FETCHED] * len(urls), pa.timestamp("us", tz="UTC")),
            "redirected_from": [redirected_from] * len(urls),
        }
    )


def crawl(store, spool: Spool, crawl_id: str, *tables: pa.Table) -> None:
    spooled = spool.open_crawl(crawl_id, ["x"])
    for n, table in enumerate(tables, 1):
        spooled.write_part(f"outlet=x/published=2026-11/part-{crawl_id}-{n:05d}.parquet", table)
    spooled.finish()
    spooled.release()
    assert publish_spool(store, spool).pending_crawls == []


def index_of(store) -> ArchiveIndex:
    index = ArchiveIndex()
    index.refresh(store)
    return index


class CountingStore(LocalStore):
    """A local store that counts its reads."""

    reads = 0

    def read(self, key: str) -> bytes:
        self.reads += 1
        return super().read(key)


@pytest.fixture
def store(tmp_path):
    return CountingStore(tmp_path / "archive")


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


def test_each_crawl_publishes_its_delta_before_its_manifest(store, spool):
    crawl(store, spool, "c1", part("https://x.cn/1.html", redirected_from="https://x.cn/old/1"))
    manifest = json.loads(store.read("_manifests/c1.json"))
    assert manifest["index"] == "_index/delta-c1.parquet"
    assert "index" not in manifest["files"][0]  # the entries are in the delta, not the manifest
    entries = pq.read_table(store.root / manifest["index"]).to_pylist()
    assert sorted(e["url"] for e in entries) == ["https://x.cn/1.html", "https://x.cn/old/1"]
    assert {e["file"] for e in entries} == {manifest["files"][0]["key"]}
    index = index_of(store)
    for url in ("https://x.cn/1.html", "https://x.cn/old/1", "https://x.cn/1.html#comments"):
        held = index.known_url(url)
        assert held is not None and held.version == 1 and held.last_fetched == FETCHED
    assert index.known_url("https://x.cn/2.html") is None
    assert index.first_with_text(text_hash("text of https://x.cn/1.html v1")) == article_id(
        "https://x.cn/1.html"
    )


def test_a_later_version_and_an_unchanged_fetch(store, spool):
    crawl(store, spool, "c1", part("https://x.cn/1.html", "https://x.cn/2.html"))
    crawl(store, spool, "c2", part("https://x.cn/1.html", version=2))
    later = datetime(2026, 11, 24, tzinfo=UTC)
    spooled = spool.open_crawl("c3", ["x"])
    spooled.note(
        [{**pq.read_table(store.root / "_index/delta-c1.parquet").to_pylist()[1], "last_fetched": later}]
    )
    spooled.finish()
    spooled.release()
    publish_spool(store, spool)
    index = index_of(store)
    assert index.latest(article_id("https://x.cn/1.html")) == (2, text_hash("text of https://x.cn/1.html v2"))
    assert index.known_url("https://x.cn/2.html").last_fetched == later


def test_compaction_keeps_what_the_index_says_and_reads_one_file(store, spool):
    for n in range(1, 6):
        crawl(store, spool, f"c{n}", part(f"https://x.cn/{n}.html"), part(f"https://x.cn/{n}b.html"))
    crawl(store, spool, "c6", part("https://x.cn/1.html", version=2))
    before = index_of(store)
    assert compact(store, spool.root, "c6", keep_deltas=10) is None  # not yet: 6 deltas
    assert compact(store, spool.root, "c6", keep_deltas=6) == "_index/base-c6.parquet"
    assert sorted(store.object_keys("_index/")) == ["_index/base-c6.parquet"]
    store.reads = 0
    after = index_of(store)
    assert store.reads == 1  # the base: no delta, no manifest, no part
    assert after.articles == before.articles and after.urls == before.urls and after.texts == before.texts
    crawl(store, spool, "c7", part("https://x.cn/7.html"))
    store.reads = 0
    assert "https://x.cn/7.html" in {
        e["url"] for e in pq.read_table(store.root / "_index/delta-c7.parquet").to_pylist()
    }
    assert index_of(store).known_url("https://x.cn/7.html") is not None
    assert store.reads == 2  # the base and the new delta


def test_an_archive_older_than_the_index_is_read_from_its_manifests(store, spool):
    crawl(store, spool, "c1", part("https://x.cn/1.html"))
    store.delete("_index/delta-c1.parquet")  # as a crawl published before the index existed
    store.publish(FIXTURES / "archive" / "not-a-manifest.json", "_manifests/junk.json")
    index = index_of(store)
    assert article_id("https://x.cn/1.html") in index
    assert index.known_url("https://x.cn/1.html") is None  # manifests list ids, not URLs


def test_compaction_in_a_bucket_deletes_what_it_replaced(object_store, monkeypatch, tmp_path):
    for name, value in object_store.env.items():
        monkeypatch.setenv(name, value)
    bucket = S3Store(f"s3://{object_store.create_bucket()}/archive")
    spool = Spool(tmp_path / "spool")
    for n in range(1, 4):
        crawl(bucket, spool, f"c{n}", part(f"https://x.cn/{n}.html"))
    assert compact(bucket, spool.root, "c3", keep_deltas=3) == "_index/base-c3.parquet"
    assert list(bucket.object_keys("_index/")) == ["_index/base-c3.parquet"]
    assert all(index_of(bucket).known_url(f"https://x.cn/{n}.html") for n in range(1, 4))
