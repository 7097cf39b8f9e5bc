"""What the archive holds, kept inside the archive: URLs, articles, versions, text hashes.

A run reads it before it fetches anything, so a machine with no state of its own neither
requests the article pages the archive holds nor archives them twice. It lives under
``_index/`` as Parquet, named ``.parquet-index`` so that the data glob ``**/*.parquet`` does not
read it (:data:`pipelines.archive.keys.INDEX_SUFFIX`):

    _index/delta-<crawl id>.parquet-index   the entries one crawl added: a row per URL of each
                                            row it published, and per article it fetched again
                                            unchanged
    _index/base-<crawl id>.parquet-index    all entries up to some crawl, one per URL (or per
                                            article where no URL is known); its metadata names
                                            the deltas in it

Index files an older newsarchive named ``.parquet`` are read all the same; the next run that
seals a crawl merges them into a base of the new name at once, and deletes them.

Its columns are declared in :mod:`pipelines.archive.schema`. A crawl's delta is published after its
parts and before its manifest (which names it), with the same spool -> verify -> manifest
safety. Once :data:`COMPACT_AFTER` deltas are not in the base, the run that seals a crawl
merges them (and any index file of the former name) into a new base and deletes the files it
supersedes, so a run reads one base and a
few deltas: in proportion to the archive's size, not to its age. Manifests of crawls no index
file covers (archives older than the index, crawls killed before their delta) and parts no
entry or manifest covers are read as before, so nothing needs migrating.

The index is derived data, rebuilt rather than trusted (``newsarchive reindex``,
:mod:`pipelines.tools.reindex`): an index file or manifest that is damaged, too big, or names keys
that are not index keys is a problem the run reports (:attr:`ArchiveIndex.damaged`) and reads
around: the crawls it covered are read from their parts instead. Each read is bounded: an
object over its cap is refused before it is read whole, and an index file's Parquet metadata
(rows, uncompressed sizes) and the strings its dictionaries would expand to are checked
against its size before a row is decoded.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.archive.keys import (
    INDEX,
    MANIFESTS,
    BadKey,
    base_key,
    checked,
    former_index_name,
    index_crawl,
    is_key,
    part_of,
)
from pipelines.archive.lock import ensure_held
from pipelines.archive.manifest import MANIFEST_MAX_BYTES, BadManifest, listed_article_ids
from pipelines.archive.rows import parquet_file
from pipelines.archive.schema import INDEX_SCHEMA, SCHEMA
from pipelines.archive.storage import Store, StoreError, read_up_to, write_atomically
from pipelines.article import Article
from pipelines.runtime.jsondata import DamagedJSON, loads_bounded
from pipelines.stages.dedup import url_key

logger = logging.getLogger(__name__)

COMPACT_AFTER = 16  # deltas outside the base that make the sealing run compact
_MERGED = b"newsarchive.index.merged"  # base metadata: JSON list of the index files it replaces
# Caps on what is read of the archive into memory. An index entry takes about 105 bytes of
# Parquet: 512 MiB is about 5 million URLs, whose index in memory would take several GB anyway.
INDEX_MAX_BYTES = 512 << 20
# A part no manifest covers is read whole. Parts are smaller than the row data they hold: 32 MiB by
# default for a crawl's (ARCHIVE_BYTES_PER_FILE), 128 MiB for a compaction's (compact.TARGET_BYTES);
# past four times the biggest, it is no part this code wrote.
PART_MAX_BYTES = 512 << 20
# An index file's bytes expand about 4 times into its columns and strings; past this, the file
# is a decompression bomb, not an index. Each entry takes at least 16 bytes of it (an entry
# holds a sha256 key of 64 hex digits, which no encoding makes smaller than 32 bytes).
_INDEX_EXPANSION = 32
_INDEX_MIN_ENTRY_BYTES = 16
_INDEX_BATCH = 1 << 16  # rows decoded at a time, once the strings they expand to are counted

# the archive's columns an entry is made from (older parts lack some: they read as null)
PART_COLUMNS = ("article_id", "url", "canonical_url", "text_hash", "version", "fetched_at", "redirected_from")


@dataclass(slots=True)
class Held:
    """The latest version the archive holds of one article."""

    file: str
    version: int
    text_hash: str | None
    last_fetched: datetime | None


def part_entries(table: pa.Table, file: str, crawl_id: str) -> list[dict]:
    """Index entries for the rows of one part: one per URL that led to each row."""
    rows = table.num_rows

    def column(name: str) -> list:
        return table.column(name).to_pylist() if name in table.column_names else [None] * rows

    ids, urls, redirected = column("article_id"), column("url"), column("redirected_from")
    canonical, texts, versions, fetched = (
        column(name) for name in ("canonical_url", "text_hash", "version", "fetched_at")
    )
    entries = []
    for i in range(rows):
        entry = {
            "article_id": ids[i],
            "canonical_url": canonical[i],
            "text_hash": texts[i],
            "version": versions[i] or 1,
            "file": file,
            "first_fetched": fetched[i],
            "last_fetched": fetched[i],
            "crawl_id": crawl_id,
        }
        for url in [u for u in (urls[i], redirected[i]) if u] or [None]:
            entries.append({"url_key": url and url_key(url), "url": url, **entry})
    return entries


def unchanged_entries(item: Article, held: Held) -> list[dict]:
    """Index entries noting that ``item`` was fetched again with the text the archive holds."""
    entry = {
        "article_id": item.article_id,
        "canonical_url": item.canonical_url,
        "text_hash": item.text_hash,
        "version": held.version,
        "file": held.file,
        "first_fetched": None,
        "last_fetched": item.fetched_at,
        "crawl_id": item.crawl_id,
    }
    urls = [u for u in (item.url, item.redirected_from) if u]
    return [{"url_key": url_key(url), "url": url, **entry} for url in urls]


def to_json(entries: Iterable[dict]) -> list[dict]:
    """Entries as JSON values (the spool's journal keeps them until the delta is written)."""
    return [
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in entry.items()} for entry in entries
    ]


