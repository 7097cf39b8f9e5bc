"""The archive's index: a delta per crawl, read before the crawl fetches, compacted into a base."""

from __future__ import annotations

import contextlib
import json
import logging
import math
import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.archive.index import (
    ArchiveIndex,
    Damaged,
    compact_index,
    manifest_files,
    merge_entries,
    merge_plan,
    read_capped,
    read_index_file,
    visit_entries,
    write_index_file,
)
from pipelines.archive.keys import (
    FORMER_INDEX_SUFFIX,
    INDEX_SUFFIX,
    base_key,
    delta_key,
    is_key,
    open_marker_key,
)
from pipelines.archive.publish import Publisher, publish_spool
from pipelines.archive.schema import FORMER_INDEX_SCHEMA, INDEX_SCHEMA
from pipelines.archive.spool import Spool
from pipelines.archive.storage import LocalStore, S3Store, StoreError
from pipelines.stages.dedup import article_id, text_hash, url_key
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
    spooled = spool.open_crawl(crawl_id, ["xx"])
    for n, table in enumerate(tables, 1):
        spooled.write_part(f"outlet=xx/published=2026-11/part-{crawl_id}-{n:05d}.parquet", table)
    spooled.finish()
    spooled.release()
    assert publish_spool(store, spool).pending_crawls == []


def index_of(store) -> ArchiveIndex:
    index = ArchiveIndex()
    index.refresh(store)
    return index


def holdings(index: ArchiveIndex, urls: list[str]) -> tuple[dict, dict, dict]:
    """What an index holds: every article, and what it says of these URLs and their texts."""
    texts = [text_hash(f"text of {url} v{version}") for url in urls for version in (1, 2)]
    return (
        {article: index.held(article) for article in index.held_index},
        {url: index.known_url(url) for url in urls},
        {text: index.first_with_text(text) for text in texts},
    )


class CountingStore(LocalStore):
    """A local store that counts its reads, whole or streamed."""

    reads = 0

    def read(self, key: str) -> bytes:
        self.reads += 1
        return super().read(key)

    @contextlib.contextmanager
    def stream(self, key: str) -> Iterator[BinaryIO]:
        self.reads += 1
        with super().stream(key) as handle:
            yield handle


@pytest.fixture
def store(tmp_path):
    return CountingStore(tmp_path / "archive")


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


def test_each_crawl_publishes_its_delta_before_its_manifest(store, spool):
    crawl(store, spool, "c1", part("https://x.cn/1.html", redirected_from="https://x.cn/old/1"))
    manifest = json.loads(store.read("_manifests/c1.json"))
    assert manifest["index"] == delta_key("c1")
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
    spooled = spool.open_crawl("c3", ["xx"])
    spooled.note([{**pq.read_table(store.root / delta_key("c1")).to_pylist()[1], "last_fetched": later}])
    spooled.finish()
    spooled.release()
    publish_spool(store, spool)
    index = index_of(store)
    first = article_id("https://x.cn/1.html")
    assert index.latest(first, text_hash("text of https://x.cn/1.html v2")) == (2, True)
    assert index.latest(first, text_hash("text of https://x.cn/1.html v1")) == (2, False)
    assert index.known_url("https://x.cn/2.html").last_fetched == later


def test_compaction_keeps_what_the_index_says_and_reads_one_file(store, spool):
    for n in range(1, 6):
        crawl(store, spool, f"c{n}", part(f"https://x.cn/{n}.html"), part(f"https://x.cn/{n}b.html"))
    crawl(store, spool, "c6", part("https://x.cn/1.html", version=2))
    before = index_of(store)
    assert compact_index(store, spool.root, "c6", keep_deltas=10) is None  # not yet: 6 deltas
    assert compact_index(store, spool.root, "c6", keep_deltas=6) == base_key("c6")
    assert sorted(store.object_keys("_index/")) == [base_key("c6")]
    store.reads = 0
    after = index_of(store)
    assert store.reads == 1  # the base: no delta, no manifest, no part
    urls = [f"https://x.cn/{n}{b}.html" for n in range(1, 6) for b in ("", "b")]
    assert holdings(after, urls) == holdings(before, urls)
    crawl(store, spool, "c7", part("https://x.cn/7.html"))
    store.reads = 0
    assert "https://x.cn/7.html" in {
        e["url"] for e in pq.read_table(store.root / delta_key("c7")).to_pylist()
    }
    assert index_of(store).known_url("https://x.cn/7.html") is not None
    assert store.reads == 2  # the base and the new delta


def test_an_archive_older_than_the_index_is_read_from_its_manifests(store, spool):
    crawl(store, spool, "c1", part("https://x.cn/1.html"))
    store.delete(delta_key("c1"))  # as a crawl published before the index existed
    store.publish(FIXTURES / "archive" / "not-a-manifest.json", "_manifests/junk.json")
    index = index_of(store)
    assert article_id("https://x.cn/1.html") in index
    assert index.known_url("https://x.cn/1.html") is None  # manifests list ids, not URLs


