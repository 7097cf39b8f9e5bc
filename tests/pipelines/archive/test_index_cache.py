"""Copies of index files kept in the spool: mapped by the next run, checked before use, pruned."""

from __future__ import annotations

import contextlib
import json
import logging
import mmap
import os
import shutil
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
import pytest

from pipelines.archive.held import COLUMN_DTYPES, HeldIndex
from pipelines.archive.index import ArchiveIndex, visit_entries
from pipelines.archive.index_cache import CACHE_FOLDER, Cached, IndexCache, layout
from pipelines.archive.keys import is_key
from pipelines.archive.publish import Publisher
from pipelines.archive.schema import INDEX_SCHEMA
from pipelines.archive.spool import Spool
from pipelines.archive.storage import LocalStore, StoreError
from pipelines.stages.dedup import text_hash
from tests.pipelines.archive.test_index import FETCHED, part

URLS = [f"https://x.cn/{n}.html" for n in range(1, 13)]
GONE = "https://x.cn/gone.html"


class ReadingStore(LocalStore):
    """A local store that notes the index files it is asked for."""

    def __init__(self, root: Path):
        super().__init__(root)
        self.index_reads: list[str] = []

    @contextlib.contextmanager
    def stream(self, key: str) -> Iterator[BinaryIO]:
        if key.startswith("_index/"):
            self.index_reads.append(key)
        with super().stream(key) as handle:
            yield handle


@pytest.fixture
def keep_every_file(monkeypatch):
    """Tiers of a few entries, every index file kept however small: a dozen runs make several."""
    monkeypatch.setattr("pipelines.archive.index.COMPACT_AFTER", 2)
    monkeypatch.setattr("pipelines.archive.index.TIER_ENTRIES", 2)
    monkeypatch.setattr("pipelines.archive.index.TIER_FANOUT", 2)
    monkeypatch.setattr("pipelines.archive.index.CACHE_MIN_ROWS", 1)


@pytest.fixture
def archive(tmp_path, keep_every_file) -> tuple[ReadingStore, Spool]:
    """An archive of a dozen runs, each crawled through the crawl's own Publisher (which keeps
    copies of what it reads), a visit among them."""
    store, spool = ReadingStore(tmp_path / "archive"), Spool(tmp_path / "spool")
    for n, url in enumerate(URLS, 1):
        publisher = Publisher(store, spool)
        publisher.open(f"c{n:03d}", ["xx"])
        publisher.write_part("outlet=xx/published=2026-11", part(url, version=1 + n % 2))
        if n == 5:
            publisher.note(visit_entries(GONE, None, "noarchive", FETCHED, f"c{n:03d}"))
        publisher.close()
    return store, spool


def answers(index: ArchiveIndex) -> tuple:
    """Everything the index says of the archive's URLs, articles and texts."""
    texts = [text_hash(f"text of {url} v{version}") for url in URLS for version in (1, 2)]
    return (
        sorted(index.held_index),
        [index.known_url(url) for url in [*URLS, "https://x.cn/none.html"]],
        [index.first_with_text(text) for text in texts],
        index.visit(GONE),
    )


def cached_index(store, spool: Spool) -> ArchiveIndex:
    index = ArchiveIndex(IndexCache(spool.root / CACHE_FOLDER))
    index.refresh(store)
    return index


def read_whole(store) -> ArchiveIndex:
    index = ArchiveIndex()
    index.refresh(store)
    return index


def copies(spool: Spool) -> list[Path]:
    return sorted(path for path in (spool.root / CACHE_FOLDER).iterdir() if not path.name.startswith("."))


def test_the_next_run_maps_what_an_earlier_one_kept_and_reads_no_index_file(archive):
    store, spool = archive
    expected = answers(read_whole(store))
    assert expected[1][-1] is None and all(expected[1][:-1]) and expected[3] is not None
    cached_index(store, spool)  # keeps what the last run's seal wrote
    store.index_reads.clear()
    index = cached_index(store, spool)
    assert store.index_reads == []
    assert answers(index) == expected
    live = [key for key in store.object_keys("_index/") if is_key(key, "base", "delta")]
    assert len(copies(spool)) == len(live) >= 2  # one copy per live index file, no more