def from_json(entries: Iterable[dict]) -> list[dict]:
    return [
        {
            k: datetime.fromisoformat(v) if k in ("first_fetched", "last_fetched") and v else v
            for k, v in entry.items()
        }
        for entry in entries
    ]


def write_index_file(target: Path, entries: list[dict], merged: list[str] | None = None) -> None:
    """An index file (a delta, or a base replacing the ``merged`` files), written atomically."""
    table = pa.Table.from_pylist(entries, schema=INDEX_SCHEMA)
    if merged is not None:
        table = table.replace_schema_metadata({_MERGED: json.dumps(merged)})
    write_atomically(target, lambda handle: handle.write(parquet_file(table)))


class ArchiveIndex:
    """The archive's index in memory: article id -> :class:`Held`, URL key -> article id, text
    hash -> the article first archived with it.

    :meth:`refresh` reads only the objects it has not read before, so a run reads each index
    file (and each manifest it still needs) once however often it looks again.
    """

    def __init__(self) -> None:
        self.articles: dict[str, Held] = {}
        self.urls: dict[str, str] = {}
        self.texts: dict[str, str] = {}
        self.complete = False  # the store was read (False: unreadable, the spool is all we know)
        self.damaged: list[str] = []  # objects read around, one line each: what the run reports
        self._index_lost = False  # an index file was damaged: crawls it may cover are read from parts
        self._read: set[str] = set()
        self._merged: set[str] = set()  # index files the newest base read replaces
        self.newest_manifest = ""  # key of the newest run's manifest (crawl ids sort by time)

    def __contains__(self, article_id: str) -> bool:
        return article_id in self.articles

    def latest(self, article_id: str) -> tuple[int, str | None] | None:
        held = self.articles.get(article_id)
        return None if held is None else (held.version, held.text_hash)

    def first_with_text(self, text_hash: str) -> str | None:
        return self.texts.get(text_hash)

    def known_url(self, url: str) -> Held | None:
        """What the archive holds of the article this URL led to, if it led to one."""
        article = self.urls.get(url_key(url))
        return None if article is None else self.articles.get(article)

    def refresh(self, store: Store) -> None:
        """Read what is new in the store; raises :class:`StoreError` if it cannot be listed or read."""
        keys = list(store.object_keys())
        covered_crawls: set[str] = set()
        covered_files: set[str] = set()
        for key, entries in self._index_files(store, keys):
            covered_crawls.add(index_crawl(key))
            for entry in entries:
                covered_files.add(entry["file"])
                self.add(entry)
        for key in keys:
            if not is_key(key, "manifest"):
                continue
            self.newest_manifest = max(self.newest_manifest, key)
            if key in self._read:
                continue
            self._read.add(key)
            if key.removeprefix(f"{MANIFESTS}/").removesuffix(".json") in covered_crawls:
                continue  # an index file has its entries
            try:
                files = manifest_files(store, key)
            except Damaged as exc:  # its parts are read below, as parts no manifest covers
                self.damaged.append(f"{exc}; its parts are read instead")
                continue
            if self._index_lost:  # the crawls' parts give back the URLs a lost index file held
                continue
            for file, ids in files.items():  # an archive older than the index
                covered_files.add(file)
                for article in ids:
                    self.add({"article_id": article, "file": file})
        for key in keys:
            if part_of(key) and key not in self._read:
                self._read.add(key)
                if key not in covered_files:  # published by a crawl not sealed yet
                    try:
                        data = read_capped(store, key, PART_MAX_BYTES)
                    except Damaged as exc:
                        self.damaged.append(f"{exc}; its rows are not known to this run")
                        continue
                    for entry in read_part_entries(data, key):
                        self.add(entry)
        self._note_strangers(keys)
        self._read.update(covered_files)
        self.complete = True

    def add(self, entry: dict) -> None:
        """One entry (an index row, or what is known of a row: at least article id and file)."""
        article = entry["article_id"]
        version = entry.get("version") or 1
        held = self.articles.get(article)
        last = entry.get("last_fetched")
        if held is None or version > held.version:
            self.articles[article] = Held(entry["file"], version, entry.get("text_hash"), last)
        elif version == held.version and last and (held.last_fetched is None or last > held.last_fetched):
            held.last_fetched = last
        if entry.get("url_key"):
            self.urls[entry["url_key"]] = article
        if entry.get("text_hash"):
            self.texts.setdefault(entry["text_hash"], article)

    def _index_files(self, store: Store, keys: list[str]) -> Iterator[tuple[str, list[dict]]]:
        """The newest readable base, then the deltas it does not hold, oldest first; each read
        once. A damaged one is noted in :attr:`damaged` and its crawls are left uncovered."""
        bases = _by_crawl(k for k in keys if is_key(k, "base"))
        for base in reversed([b for b in bases if b not in self._read]):
            self._read.add(base)
            try:
                entries, merged = read_index_file(store, base)
            except Damaged as exc:
                self._lost(exc)
                continue
            self._merged.update(merged, bases)
            yield base, entries
            break
        for key in self._merged:
            yield key, []  # its crawl is covered
        for key in sorted(k for k in keys if is_key(k, "delta")):
            if key not in self._merged and key not in self._read:
                self._read.add(key)
                try:
                    yield key, read_index_file(store, key)[0]
                except Damaged as exc:
                    self._lost(exc)

    def _note_strangers(self, keys: list[str]) -> None:
        """Name, once each, the keys under ``_index/`` and ``_manifests/`` (and the Parquet files
        elsewhere) that are no index file's, manifest's or part's: none of them is read."""
        for key in keys:
            kinds = _FOLDER_KINDS.get(key.split("/", 1)[0]) or (("part",) if key.endswith(".parquet") else ())
            if kinds and key not in self._read:
                try:
                    checked(key, *kinds)
                except BadKey as exc:
                    self._read.add(key)
                    self.damaged.append(str(exc))

    def _lost(self, damage: Damaged) -> None:
        self.damaged.append(f"{damage}; read around (newsarchive reindex rebuilds the index)")
        self._index_lost = True