def three_crawls_in_a_bucket(object_store, monkeypatch, tmp_path) -> tuple[S3Store, Spool]:
    """A new bucket of the store, and three crawls of one article each published into it."""
    for name, value in object_store.env.items():
        monkeypatch.setenv(name, value)
    bucket = S3Store(f"s3://{object_store.create_bucket()}/archive")
    spool = Spool(tmp_path / "spool")
    for n in range(1, 4):
        crawl(bucket, spool, f"c{n}", part(f"https://x.cn/{n}.html"))
    return bucket, spool


def test_compaction_in_a_bucket_deletes_what_it_replaced(object_store, monkeypatch, tmp_path):
    bucket, spool = three_crawls_in_a_bucket(object_store, monkeypatch, tmp_path)
    assert compact_index(bucket, spool.root, "c3", keep_deltas=3) == base_key("c3")
    assert list(bucket.object_keys("_index/")) == [base_key("c3")]
    assert all(index_of(bucket).known_url(f"https://x.cn/{n}.html") for n in range(1, 4))


def planted_base(store, merged: list) -> str:
    """A base published by someone else, naming ``merged`` as the files it replaces."""
    table = pa.Table.from_pylist([], schema=INDEX_SCHEMA)
    table = table.replace_schema_metadata({b"newsarchive.index.merged": json.dumps(merged)})
    store.root.joinpath("_index").mkdir(parents=True, exist_ok=True)
    pq.write_table(table, store.root / base_key("c0"))
    return base_key("c0")


@pytest.mark.parametrize(
    "named",
    [
        "../victim.txt",
        "_index/../../victim.txt",
        "_index/delta-c1.parquet/../../../victim.txt",
        "{victim}",  # an absolute path
        "_index\\..\\..\\victim.txt",
        "outlet=xx/published=2026-11/part-c1-00001.parquet",  # the archive's own files
        "_manifests/c1.json",
    ],
)
def test_a_base_that_names_anything_but_index_files_deletes_nothing(store, spool, tmp_path, named):
    victim = tmp_path / "victim.txt"
    victim.write_text("kept")
    crawl(store, spool, "c1", part("https://x.cn/1.html"))
    crawl(store, spool, "c2", part("https://x.cn/2.html"))
    before = sorted(store.object_keys())
    base = planted_base(store, [named.format(victim=victim), delta_key("c1")])
    # the deltas are merged around the damaged base, which is neither merged nor deleted
    assert compact_index(store, spool.root, "c3", keep_deltas=1) == base_key("c3")
    assert victim.read_text() == "kept"
    merged = {delta_key("c1"), delta_key("c2")}
    assert sorted(store.object_keys()) == sorted([*(set(before) - merged), base, base_key("c3")])
    # read around once, then named by the new base (never deleted on its own word): skipped after
    assert base in read_index_file(store, base_key("c3")).merged
    index = index_of(store)
    assert index.damaged == []
    assert all(index.known_url(f"https://x.cn/{n}.html") for n in (1, 2))


def test_a_damaged_index_file_is_read_around_from_the_parts(store, spool):
    crawl(store, spool, "c1", part("https://x.cn/1.html", redirected_from="https://x.cn/old/1"))
    crawl(store, spool, "c2", part("https://x.cn/2.html"))
    delta = store.root / delta_key("c1")
    delta.write_bytes(delta.read_bytes()[:-20])  # cut short: no footer
    index = index_of(store)
    assert [line.split(":")[0] for line in index.damaged] == [delta_key("c1")]
    for url in ("https://x.cn/1.html", "https://x.cn/old/1", "https://x.cn/2.html"):
        assert index.known_url(url) is not None  # from the part, URLs and all


def _dictionary_bomb(rows: int, value: int) -> bytes:
    """``rows`` entries sharing one URL of ``value`` bytes, kept once in the column's dictionary."""
    keys = pa.array([f"{n:064x}" for n in range(rows)])
    url = pa.DictionaryArray.from_arrays(pa.array([0] * rows, pa.int32()), pa.array(["u" * value]))
    fields = {"url_key": keys, "url": url, "article_id": keys, "file": pa.array(["f"] * rows)}
    schema = pa.schema([f.with_type(fields[f.name].type) if f.name in fields else f for f in INDEX_SCHEMA])
    table = pa.table([fields.get(f.name, pa.nulls(rows, f.type)) for f in schema], schema=schema)
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def _written(table: pa.Table, **options) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, **options)
    return sink.getvalue().to_pybytes()


def _repeated(rows: int) -> pa.Table:
    """``rows`` entries of the same article and file, nothing else."""
    same = {"article_id": pa.array(["a"] * rows), "file": pa.array(["f"] * rows)}
    return pa.table([same.get(f.name, pa.nulls(rows, f.type)) for f in INDEX_SCHEMA], schema=INDEX_SCHEMA)


def _version_as_text() -> pa.Table:
    return _repeated(4).set_column(INDEX_SCHEMA.get_field_index("version"), "version", pa.array(["1"] * 4))