def test_an_index_file_replaced_under_its_key_is_read_again(archive):
    store, spool = archive
    cached_index(store, spool)
    base = max(key for key in store.object_keys("_index/") if is_key(key, "base"))
    path = store.root / base
    data = path.read_bytes()
    path.unlink()  # the same bytes under a new modification time: another tag
    path.write_bytes(data)
    os.utime(path, ns=(1, 1))
    before = copies(spool)
    store.index_reads.clear()
    index = cached_index(store, spool)
    assert store.index_reads == [base]
    assert answers(index) == answers(read_whole(store))
    assert len(copies(spool)) == len(before) and copies(spool) != before  # the old copy removed


def account(copy: Path) -> dict:
    return json.loads((copy / "segment.json").read_bytes().partition(b"\n")[2])


def accounted(copy: Path, about: dict) -> None:
    """The copy's account rewritten, with the CRC-32 that goes with it."""
    text = json.dumps(about).encode()
    (copy / "segment.json").write_bytes(b"%08x\n%s" % (zlib.crc32(text), text))


def column_of(copy: Path, name: str) -> tuple[np.ndarray, int]:
    """A column's values as written, and where they start in the copy's data file."""
    rows = account(copy)["rows"]
    start, dtype = layout(rows)[name], np.dtype(COLUMN_DTYPES.get(name, np.int64))
    data = (copy / "columns.bin").read_bytes()[start : start + rows[name] * dtype.itemsize]
    return np.frombuffer(data, dtype).copy(), start


def rewritten(copy: Path, name: str, values: np.ndarray) -> None:
    """The column rewritten with ``values`` (as many) and its CRC with it: only the check of
    what the values say can refuse it."""
    _, start = column_of(copy, name)
    with (copy / "columns.bin").open("r+b") as handle:
        handle.seek(start)
        handle.write(values.tobytes())
    about = account(copy)
    about["crc32"][name] = zlib.crc32(values.tobytes())
    accounted(copy, about)


def with_rows(copy: Path, names: tuple[str, ...]) -> None:
    about = account(copy)
    for name in names:
        about["rows"][name] += 1
    accounted(copy, about)


def flip_a_byte(copy: Path) -> None:
    _, start = column_of(copy, "u1")
    with (copy / "columns.bin").open("r+b") as handle:
        handle.seek(start)
        byte = handle.read(1)
        handle.seek(start)
        handle.write(bytes([byte[0] ^ 1]))


def cut_short(copy: Path) -> None:
    with (copy / "columns.bin").open("r+b") as handle:
        handle.truncate(os.path.getsize(copy / "columns.bin") - 4)


def link_elsewhere(copy: Path) -> None:
    (copy / "columns.bin").rename(copy.parent / "elsewhere.bin")
    (copy / "columns.bin").symlink_to(copy.parent / "elsewhere.bin")


def unsorted_keys(copy: Path) -> None:
    values, _ = column_of(copy, "a0")
    rewritten(copy, "a0", values[::-1].copy())


def pointing_outside(copy: Path) -> None:
    values, _ = column_of(copy, "u_article")
    values[0] = len(column_of(copy, "a0")[0])
    rewritten(copy, "u_article", values)


def another_length(copy: Path) -> None:
    with_rows(copy, ("a_last",))


def longer_than_its_file(copy: Path) -> None:
    with_rows(copy, ("a0", "a1", "a2", "a3", "a_version", "a_last", "a_file", "a_text"))


def names_past_their_bytes(copy: Path) -> None:
    values, _ = column_of(copy, "file_offsets")
    values[-1] += 1
    rewritten(copy, "file_offsets", values)


def no_json(copy: Path) -> None:
    (copy / "segment.json").write_bytes(b"\xff{not json")


def wrong_account(copy: Path) -> None:
    about = account(copy)
    about["index_file"]["rows"] = "many"
    accounted(copy, about)


def replaces_a_part(copy: Path) -> None:
    about = account(copy)
    about["index_file"]["merged"] = ["outlet=xx/published=2026-11/part-c001-00001.parquet"]
    accounted(copy, about)