class Damaged(ValueError):
    """An object of the archive that is not what its key says (unreadable, over its cap, or
    naming keys it may not name): read around and reported, never trusted."""


def read_capped(store: Store, key: str, limit: int) -> bytes:
    """The object ``key``, refused (:class:`Damaged`) once it passes ``limit`` bytes: a megabyte
    is read at a time, so an object too big is never held whole."""
    with store.stream(key) as handle:
        data = read_up_to(handle, limit)
    if len(data) > limit:
        raise Damaged(f"{key}: over {limit} bytes, not read (more than such a file can hold)")
    return data


def read_index_file(store: Store, key: str) -> tuple[list[dict], list[str]]:
    """An index file's entries, and (for a base) the index files it replaces; :class:`Damaged`
    when it is no index file or would expand past what its size allows; :class:`StoreError`
    when the store fails."""
    data = read_capped(store, key, INDEX_MAX_BYTES)
    try:
        return index_entries(data), _merged_keys(data)
    except Damaged as exc:
        raise Damaged(f"{key}: {exc}") from None
    except (pa.ArrowException, OSError, ValueError, TypeError, KeyError) as exc:
        raise Damaged(f"{key}: not a readable index file ({type(exc).__name__}: {exc})") from None


def index_entries(data: bytes) -> list[dict]:
    """The entries of an index file's bytes, decoded in batches once its metadata and the
    strings each batch expands to are found within what its size allows."""
    file = pq.ParquetFile(io.BytesIO(data), read_dictionary=_STRING_COLUMNS)
    metadata, budget = file.metadata, _INDEX_EXPANSION * len(data)
    if metadata.num_rows > len(data) // _INDEX_MIN_ENTRY_BYTES:
        raise Damaged(f"{metadata.num_rows} entries claimed in {len(data)} bytes; not decoded")
    claimed = sum(
        metadata.row_group(g).column(c).total_uncompressed_size
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    )
    if claimed > budget:
        raise Damaged(f"{claimed} bytes of columns claimed in {len(data)} bytes; not decoded")
    if file.schema_arrow.remove_metadata() != _STORED_SCHEMA:
        raise Damaged("not the index's columns")
    entries: list[dict] = []
    for batch in file.iter_batches(_INDEX_BATCH, columns=INDEX_SCHEMA.names):
        budget -= sum(_expanded_bytes(batch.column(name)) for name in _STRING_COLUMNS)
        if budget < 0:
            raise Damaged(f"its strings expand past {_INDEX_EXPANSION} times its {len(data)} bytes")
        decoded = [c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch.columns]
        entries += pa.RecordBatch.from_arrays(decoded, names=batch.schema.names).to_pylist()
    return entries