def _zeros(size: int) -> pa.Table:
    """One entry whose URL key is ``size`` zeros."""
    return pa.Table.from_pylist([{"url_key": "0" * size, "article_id": "a", "file": "f"}], INDEX_SCHEMA)


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (lambda: _dictionary_bomb(256, 64 << 10), "expand past"),  # 16 MB from one 64 KB URL
        (lambda: _dictionary_bomb(256, 4 << 20), "bytes of columns claimed"),  # its dictionary page
        (lambda: _written(_repeated(1 << 20), compression="zstd"), "entries claimed"),  # run-length
        (lambda: _written(_zeros(64 << 20), compression="zstd", use_dictionary=False), "columns claimed"),
        (lambda: _written(pa.table({"url_key": ["k"] * 64})), "not the index's columns"),  # no columns
        (lambda: _written(_version_as_text()), "not the index's columns"),
        (lambda: b"PAR1" + bytes(64) + b"PAR1", "not a readable index file"),
    ],
)
def test_an_index_file_is_refused_before_it_is_decoded_past_what_its_size_allows(store, data, why):
    store.root.joinpath("_index").mkdir(parents=True)
    store.root.joinpath(delta_key("c1")).write_bytes(data())
    with pytest.raises(Damaged, match=why):
        read_index_file(store, delta_key("c1"))


def test_an_object_over_its_cap_is_refused_before_it_is_read_whole(store):
    store.root.mkdir()
    store.root.joinpath("big").write_bytes(bytes(3 << 20))
    assert read_capped(store, "big", 3 << 20) == bytes(3 << 20)
    with pytest.raises(Damaged, match="over"):
        read_capped(store, "big", (3 << 20) - 1)


@pytest.mark.parametrize("ids", [5, "5", None, {"a": 1}, [5], ["a", None]])
def test_a_manifests_article_ids_of_another_type_are_damage_not_a_crash(store, spool, ids):
    crawl(store, spool, "c1", part("https://x.cn/1.html"))
    store.delete(delta_key("c1"))  # as a crawl published before the index existed
    manifest = json.loads(store.read("_manifests/c1.json"))
    manifest["files"][0]["article_ids"] = ids
    (store.root / "_manifests/c1.json").write_text(json.dumps(manifest))
    with pytest.raises(Damaged):
        manifest_files(store, "_manifests/c1.json")
    index = index_of(store)
    assert [line.split(":")[0] for line in index.damaged] == ["_manifests/c1.json"]
    assert index.known_url("https://x.cn/1.html") is not None  # its part is read instead


STRANGERS = [
    "_index/delta-c1.parquet.bak",
    "_index/other.parquet",
    "_index/base-a b.parquet",
    "_manifests/c9.json.bak",
    "_manifests/a b.json",
    "_manifests/x/c9.json",
    "outlet=X/published=2026-11/part-c9-00001.parquet",
    "outlet=xx/published=2026-13/part-c9-00001.parquet",
    "outlet=xx/published=2026-11/c9.parquet",
    "stray.parquet",
]


def test_keys_that_are_no_index_file_manifest_or_part_are_named_once_and_never_read(store, spool):
    """Each holds a part of a URL the archive does not have: read, it would become known."""
    crawl(store, spool, "c1", part("https://x.cn/1.html"))
    crawl(store, spool, "c2", part("https://x.cn/2.html"))
    store.delete(delta_key("c2"))
    stranger = spool.root / "stranger.parquet"
    pq.write_table(part("https://x.cn/planted.html"), stranger)
    for key in STRANGERS:
        store.publish(stranger, key)
    index = index_of(store)
    index.refresh(store)
    assert sorted(line.split(" is no ")[0].strip("'") for line in index.damaged) == sorted(STRANGERS)
    assert index.known_url("https://x.cn/planted.html") is None
    assert article_id("https://x.cn/planted.html") not in index
    assert index.known_url("https://x.cn/1.html") and article_id("https://x.cn/2.html") in index


def test_a_part_no_manifest_covers_past_its_cap_is_damage_never_read_whole(store, spool, monkeypatch):
    crawl(store, spool, "c1", part("https://x.cn/1.html"))
    crawl(store, spool, "c2", part(*(f"https://x.cn/{n}.html" for n in range(2, 200))))
    for key in (delta_key("c2"), "_manifests/c2.json"):
        store.delete(key)  # published by a crawl that died before its manifest
    (big,) = (key for key in store.object_keys() if "part-c2" in key)
    monkeypatch.setattr("pipelines.archive.index.PART_MAX_BYTES", store.root.joinpath(big).stat().st_size - 1)
    index = index_of(store)
    assert index.damaged == [
        f"{big}: over {store.root.joinpath(big).stat().st_size - 1} bytes, not read "
        "(more than such a file can hold); its rows are not known to this run"
    ]
    assert article_id("https://x.cn/2.html") not in index and index.known_url("https://x.cn/1.html")