def through_ahead_of_now(copy: Path) -> None:
    about = account(copy)
    about["index_file"]["through"] = "_manifests/29991231T000000Z-000001.json"
    accounted(copy, about)


def edited_without_its_crc(copy: Path) -> None:
    checksum, _, text = (copy / "segment.json").read_bytes().partition(b"\n")
    (copy / "segment.json").write_bytes(checksum + b"\n" + text.replace(b'"rows"', b'"rows" ', 1))


def writable_by_others(copy: Path) -> None:
    (copy / "columns.bin").chmod(0o666)


@pytest.mark.parametrize(
    "damage",
    [
        flip_a_byte,
        cut_short,
        link_elsewhere,
        unsorted_keys,
        pointing_outside,
        another_length,
        longer_than_its_file,
        names_past_their_bytes,
        no_json,
        wrong_account,
        replaces_a_part,
        through_ahead_of_now,
        edited_without_its_crc,
        writable_by_others,
    ],
)
def test_a_damaged_copy_is_not_used_and_is_made_again(archive, damage, caplog):
    store, spool = archive
    expected = answers(read_whole(store))
    cached_index(store, spool)
    biggest = max(copies(spool), key=lambda copy: os.path.getsize(copy / "columns.bin"))
    damage(biggest)
    store.index_reads.clear()
    with caplog.at_level(logging.WARNING):
        index = cached_index(store, spool)
    assert answers(index) == expected and index.damaged == []  # the store's file is sound
    assert len(store.index_reads) == 1 and "is not used" in caplog.text
    store.index_reads.clear()
    assert answers(cached_index(store, spool)) == expected and store.index_reads == []  # kept again


def test_a_copy_that_cannot_be_kept_is_a_warning_and_the_file_is_read(archive, caplog, monkeypatch):
    store, spool = archive
    expected = answers(read_whole(store))
    shutil.rmtree(spool.root / CACHE_FOLDER)
    monkeypatch.setattr("pipelines.archive.index_cache._ABOUT_MAX_BYTES", 100)  # no account fits
    with caplog.at_level(logging.WARNING):
        assert answers(cached_index(store, spool)) == expected
    assert "not kept (its account is too big to keep)" in caplog.text and copies(spool) == []


@pytest.mark.parametrize("planted", ["a file", "a link", "writable by others"])
def test_a_cache_folder_not_this_users_alone_is_never_used(archive, tmp_path, caplog, planted):
    """A folder others may write in (or a link to one) could change a copy under the crawl:
    none is read from it, none written to it, and the index is read from the store."""
    store, spool = archive
    expected = answers(read_whole(store))
    root, outside = spool.root / CACHE_FOLDER, tmp_path / "outside"
    shutil.rmtree(root)
    outside.mkdir()
    if planted == "a file":
        root.write_text("a file where the folder would be")
    elif planted == "a link":
        root.symlink_to(outside, target_is_directory=True)
    else:
        root.mkdir()
        root.chmod(0o777)
    with caplog.at_level(logging.WARNING):
        for _ in range(2):
            store.index_reads.clear()
            assert answers(cached_index(store, spool)) == expected and store.index_reads
    assert "not used (not this user's alone" in caplog.text
    assert list(outside.iterdir()) == [] and (not root.is_dir() or list(root.iterdir()) == [])


def test_copies_of_files_a_base_replaced_go_even_where_the_store_keeps_them(tmp_path, keep_every_file):
    """A store that refuses deletes keeps the files a merge replaced: their copies go all the same."""
    store, spool = KeepsIndexFiles(tmp_path / "archive"), Spool(tmp_path / "spool")
    for n, url in enumerate(URLS, 1):
        publisher = Publisher(store, spool)
        publisher.open(f"c{n:03d}", ["xx"])
        publisher.write_part("outlet=xx/published=2026-11", part(url))
        publisher.close()
    index = cached_index(store, spool)
    assert len(list(store.object_keys("_index/"))) > len(index.bases) + len(index.deltas)
    assert len(copies(spool)) == len(index.bases) + len(index.deltas)