def _expanded_bytes(column: pa.DictionaryArray) -> int:
    """The bytes of the strings a dictionary-encoded column holds once each row has its own."""
    strings = column.dictionary  # a StringArray: its second buffer holds int32 offsets
    if not len(strings):
        return 0
    offsets = np.frombuffer(strings.buffers()[1], np.int32)[
        strings.offset : strings.offset + len(strings) + 1
    ]
    lengths = np.diff(offsets)
    indices = column.indices.fill_null(0).to_numpy(zero_copy_only=False)
    return int(lengths[indices].sum())


def _merged_keys(data: bytes) -> list[str]:
    """The index files a base replaces, each checked to be one: a base names nothing else."""
    listed = (pq.read_schema(io.BytesIO(data)).metadata or {}).get(_MERGED, b"[]")
    try:
        merged = loads_bounded(listed, len(data), "its list of the index files it replaces")
    except DamagedJSON as exc:
        raise Damaged(str(exc)) from None
    if not isinstance(merged, list):
        raise Damaged("its list of the index files it replaces is no list")
    return [checked(key, "delta", "base") for key in merged]


_STRING_COLUMNS = [field.name for field in INDEX_SCHEMA if pa.types.is_string(field.type)]
# the columns as read with the strings as dictionaries, metadata aside
_STORED_SCHEMA = pa.schema(
    [
        pa.field(
            f.name, pa.dictionary(pa.int32(), f.type) if f.name in _STRING_COLUMNS else f.type, f.nullable
        )
        for f in INDEX_SCHEMA
    ]
)