def as_former_names(store) -> list[str]:
    """The store's index files renamed as an older newsarchive named them (``.parquet``)."""
    renamed = []
    for key in list(store.object_keys("_index/")):
        former = key.removesuffix(INDEX_SUFFIX) + FORMER_INDEX_SUFFIX
        store.root.joinpath(key).rename(store.root / former)
        renamed.append(former)
    return sorted(renamed)


def test_index_files_of_the_former_name_are_read_then_replaced_by_the_next_compaction(store, spool):
    for n in (1, 2):
        crawl(store, spool, f"c{n}", part(f"https://x.cn/{n}.html"))
    assert compact_index(store, spool.root, "c2", keep_deltas=2) == base_key("c2")
    crawl(store, spool, "c3", part("https://x.cn/3.html"))
    former = as_former_names(store)
    assert former == ["_index/base-c2.parquet", "_index/delta-c3.parquet"]
    store.reads = 0
    index = index_of(store)
    assert store.reads == 2 and not index.damaged  # the base and the delta, not the parts
    assert all(index.known_url(f"https://x.cn/{n}.html") for n in (1, 2, 3))
    # one delta outside the base is far below keep_deltas: the former names alone make it compact
    assert compact_index(store, spool.root, "c4", keep_deltas=16) == base_key("c4")
    assert list(store.object_keys("_index/")) == [base_key("c4")]
    assert set(former) <= set(read_index_file(store, base_key("c4")).merged)  # named as replaced
    assert compact_index(store, spool.root, "c5", keep_deltas=16) is None  # nothing left to rename
    urls = [f"https://x.cn/{n}.html" for n in (1, 2, 3)]
    assert holdings(index_of(store), urls) == holdings(index, urls)


def test_the_newest_base_is_the_newest_crawls_whatever_its_name(store, spool):
    crawl(store, spool, "r", part("https://x.cn/1.html"))
    assert compact_index(store, spool.root, "r", keep_deltas=1) == base_key("r")
    (older,) = as_former_names(store)  # _index/base-r.parquet: by key, after base-r-2.parquet-index
    kept = store.read(older)
    crawl(store, spool, "r-2", part("https://x.cn/2.html"))
    assert compact_index(store, spool.root, "r-2", keep_deltas=1) == base_key("r-2")
    store.root.joinpath(older).write_bytes(kept)  # as a delete that failed leaves it
    store.reads = 0
    index = index_of(store)
    assert store.reads == 1  # base-r-2 alone: it replaces base-r
    assert index.known_url("https://x.cn/1.html") and index.known_url("https://x.cn/2.html")


# -- visits: fetches that archived no row ------------------------------------------------------


def test_a_urls_visits_merge_into_the_latest_apart_from_its_archived_entry():
    url, day = "https://x.cn/1.html", [datetime(2026, 12, d, tzinfo=UTC) for d in (1, 2, 3)]
    archived = {"url_key": url_key(url), "url": url, "article_id": "a", "file": "f", "version": 1}
    archived |= {"first_fetched": day[0], "last_fetched": day[0]}
    visits = [
        visit_entries(url, None, "failed", day[2], "c")[0],
        visit_entries(url, None, "noarchive", day[1], "c")[0],
    ]
    merged = merge_entries([archived, *visits])
    assert len(merged) == 2 and merged[0] == archived
    latest = merged[1]
    assert (latest["outcome"], latest["first_fetched"], latest["last_fetched"]) == ("failed", day[1], day[2])


def test_a_visit_counts_until_the_url_is_archived_after_it():
    url, day = "https://x.cn/1.html", [datetime(2026, 12, d, tzinfo=UTC) for d in (1, 2, 3)]
    index = ArchiveIndex()
    for outcome, when in (("noarchive", day[1]), ("failed", day[0])):  # the latest counts, not the last
        for entry in visit_entries(url, "https://x.cn/r", outcome, when, "c"):
            index.add(entry)
    assert (index.visit(url).outcome, index.visit("https://x.cn/r").last_fetched) == ("noarchive", day[1])
    assert index.visit("https://x.cn/2.html") is None and index.known_url(url) is None
    index.add({"url_key": url_key(url), "article_id": "a", "file": "f", "last_fetched": day[2]})
    assert index.visit(url) is None and index.known_url(url)


# -- tiers: what a run lists and reads, merges, open markers, migration --------------------------