class KeepsIndexFiles(ReadingStore):
    def delete(self, key: str) -> None:
        if key.startswith("_index/"):
            raise StoreError(f"{self.uri}: delete {key} failed: AccessDenied (HTTP 403)")
        super().delete(key)


def test_prune_removes_copies_no_listed_file_has_and_abandoned_writes_only(tmp_path):
    cache = IndexCache(tmp_path / CACHE_FOLDER)
    listed = cache._folder("_index/base-c1.parquet-index", "1-2")
    unlisted = cache._folder("_index/base-c0.parquet-index", "1-2")
    abandoned, writing = (
        tmp_path / CACHE_FOLDER / ".writing-1-0000abcd",
        tmp_path / CACHE_FOLDER / ".writing-2-0000abcd",
    )
    unknown = tmp_path / CACHE_FOLDER / "notes.txt"
    for folder in (listed, unlisted, abandoned, writing):
        folder.mkdir(parents=True)
    unknown.write_text("the operator's")
    os.utime(abandoned, (0, 0))
    cache.prune({"_index/base-c1.parquet-index": "1-2", "_index/delta-c2.parquet-index": "3-4"})
    assert sorted(path.name for path in (tmp_path / CACHE_FOLDER).iterdir()) == sorted(
        [listed.name, writing.name, unknown.name]
    )


def test_a_mapped_segment_finds_every_key_across_its_fences(tmp_path):
    """Thousands of keys, runs of them sharing their first 64 bits across fences (every 512th
    key): the mapped copy answers as the arrays it was made of, for keys held and not."""
    rng = np.random.default_rng(7)

    def key(n: int) -> str:  # runs of 700 keys share their first word
        return f"{n // 700:016x}" + bytes(rng.integers(0, 256, 24, dtype=np.uint8)).hex()

    entries = [
        {"article_id": key(n), "url_key": key(n), "text_hash": key(n), "version": 1, "file": "p"}
        for n in range(3000)
    ]
    entries += [{"url_key": key(n), "outcome": "failed"} for n in range(3000, 3600)]
    built = HeldIndex()
    built.add_table(pa.Table.from_pylist(entries, schema=INDEX_SCHEMA))
    cache = IndexCache(tmp_path / CACHE_FOLDER)
    kept = cache.put("_index/base-c1.parquet-index", "1-2", Cached(built.frozen(), {}))
    assert kept is not None and isinstance(kept.segment.arrays.a0.base.obj, mmap.mmap)  # mapped, not read
    assert len(kept.segment.fences["a0"]) == 6  # 3000 keys: a fence every 512
    mapped = HeldIndex()
    mapped.add_segment(kept.segment)
    absent = [key(n) for n in range(0, 4200, 300)]  # new keys in the runs held, and past them
    for entry in [*entries, *({"article_id": k, "url_key": k, "text_hash": k} for k in absent)]:
        if entry.get("article_id"):
            assert mapped.article(entry["article_id"]) == built.article(entry["article_id"])
            assert mapped.first_with_text(entry["text_hash"]) == built.first_with_text(entry["text_hash"])
        assert mapped.by_url(entry["url_key"]) == built.by_url(entry["url_key"])
        assert mapped.visit(entry["url_key"]) == built.visit(entry["url_key"])
    assert sum(mapped.article(e["article_id"]) is not None for e in entries[:3000]) == 3000


def test_a_second_read_after_another_run_merged_what_the_first_read_holds_up(archive):
    """A run that added nothing reads the index again (at its close) after another run merged
    and deleted files it had read: no copy of theirs is asked for, and the answers hold."""
    store, spool = archive
    index = cached_index(store, spool)
    read_before = set(index.deltas) | set(index.bases)
    for n in range(13, 30):  # until a merge takes a base the first read read
        publisher = Publisher(store, spool)
        publisher.open(f"c{n:03d}", ["xx"])
        publisher.write_part("outlet=xx/published=2026-11", part(f"https://x.cn/{n}.html"))
        publisher.close()
        if read_before - set(store.object_keys("_index/")):
            break
    assert read_before - set(store.object_keys("_index/"))  # merged away by those runs
    index.refresh(store)
    assert index.known_url(f"https://x.cn/{n}.html") and answers(index) == answers(read_whole(store))