def compact_index(store: Store, workdir: Path, crawl_id: str, keep_deltas: int = COMPACT_AFTER) -> str | None:
    """Merge the deltas into a new base once more than ``keep_deltas`` are outside the base, or
    at once when an index file has the former name (which the data glob reads); the new base's
    key, or None when there was nothing to do. The merged files are deleted after the base is
    published (a failed delete leaves files every reader of the index ignores)."""
    keys = list(store.object_keys(f"{INDEX}/"))
    bases = _by_crawl(k for k in keys if is_key(k, "base"))
    deltas = [k for k in keys if is_key(k, "delta")]
    try:
        entries, merged = read_index_file(store, bases[-1]) if bases else ([], [])
        deltas = sorted(k for k in deltas if k not in merged)
        # the newest base and the deltas outside it: what a failed delete leaves is in its list
        renamed = any(former_index_name(key) for key in (*bases[-1:], *deltas))
        if len(deltas) < keep_deltas and not renamed:
            return None
        for key in deltas:
            entries.extend(read_index_file(store, key)[0])
    except Damaged as exc:  # merged, its entries would be lost: reindex rebuilds them instead
        logger.warning("index not compacted: %s", exc)
        return None
    base = base_key(crawl_id)
    replaced = sorted(set(merged) | set(deltas) | set(bases))
    spooled = workdir / f".{Path(base).name}"
    write_index_file(spooled, merge_entries(entries), replaced)
    ensure_held(store)
    store.publish(spooled, base)
    spooled.unlink()
    for key in replaced:
        try:
            ensure_held(store)  # lost: the rest stay, and every reader goes by the base's list
            store.delete(key)
        except StoreError as exc:  # no delete permission: readers go by the base's list anyway
            logger.warning("index compacted into %s, but %s stays: %s", base, key, exc)
            break
    return base


def merge_entries(entries: list[dict]) -> list[dict]:
    """One entry per URL key (per article where no URL is known) and version, with its first and
    last fetch. Earlier versions stay: their rows stay in the archive, and the index covers them."""
    merged: dict[tuple[str, int], dict] = {}
    for entry in entries:
        key = (entry.get("url_key") or entry["article_id"], entry.get("version") or 1)
        held = merged.get(key)
        if held is None:
            merged[key] = dict(entry)
            continue
        held["first_fetched"] = min(_fetches(held, entry, "first_fetched"), default=None)
        held["last_fetched"] = max(_fetches(held, entry, "last_fetched"), default=None)
    return list(merged.values())


def _fetches(held: dict, entry: dict, name: str) -> list[datetime]:
    return [t for t in (held.get(name), entry.get(name)) if t is not None]


_FOLDER_KINDS = {INDEX: ("delta", "base"), MANIFESTS: ("manifest",)}  # what a key in each may be


def _by_crawl(index_keys: Iterable[str]) -> list[str]:
    """Index files oldest first, by the crawl each is named by (crawl ids sort by time), whatever
    their suffix."""
    return sorted(index_keys, key=lambda key: (index_crawl(key), key))


def manifest_files(store: Store, key: str) -> dict[str, list[str]]:
    """The parts a manifest lists, with their article ids; :class:`Damaged` when it is no
    manifest the index can read (too big, not JSON, a field of another type: see
    :func:`pipelines.archive.manifest.listed_article_ids`)."""
    data = read_capped(store, key, MANIFEST_MAX_BYTES)
    try:
        return listed_article_ids(key, data)
    except BadManifest as exc:
        raise Damaged(str(exc)) from None


def read_part_entries(parquet: bytes | Path, name: str, crawl_id: str = "") -> list[dict]:
    """Index entries for a part's rows (``crawl_id``: the run that published it, if known);
    none (and a warning) if it is unreadable or a column it holds is of another type than the
    schema's (a planted file's text timestamps would break the index file written from them)."""
    try:
        source = io.BytesIO(parquet) if isinstance(parquet, bytes) else parquet
        file = pq.ParquetFile(source)
        columns = [c for c in PART_COLUMNS if c in file.schema_arrow.names]
        table = file.read(columns=columns)
        if any(table.schema.field(c).type not in (SCHEMA.field(c).type, pa.null()) for c in columns):
            raise ValueError(f"{name}: a column is not of the archive schema's type (nor all null)")
        return part_entries(table, name, crawl_id)
    except (pa.ArrowException, ValueError, KeyError, OSError):
        logger.warning("not a readable archive part, ignored: %s", name)
        return []