class ListingStore(CountingStore):
    """A local store that also notes each listing (prefix, start_after) and each delete."""

    def __init__(self, root):
        super().__init__(root)
        self.listings: list[tuple[str, str | None]] = []
        self.deleted: list[str] = []

    def object_keys(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        self.listings.append((prefix, start_after))
        return super().object_keys(prefix, start_after)

    def delete(self, key: str) -> None:
        self.deleted.append(key)
        super().delete(key)


class KeepsMarkers(ListingStore):
    """A store that refuses to delete open markers (as one without delete permission would)."""

    def delete(self, key: str) -> None:
        if is_key(key, "marker"):
            raise StoreError(f"{self.uri}: delete {key} failed: AccessDenied (HTTP 403)")
        super().delete(key)


def run(store, spool: Spool, crawl_id: str, *urls: str) -> Publisher:
    """One crawl through the crawl's own Publisher: open, a part, close (its compaction too)."""
    archive = Publisher(store, spool)
    archive.open(crawl_id, ["xx"])
    archive.write_part("outlet=xx/published=2026-11", part(*urls))
    archive.close()
    return archive


def whole_listings(store: ListingStore) -> int:
    return sum(prefix == "" for prefix, _ in store.listings)


@pytest.fixture
def listing(tmp_path):
    return ListingStore(tmp_path / "archive")


@pytest.fixture
def small_tiers(monkeypatch):
    """Tiers of a few entries, so that a test of a few dozen runs climbs several of them."""
    monkeypatch.setattr("pipelines.archive.index.COMPACT_AFTER", 2)
    monkeypatch.setattr("pipelines.archive.index.TIER_ENTRIES", 2)
    monkeypatch.setattr("pipelines.archive.index.TIER_FANOUT", 2)


def test_a_runs_listings_do_not_grow_with_the_archive(listing, spool, small_tiers):
    for n in range(1, 5):
        run(listing, spool, f"c{n:03d}", f"https://x.cn/{n}.html")
    listing.listings = []
    run(listing, spool, "c005", "https://x.cn/5.html")
    young = [prefix for prefix, _ in listing.listings]
    for n in range(6, 41):
        run(listing, spool, f"c{n:03d}", f"https://x.cn/{n}.html")
    listing.listings = []
    run(listing, spool, "c041", "https://x.cn/41.html")
    assert [prefix for prefix, _ in listing.listings] == young and whole_listings(listing) == 0
    index_files = list(listing.object_keys("_index/"))
    assert len(index_files) <= 2 + 2 * 6  # the deltas in no base, and at most K-1 bases per tier
    listing.listings = []
    index = index_of(listing)
    # the index, then the manifests after the newest one its bases account for
    assert listing.listings == [("_index/", None), ("_manifests/", index.through)]
    assert index.through in ("_manifests/c040.json", "_manifests/c041.json")  # a delta behind at most
    assert all(index.known_url(f"https://x.cn/{n}.html") for n in range(1, 42))


def test_a_run_on_s3_lists_only_the_index_and_the_new_manifests(object_store, monkeypatch, tmp_path):
    bucket, spool = three_crawls_in_a_bucket(object_store, monkeypatch, tmp_path)
    assert compact_index(bucket, spool.root, "c3", keep_deltas=1) == base_key("c3")
    lists = []
    bucket.client.meta.events.register(
        "before-parameter-build.s3.ListObjectsV2",
        lambda params, **_: lists.append((params["Prefix"], params.get("StartAfter"))),
    )
    run(bucket, spool, "c4", "https://x.cn/4.html")
    assert lists and "archive/" not in {prefix for prefix, _ in lists}  # never the whole archive
    lists.clear()
    index = index_of(bucket)
    # one request each: the index, and the manifests after the newest one its base accounts for
    assert lists == [("archive/_index/", None), ("archive/_manifests/", "archive/_manifests/c3.json")]
    assert all(index.known_url(f"https://x.cn/{n}.html") for n in range(1, 5))


def test_tiers_rewrite_an_entry_log_n_times_and_delete_only_what_a_merge_replaced(
    listing, spool, small_tiers, monkeypatch
):
    written, deleted, plans = [], [], []
    real_write, real_plan = write_index_file, merge_plan

    def write(target, entries, merged=None, through=None):
        if merged is not None:
            written.append(len(entries))
        real_write(target, entries, merged, through)

    def plan(index, keep_deltas=None):
        files = real_plan(index, keep_deltas)
        if files is not None:
            plans.append((set(files), set(index.index_listing)))
        return files

    monkeypatch.setattr("pipelines.archive.index.write_index_file", write)
    monkeypatch.setattr("pipelines.archive.index.merge_plan", plan)
    runs = 64
    for n in range(1, runs + 1):
        listing.deleted = []
        run(listing, spool, f"c{n:03d}", f"https://x.cn/{n}.html")
        deleted.append(set(listing.deleted) - {open_marker_key(f"c{n:03d}")})  # a crawl's own marker
    merges = [d for d in deleted if d]
    assert len(merges) == len(plans) and all(d == files for d, (files, _) in zip(merges, plans, strict=True))
    assert all(files <= listed for files, listed in plans)  # what was listed, nothing else
    # every 2 runs a merge: rewriting all entries each time writes ~runs**2 / 4 = 1024 entries;
    # by tiers each entry is written once per tier it climbs
    assert sum(written) <= runs * (math.log2(runs) + 1)
    bases = [key for key in listing.object_keys("_index/") if is_key(key, "base")]
    assert 1 <= len(bases) <= math.log2(runs) + 1
    for base in bases:  # a base names what it merged (deltas, a base per tier), never all there was
        assert len(read_index_file(listing, base).merged) <= 2 + math.log2(runs)
    index = index_of(listing)
    assert all(index.known_url(f"https://x.cn/{n}.html") for n in range(1, runs + 1))


def test_readers_read_every_live_base_and_no_replaced_one(listing, spool, small_tiers):
    for n in range(1, 8):
        run(listing, spool, f"c{n:03d}", f"https://x.cn/{n}.html")
    live = sorted(listing.object_keys("_index/"))
    kept = {key: listing.read(key) for key in live}
    run(listing, spool, "c008", "https://x.cn/8.html")  # merges some of them
    replaced = [key for key in live if key not in set(listing.object_keys("_index/"))]
    assert replaced
    for key in replaced:  # as deletes that failed leave them
        listing.root.joinpath(key).write_bytes(kept[key])
    listing.reads = 0
    index = index_of(listing)
    assert listing.reads == len(set(listing.object_keys("_index/")) - set(replaced))
    assert all(index.known_url(f"https://x.cn/{n}.html") for n in range(1, 9))


def test_a_crawl_that_died_has_its_parts_known_to_the_next_run_on_another_spool(
    listing, tmp_path, caplog, small_tiers
):
    run(listing, Spool(tmp_path / "a"), "c0", "https://x.cn/0.html")
    run(listing, Spool(tmp_path / "a"), "c1", "https://x.cn/1.html")  # a base: no listing of it all
    died = Publisher(listing, Spool(tmp_path / "dead"))
    died.open("c2", ["xx"])
    died.write_part("outlet=xx/published=2026-11", part("https://x.cn/2.html"))
    died.crawl.release()  # the process is gone: its spool, on another machine, is never flushed
    assert open_marker_key("c2") in set(listing.object_keys("_index/"))
    listing.listings = []
    with caplog.at_level(logging.INFO, logger="pipelines.archive.index"):
        index = index_of(listing)
    assert index.known_url("https://x.cn/2.html") and index.known_url("https://x.cn/1.html")
    assert whole_listings(listing) == 1 and open_marker_key("c2") in caplog.text
    flush = publish_spool(listing, Spool(tmp_path / "dead"))  # its spool comes back after all
    assert flush.manifests == ["_manifests/c2.json"] and open_marker_key("c2") not in listing.object_keys()
    listing.listings = []
    run(listing, Spool(tmp_path / "a"), "c3", "https://x.cn/3.html")
    assert whole_listings(listing) == 0


def test_markers_a_store_keeps_cost_no_listing_and_are_named_by_the_next_base(tmp_path, small_tiers):
    store, spool = KeepsMarkers(tmp_path / "archive"), Spool(tmp_path / "spool")
    for n in range(1, 10):
        run(store, spool, f"c{n:03d}", f"https://x.cn/{n}.html")
    markers = [key for key in store.object_keys("_index/") if is_key(key, "marker")]
    assert len(markers) == 9  # none deleted
    store.listings = []
    index = index_of(store)
    assert whole_listings(store) == 0 and not index.damaged
    named = {key for base in index.bases for key in read_index_file(store, base).merged}
    assert set(markers) - named <= {open_marker_key(f"c{n:03d}") for n in (8, 9)}  # their deltas say sealed


def test_an_archive_of_todays_format_is_migrated_by_its_first_sealing_run(listing, spool, tmp_path):
    """Today's format: a base of the former name and columns with no ``through`` (its merged list
    naming every delta there was), deltas of the former columns, a crawl older than the index
    (a manifest, no delta), and the parts of a crawl that died before its manifest (no marker)."""
    for n in range(1, 5):
        crawl(listing, spool, f"c{n}", part(f"https://x.cn/{n}.html"))
    old_base = base_key("c2").removesuffix(INDEX_SUFFIX) + FORMER_INDEX_SUFFIX
    merged = [delta_key("c1"), delta_key("c2")]
    entries = [e for key in merged for e in read_index_file(listing, key).entries.to_pylist()]
    as_former_file(listing, old_base, entries, merged)
    for key in merged:
        listing.delete(key)
    c3 = read_index_file(listing, delta_key("c3")).entries.to_pylist()
    as_former_file(listing, delta_key("c3", FORMER_INDEX_SUFFIX), c3)
    listing.delete(delta_key("c3"))
    listing.delete(delta_key("c4"))  # c4: a crawl older than the index
    died = spool.open_crawl("c5", ["xx"])  # c5: died after its part, before anything else
    key = "outlet=xx/published=2026-11/part-c5-00001.parquet"
    died.write_part(key, part("https://x.cn/5.html"))
    listing.publish(died.folder / key, key)
    died.release()
    shutil.rmtree(died.folder)
    listing.listings = []
    archive = run(listing, spool, "c6", "https://x.cn/6.html")  # the first run after upgrading
    assert ("", None) in listing.listings  # it listed the whole archive, once, at open
    base = base_key("c6")
    assert sorted(listing.object_keys("_index/")) == [base]  # the former names are gone
    assert read_index_file(listing, base).through == "_manifests/c6.json"
    assert archive.index.damaged == []
    for n in range(7, 10):
        listing.listings = []
        run(listing, spool, f"c{n}", f"https://x.cn/{n}.html")
        assert whole_listings(listing) == 0
    listing.listings = []
    index = index_of(listing)
    assert whole_listings(listing) == 0
    assert all(index.known_url(f"https://x.cn/{n}.html") for n in (1, 2, 3, 5, 6, 7, 8, 9))
    assert article_id("https://x.cn/4.html") in index  # a manifest lists ids, not URLs


def as_former_file(store, key: str, entries: list[dict], merged: list[str] | None = None) -> None:
    """An index file as today's newsarchive wrote it: the 10 columns, a base's merged list only."""
    table = pa.Table.from_pylist(entries, schema=INDEX_SCHEMA).drop_columns(["outcome"])
    table = table.cast(FORMER_INDEX_SCHEMA)
    if merged is not None:
        table = table.replace_schema_metadata({b"newsarchive.index.merged": json.dumps(merged)})
    store.root.joinpath(key).parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, store.root / key)


