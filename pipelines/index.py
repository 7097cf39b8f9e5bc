"""What the archive holds, kept inside the archive: URLs, articles, versions, text hashes.

A run reads it before it fetches anything, so a machine with no state of its own neither
requests the article pages the archive holds nor archives them twice. It lives under
``_index/`` as Parquet:

    _index/delta-<crawl id>.parquet   the entries one crawl added: a row per URL of each row it
                                      published, and per article it fetched again unchanged
    _index/base-<crawl id>.parquet    all entries up to some crawl, one per URL (or per article
                                      where no URL is known); its metadata names the deltas in it

Its columns are declared in :mod:`pipelines.schema`. A crawl's delta is published after its
parts and before its manifest (which names it), with the same spool -> verify -> manifest
safety. Once :data:`COMPACT_AFTER` deltas are not in the base, the run that seals a crawl
merges them into a new base and deletes the files it supersedes, so a run reads one base and a
few deltas: in proportion to the archive's size, not to its age. Manifests of crawls no index
file covers (archives older than the index, crawls killed before their delta) and parts no
entry or manifest covers are read as before, so nothing needs migrating.
"""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from crawler.items import Article
from pipelines.archive import parquet_file
from pipelines.dedup import url_key
from pipelines.schema import INDEX_SCHEMA
from pipelines.storage import Store, StoreError, write_atomically

logger = logging.getLogger(__name__)

INDEX = "_index"
MANIFESTS = "_manifests"
COMPACT_AFTER = 16  # deltas outside the base that make the sealing run compact
_MERGED = b"newsarchive.index.merged"  # base metadata: JSON list of the index files it replaces

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


def delta_key(crawl_id: str) -> str:
    return f"{INDEX}/delta-{crawl_id}.parquet"


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
            covered_crawls.add(_crawl_of(key))
            for entry in entries:
                covered_files.add(entry["file"])
                self.add(entry)
        for key in keys:
            if not (key.startswith(f"{MANIFESTS}/") and key.endswith(".json")):
                continue
            self.newest_manifest = max(self.newest_manifest, key)
            if key in self._read:
                continue
            self._read.add(key)
            if key.removeprefix(f"{MANIFESTS}/").removesuffix(".json") in covered_crawls:
                continue  # an index file has its entries
            for file, ids in _manifest_files(store, key).items():  # an archive older than the index
                covered_files.add(file)
                for article in ids:
                    self.add({"article_id": article, "file": file})
        for key in keys:
            if key.endswith(".parquet") and not key.startswith(f"{INDEX}/") and key not in self._read:
                self._read.add(key)
                if key not in covered_files:  # published by a crawl not sealed yet
                    for entry in read_part_entries(store.read(key), key):
                        self.add(entry)
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
        """The newest base, then the deltas it does not hold, oldest first; each read once."""
        bases = sorted(k for k in keys if k.startswith(f"{INDEX}/base-") and k.endswith(".parquet"))
        if bases and bases[-1] not in self._read:
            entries, merged = read_index_file(store, bases[-1])
            self._read.add(bases[-1])
            self._merged.update(merged, bases)
            yield bases[-1], entries
        for key in self._merged:
            yield key, []  # its crawl is covered
        for key in sorted(k for k in keys if k.startswith(f"{INDEX}/delta-") and k.endswith(".parquet")):
            if key not in self._merged and key not in self._read:
                self._read.add(key)
                yield key, read_index_file(store, key)[0]


def read_index_file(store: Store, key: str) -> tuple[list[dict], list[str]]:
    """An index file's entries, and (for a base) the files it replaces."""
    table = pq.ParquetFile(io.BytesIO(store.read(key))).read()
    merged = json.loads((table.schema.metadata or {}).get(_MERGED, b"[]"))
    return table.to_pylist(), merged


def compact(store: Store, workdir: Path, crawl_id: str, keep_deltas: int = COMPACT_AFTER) -> str | None:
    """Merge the deltas into a new base once more than ``keep_deltas`` are outside the base;
    the new base's key, or None when there was nothing to do. The merged files are deleted after
    the base is published (a failed delete leaves files every reader ignores)."""
    keys = list(store.object_keys(f"{INDEX}/"))
    bases = sorted(k for k in keys if k.startswith(f"{INDEX}/base-"))
    entries, merged = read_index_file(store, bases[-1]) if bases else ([], [])
    deltas = sorted(k for k in keys if k.startswith(f"{INDEX}/delta-") and k not in merged)
    if len(deltas) < keep_deltas:
        return None
    for key in deltas:
        entries.extend(read_index_file(store, key)[0])
    base = f"{INDEX}/base-{crawl_id}.parquet"
    replaced = sorted(set(merged) | set(deltas) | set(bases))
    spooled = workdir / ".index-base.parquet"
    write_index_file(spooled, _merge(entries), replaced)
    store.publish(spooled, base)
    spooled.unlink()
    for key in replaced:
        try:
            store.delete(key)
        except StoreError as exc:  # no delete permission: readers go by the base's list anyway
            logger.warning("index compacted into %s, but %s stays: %s", base, key, exc)
            break
    return base


def _merge(entries: list[dict]) -> list[dict]:
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


def _crawl_of(index_key: str) -> str:
    return Path(index_key).stem.split("-", 1)[1]


def _manifest_files(store: Store, key: str) -> dict[str, list[str]]:
    try:
        return {entry["key"]: entry["article_ids"] for entry in json.loads(store.read(key))["files"]}
    except (ValueError, KeyError, TypeError):
        logger.warning("not a manifest, ignored: %s", key)
        return {}


def read_part_entries(parquet: bytes | Path, name: str) -> list[dict]:
    """Index entries for a part's rows; none (and a warning) if it is unreadable."""
    try:
        source = io.BytesIO(parquet) if isinstance(parquet, bytes) else parquet
        file = pq.ParquetFile(source)
        columns = [c for c in PART_COLUMNS if c in file.schema_arrow.names]
        return part_entries(file.read(columns=columns), name, "")
    except (pa.ArrowException, ValueError, KeyError, OSError):
        logger.warning("not a readable archive part, ignored: %s", name)
        return []
