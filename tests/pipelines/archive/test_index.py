"""The archive's index: a delta per crawl, read before the crawl fetches, compacted into a base."""

from __future__ import annotations

import contextlib
import json
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
    read_capped,
    read_index_file,
)
from pipelines.archive.keys import FORMER_INDEX_SUFFIX, INDEX_SUFFIX, base_key, delta_key
from pipelines.archive.publish import publish_spool
from pipelines.archive.schema import INDEX_SCHEMA
from pipelines.archive.spool import Spool
from pipelines.archive.storage import LocalStore, S3Store
from pipelines.stages.dedup import article_id, text_hash
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
    assert index.latest(article_id("https://x.cn/1.html")) == (2, text_hash("text of https://x.cn/1.html v2"))
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
    assert after.articles == before.articles and after.urls == before.urls and after.texts == before.texts
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


def test_compaction_in_a_bucket_deletes_what_it_replaced(object_store, monkeypatch, tmp_path):
    for name, value in object_store.env.items():
        monkeypatch.setenv(name, value)
    bucket = S3Store(f"s3://{object_store.create_bucket()}/archive")
    spool = Spool(tmp_path / "spool")
    for n in range(1, 4):
        crawl(bucket, spool, f"c{n}", part(f"https://x.cn/{n}.html"))
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
    assert compact_index(store, spool.root, "c3", keep_deltas=1) is None  # the base is no index's: not merged
    assert victim.read_text() == "kept"
    assert sorted(store.object_keys()) == sorted([*before, base])
    index = index_of(store)
    assert any(base in line for line in index.damaged)
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
        (lambda: _written(pa.table({"url_key": ["k"] * 64})), "not a readable index file"),  # no columns
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
    assert set(former) <= set(read_index_file(store, base_key("c4"))[1])  # named as replaced
    assert compact_index(store, spool.root, "c5", keep_deltas=16) is None  # nothing left to rename
    assert index_of(store).urls == index.urls


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