def test_a_damaged_former_file_is_read_around_once_and_named_by_the_next_base(listing, spool, small_tiers):
    run(listing, spool, "c001", "https://x.cn/1.html")
    run(listing, spool, "c002", "https://x.cn/2.html")
    (base,) = (k for k in listing.object_keys("_index/") if is_key(k, "base"))
    former = delta_key("c000", FORMER_INDEX_SUFFIX)
    listing.root.joinpath(former).write_bytes(b"PAR1" + bytes(64) + b"PAR1")
    listing.deleted = []
    run(listing, spool, "c003", "https://x.cn/3.html")  # read around: a base names it, once
    assert former not in listing.deleted and former in set(listing.object_keys("_index/"))
    (named,) = (k for k in listing.object_keys("_index/") if is_key(k, "base") and k != base)
    assert former in read_index_file(listing, named).merged
    listing.deleted = []
    run(listing, spool, "c004", "https://x.cn/4.html")  # one delta, nothing damaged: no merge
    assert [key for key in listing.deleted if not is_key(key, "marker")] == []
    index = index_of(listing)
    assert index.damaged == []
    assert all(index.known_url(f"https://x.cn/{n}.html") for n in (1, 2, 3, 4))


@pytest.mark.parametrize("through", [b"../victim.json", b"_index/delta-c1.parquet-index", b"\xff"])
def test_a_base_whose_through_is_no_manifest_is_read_around(listing, spool, through):
    crawl(listing, spool, "c1", part("https://x.cn/1.html"))
    crawl(listing, spool, "c2", part("https://x.cn/2.html"))
    table = pa.Table.from_pylist([], schema=INDEX_SCHEMA).replace_schema_metadata(
        {b"newsarchive.index.merged": json.dumps([delta_key("c1")]), b"newsarchive.index.through": through}
    )
    pq.write_table(table, listing.root / base_key("c3"))
    listing.listings = []
    index = index_of(listing)
    assert [line.split(":")[0] for line in index.damaged] == [base_key("c3")]
    assert "through" in index.damaged[0] and whole_listings(listing) == 1
    assert all(index.known_url(f"https://x.cn/{n}.html") for n in (1, 2))


def test_keys_under_the_index_that_are_no_marker_are_named_never_read(listing, spool):
    crawl(listing, spool, "c1", part("https://x.cn/1.html"))
    for stranger in ("_index/open-a b.json", "_index/open-c1.json.bak", "_index/open-.json"):
        listing.publish(FIXTURES / "archive" / "not-a-manifest.json", stranger)
    listing.reads = 0
    index = index_of(listing)
    assert len(index.damaged) == 3 and all(" is no " in line for line in index.damaged)
    assert index.known_url("https://x.cn/1.html")


def test_a_visit_of_a_url_that_has_no_key_remembers_the_url_linked():
    """A redirect to a port out of range: only the URL as linked can be looked up, and is kept."""
    linked = "https://x.cn/1.html"
    entries = visit_entries("https://x.cn:99999999/a", linked, "failed", FETCHED, "c")
    assert [(e["url"], e["url_key"]) for e in entries] == [(linked, url_key(linked))]


def test_a_merge_keeps_the_article_first_archived_with_a_text(store, spool):
    """Merged a sixteenth of the keys at a time, the entries keep their order: the older article
    stays the one first archived with a text that a later one repeats."""
    older = next(f"https://x.cn/{n}.html" for n in range(100) if url_key(f"https://x.cn/{n}.html") > "8")
    later = next(f"https://x.cn/{n}.html" for n in range(100) if url_key(f"https://x.cn/{n}.html") < "8")
    same = part(older).set_column(3, "text_hash", pa.array([text_hash("the same text")]))
    crawl(store, spool, "c1", same)
    crawl(
        store,
        spool,
        "c2",
        same.set_column(0, "article_id", pa.array([article_id(later)])).set_column(
            1, "url", pa.array([later])
        ),
    )
    assert compact_index(store, spool.root, "c2", keep_deltas=2) == base_key("c2")
    index = index_of(store)
    assert index.first_with_text(text_hash("the same text")) == article_id(older)
    assert index.known_url(later) and index.known_url(older)


def test_a_dead_crawls_marker_costs_one_whole_listing_then_the_next_base_holds_its_parts(
    listing, tmp_path, small_tiers
):
    """Its spool never comes back: the parts it published are read once, kept by the next base,
    and its marker goes with the merge; no later run lists the whole archive for it."""
    run(listing, Spool(tmp_path / "a"), "c0", "https://x.cn/0.html")
    died = Publisher(listing, Spool(tmp_path / "dead"))
    died.open("c1", ["xx"])
    died.write_part("outlet=xx/published=2026-11", part("https://x.cn/1.html"))
    died.crawl.release()
    listed = []
    for n in range(2, 6):
        listing.listings = []
        run(listing, Spool(tmp_path / "a"), f"c{n}", f"https://x.cn/{n}.html")
        listed.append(whole_listings(listing))
    assert listed[0] >= 1 and listed[1:] == [0, 0, 0]
    assert open_marker_key("c1") not in set(listing.object_keys("_index/"))
    assert index_of(listing).known_url("https://x.cn/1.html")


def test_the_newest_manifest_is_known_after_a_merge_names_it_as_through(listing, spool, small_tiers):
    """The next run's discovery validators are the newest run's, also when only a base names it."""
    for n in range(1, 5):
        run(listing, spool, f"c{n}", f"https://x.cn/{n}.html")
        index = index_of(listing)
        assert index.newest_manifest == f"_manifests/c{n}.json"


@pytest.mark.parametrize("when", [2**62, -(2**62)])
def test_an_index_file_with_a_time_no_date_holds_is_read_around(store, spool, tmp_path, when):
    """Past year 9999, every lookup and merge that made it a datetime would raise."""
    crawl(store, spool, "c1", part("https://x.cn/1.html"))
    planted = [
        entry | {"last_fetched": None}
        for entry in read_index_file(store, delta_key("c1")).entries.to_pylist()
    ]
    table = pa.Table.from_pylist(planted, schema=INDEX_SCHEMA)
    times = pa.array([when] * len(planted), pa.int64()).cast(INDEX_SCHEMA.field("last_fetched").type)
    table = table.set_column(INDEX_SCHEMA.get_field_index("last_fetched"), "last_fetched", times)
    pq.write_table(table, store.root / delta_key("c0"))
    index = index_of(store)
    assert [line.split(":")[0] for line in index.damaged] == [delta_key("c0")]
    assert index.known_url("https://x.cn/1.html").last_fetched is not None


def test_a_base_from_a_crawl_ahead_of_now_hides_nothing(store, spool):
    """Read first, it would say it replaces every index file there is."""
    crawl(store, spool, "c1", part("https://x.cn/1.html"))
    ahead = "29991231T000000Z-ffffff"
    table = pa.Table.from_pylist([], schema=INDEX_SCHEMA).replace_schema_metadata(
        {b"newsarchive.index.merged": json.dumps([delta_key("c1")])}
    )
    pq.write_table(table, store.root / base_key(ahead))
    index = index_of(store)
    assert [line.split(":")[0] for line in index.damaged] == [base_key(ahead)]
    assert index.known_url("https://x.cn/1.html")


def test_bases_stop_climbing_short_of_what_a_reader_takes(listing, spool, small_tiers, monkeypatch):
    """Past the cap, a run would find the one big base damaged, and list and merge everything."""
    monkeypatch.setattr("pipelines.archive.index.TIER_MAX_ENTRIES", 4)
    for n in range(1, 21):
        run(listing, spool, f"c{n:02d}", f"https://x.cn/{n}.html")
    index = index_of(listing)
    assert index.damaged == [] and all(base.entries <= 4 for base in index.bases.values())
    assert all(index.known_url(f"https://x.cn/{n}.html") for n in range(1, 21))


def test_a_base_of_big_row_groups_is_rewritten_once_by_the_next_seal(listing, spool, monkeypatch):
    """Written before the index was read a row group at a time: a reader decodes a group whole."""
    monkeypatch.setattr("pipelines.archive.index._INDEX_BATCH", 2)
    for n in range(1, 4):
        crawl(listing, spool, f"c{n}", part(f"https://x.cn/{n}.html"))
    assert compact_index(listing, spool.root, "c3", keep_deltas=1) == base_key("c3")
    old = pq.read_table(listing.root / base_key("c3"))
    pq.write_table(old, listing.root / base_key("c3"))  # as the former writer did: one row group
    assert pq.ParquetFile(listing.root / base_key("c3")).metadata.num_row_groups == 1
    run(listing, spool, "c4", "https://x.cn/4.html")
    (base,) = (key for key in listing.object_keys("_index/") if is_key(key, "base"))
    assert base == base_key("c4")
    assert pq.ParquetFile(listing.root / base).metadata.num_row_groups > 1
    assert all(index_of(listing).known_url(f"https://x.cn/{n}.html") for n in range(1, 5))
