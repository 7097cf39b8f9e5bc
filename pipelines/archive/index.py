"""What the archive holds, kept inside the archive: URLs, articles, versions, text hashes.

A run reads it before it fetches anything, so a machine with no state of its own neither
requests the article pages the archive holds nor archives them twice. It lives under
``_index/`` as Parquet, named ``.parquet-index`` so that the data glob ``**/*.parquet`` does not
read it (:data:`pipelines.archive.keys.INDEX_SUFFIX`):

    _index/delta-<crawl id>.parquet-index   the entries one crawl added: a row per URL of each
                                            row it published, per article it fetched again
                                            unchanged, and per page it fetched that archived none
    _index/base-<crawl id>.parquet-index    entries merged from deltas and smaller bases, one per
                                            URL (or per article where no URL is known); its
                                            metadata names the keys it replaces (``merged``) and
                                            the newest manifest it accounts for (``through``)
    _index/open-<crawl id>.json             a crawl's open marker: published before its first
                                            part, deleted once its manifest is

Its columns are declared in :mod:`pipelines.archive.schema`. A crawl's delta is published after its
parts and before its manifest (which names it), with the same spool -> verify -> manifest
safety.

What a run reads does not grow with the archive's age. :meth:`ArchiveIndex.refresh` lists
``_index/`` (a few files: see the merges below) and only the manifests after the ``through`` of
the live bases (``StartAfter``, as Delta's ``_last_checkpoint`` or Iceberg's metadata pointer
spare their readers a listing): every manifest up to it is accounted for by the live index files,
its entries merged in or its crawl's delta named. A later refresh of the same run (at close)
lists the manifests after the newest it saw. A listed manifest whose crawl has an index file is
not read; others (archives older than the index, crawls whose delta is lost) are read as
before. Parts are listed only when some may be in no index file: a crawl that published parts
and died leaves its open marker, and a marker whose crawl has neither an index file nor a
manifest makes the run list the whole archive and read those parts (said in an INFO line), as
do a damaged index file or manifest, and an archive no base gives a ``through`` yet.

Index maintenance does not grow either: merges are tiered, as in an LSM tree (:func:`merge_plan`).
The sealing run merges the deltas into a small base once :data:`COMPACT_AFTER` of them are in no
base; a base of a tier (:data:`TIER_ENTRIES` times a power of :data:`TIER_FANOUT`) that would be
the tier's :data:`TIER_FANOUT`-th is merged with the others into one of the next. An entry is so
rewritten once per tier it climbs, O(log n) times. The merge reads only the files it merges:
which bases are live, and how big, the run learnt by reading them (every live base is read
anyway; a base named in a live base's ``merged`` is not live, and a base only ever replaces
older ones, so reading newest first finds it out without a read). It deletes only keys listed
now that it replaced: the files merged, the open markers of sealed crawls (derived: the store's
own index files say the crawl is sealed, so no later run needs them), and what the bases it
merged named and is still there (a delete a store refused); the new base names those too, so no
list grows with age. Its ``through`` is the newest manifest the run saw: every manifest after
the live bases' ``through`` was covered by a delta or read, and what the run read from
manifests and parts is written into the new base.

An archive written before all this (no ``through``, index files of the former name ``.parquet``,
which the data glob reads, or of the former columns, manifests of crawls older than the index,
parts of crawls killed before their manifest, and no open markers) is read as it always was, the
whole archive listed; its first sealing run writes a base with a ``through``, holding what the
run read from manifests and parts and replacing the former names, so the runs after it list no
more than ``_index/`` and the new manifests.

The index is derived data, rebuilt rather than trusted (``newsarchive reindex``,
:mod:`pipelines.tools.reindex`): an index file or manifest that is damaged, too big, or names keys
that are not index keys is a problem the run reports (:attr:`ArchiveIndex.damaged`) and reads
around: the crawls it covered are read from their parts instead. Each read is bounded: an
object over its cap is refused before it is read whole, and an index file's Parquet metadata
(rows, uncompressed sizes) and the strings its dictionaries would expand to are checked
against its size before a row is decoded.
"""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.archive.held import Held, HeldIndex, PackedNames, Segment, Visit
from pipelines.archive.index_cache import CACHE_MIN_ROWS, Cached, IndexCache
from pipelines.archive.keys import (
    INDEX,
    MANIFESTS,
    BadKey,
    base_key,
    checked,
    former_index_name,
    index_crawl,
    is_key,
    marker_crawl,
    part_of,
)
from pipelines.archive.lock import ensure_held
from pipelines.archive.manifest import MANIFEST_MAX_BYTES, BadManifest, listed_article_ids
from pipelines.archive.rows import parquet_file
from pipelines.archive.schema import FORMER_INDEX_SCHEMA, INDEX_SCHEMA, SCHEMA
from pipelines.archive.storage import Store, StoreError, read_up_to, write_atomically
from pipelines.article import Article
from pipelines.runtime.jsondata import DamagedJSON, is_count, loads_bounded
from pipelines.stages.dedup import url_key

logger = logging.getLogger(__name__)

COMPACT_AFTER = 16  # deltas in no base that make the sealing run merge them into a base
TIER_FANOUT = 4  # bases of one tier that the sealing run merges into one base of the next
TIER_ENTRIES = 4096  # a base of fewer entries is of tier 0; each tier up holds TIER_FANOUT times more
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MERGED = b"newsarchive.index.merged"  # base metadata: JSON list of the keys it replaces
_THROUGH = b"newsarchive.index.through"  # base metadata: the newest manifest it accounts for
# Caps on what is read of the archive. An index entry takes about 105 bytes of Parquet: 2 GiB is
# about 20 million entries, the most the first run after upgrading writes into one base (every
# entry of an archive written before tiers). A crawl copies an index file to a temporary file and
# reads it a row group at a time; a merge, verify or reindex holds it whole.
INDEX_MAX_BYTES = 2 << 30
# Bases stop climbing at this many entries (about 200 MB): a bigger archive keeps one such base
# per 2 million entries, and no merge rewrites more than that of it.
TIER_MAX_ENTRIES = 2_000_000
# A part no manifest covers is read whole. Parts are smaller than the row data they hold: 32 MiB by
# default for a crawl's (ARCHIVE_BYTES_PER_FILE), 128 MiB for a compaction's (compact.TARGET_BYTES);
# past four times the biggest, it is no part this code wrote.
PART_MAX_BYTES = 512 << 20
# An index file's bytes expand about 4 times into its columns and strings; past this, the file
# is a decompression bomb, not an index. Each entry takes at least 16 bytes of it (an entry
# holds a sha256 key of 64 hex digits, which no encoding makes smaller than 32 bytes).
_INDEX_EXPANSION = 32
_INDEX_MIN_ENTRY_BYTES = 16
# Rows decoded at a time, once the strings they expand to are counted; and an index file's row
# groups, which a reader decodes whole (one group of a million entries took 1.3 GB to check).
_INDEX_BATCH = 1 << 16

# the archive's columns an entry is made from (older parts lack some: they read as null)
PART_COLUMNS = ("article_id", "url", "canonical_url", "text_hash", "version", "fetched_at", "redirected_from")


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


# Why a fetch of an article page archived no row (the index's `outcome`): the revisit policy
# (crawler.middlewares.KnownArticles) fetches a failed page next run, the others after some days.
VISIT_OUTCOMES = ("not_article", "noarchive", "refused", "failed")


def visit_entries(
    url: str, redirected_from: str | None, outcome: str, fetched: datetime, crawl_id: str
) -> list[dict]:
    """Index entries remembering that an article page (reached at ``url``, linked as
    ``redirected_from`` if it was redirected) archived no row, and why: no article, no file."""
    if outcome not in VISIT_OUTCOMES:
        raise ValueError(f"{outcome!r} is no outcome of a visit")
    entry = {"outcome": outcome, "crawl_id": crawl_id, "first_fetched": fetched, "last_fetched": fetched}
    keys = {}
    for u in filter(None, (url, redirected_from)):
        try:
            keys[u] = url_key(u)
        except ValueError:  # a URL no canonicalisation takes (a port out of range): no key to look up
            continue
    return [{"url_key": key, "url": u, **entry} for u, key in keys.items()]


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


def write_index_file(
    target: Path, entries: list[dict], merged: list[str] | None = None, through: str | None = None
) -> None:
    """An index file (a delta, or a base replacing the ``merged`` keys and accounting for every
    manifest up to ``through``), written atomically."""
    write_index_table(target, pa.Table.from_pylist(entries, schema=INDEX_SCHEMA), merged, through)


def write_index_table(
    target: Path, table: pa.Table, merged: list[str] | None = None, through: str | None = None
) -> None:
    """:func:`write_index_file` of entries already in a table of :data:`INDEX_SCHEMA`."""
    metadata = {_MERGED: json.dumps(merged)} if merged is not None else {}
    if through is not None:
        metadata[_THROUGH] = checked(through, "manifest")
    if metadata:
        table = table.replace_schema_metadata(metadata)
    write_atomically(target, lambda handle: handle.write(parquet_file(table, _INDEX_BATCH)))


@dataclass(frozen=True, slots=True)
class LiveBase:
    """A base no other base replaces, as the run read it."""

    entries: int
    through: str | None
    rewrite: bool = False  # of row groups bigger than a reader decodes at once: merged at the next seal


class ArchiveIndex:
    """The archive's index in memory: article id -> :class:`Held`, URL key -> article id, text
    hash -> the article first archived with it.

    :meth:`refresh` reads only the objects it has not read before, so a run reads each index
    file (and each manifest it still needs) once however often it looks again.
    """

    def __init__(self, cache: IndexCache | None = None) -> None:
        self.held_index = HeldIndex()  # the entries, as sorted arrays (pipelines/archive/held.py)
        self.cache = cache  # copies of big index files read before (pipelines/archive/index_cache.py)
        self.complete = False  # the store was read (False: unreadable, the spool is all we know)
        self.damaged: list[str] = []  # objects read around, one line each: what the run reports
        self.newest_manifest = ""  # key of the newest run's manifest (crawl ids sort by time)
        # What the run found of the index files, for the sealing run's merge (compact_index):
        self.index_listing: list[str] = []  # the keys under _index/ at the last refresh
        self.bases: dict[str, LiveBase] = {}  # the live bases read, by key
        self.deltas: dict[str, int] = {}  # the live deltas read: their entries, by key
        self.through: str | None = None  # the newest manifest the live bases account for
        self.learned: list[dict] = []  # entries read from manifests and parts: in no index file
        self.retired_markers: set[str] = set()  # open markers of sealed crawls no base names yet
        # what the next base names as replaced, for this run read what they stood for otherwise:
        self.lost_keys: set[str] = set()  # damaged index files, whose crawls were read from parts
        self.unsealed_read: set[str] = set()  # open markers of dead crawls, whose parts were read
        self._lost_files = 0  # index files damaged: the crawls they may cover are read from parts
        self._listed_whole = False  # a refresh listed the whole archive: later ones list what is new
        self._read: set[str] = set()  # keys read (or found covered): never read again
        self._merged: set[str] = set()  # keys the live bases replace
        self._covered_crawls: set[str] = set()  # crawls an index file covers
        self._covered_files: set[str] = set()  # parts an index file or a manifest read names
        self._covered_packed: list[PackedNames] = []  # and those a mapped copy names (decoded if asked)
        self._sealed_crawls: set[str] = set()  # crawls whose manifest was listed
        self._listed_manifests = ""  # the newest manifest key listed: the next listing starts after it
        self._checked: dict[str, CheckedIndexFile] = {}  # what each index file read says of itself

    def __contains__(self, article_id: str) -> bool:
        return article_id in self.held_index

    def held(self, article_id: str) -> Held | None:
        """The latest version the archive holds of an article."""
        return self.held_index.article(article_id)

    def latest(self, article_id: str, text_hash: str) -> tuple[int, bool] | None:
        return self.held_index.latest(article_id, text_hash)

    def first_with_text(self, text_hash: str) -> str | None:
        return self.held_index.first_with_text(text_hash)

    def known_url(self, url: str) -> Held | None:
        """What the archive holds of the article this URL led to, if it led to one."""
        return self.held_index.by_url(url_key(url))

    def refresh(self, store: Store, own_crawl: str = "") -> None:
        """Read what is new in the store; raises :class:`StoreError` if it cannot be listed or read.

        Lists ``_index/`` and the manifests after the newest key already accounted for; the whole
        archive only when parts may be in no index file (see the module's docstring). ``own_crawl``:
        the crawl the caller is publishing, whose parts it knows (its open marker is no news)."""
        tags = store.object_tags(f"{INDEX}/")
        index_keys = list(tags)
        self.index_listing = index_keys
        lost = self._lost_files
        self._read_index_files(store, index_keys, tags)
        after = max(self._listed_manifests, self.through or "")
        # the newest run's manifest (its discovery validators): listed, or the one a base names
        self.newest_manifest = max(self.newest_manifest, self.through or "")
        manifests = list(store.object_keys(f"{MANIFESTS}/", start_after=after or None))
        whole = self._read_manifests(store, [k for k in manifests if is_key(k, "manifest")])
        self._listed_manifests = max([after, *(k for k in manifests if is_key(k, "manifest"))])
        unsealed = [k for k in self._unsealed_markers(index_keys, own_crawl) if k not in self._read]
        if self.through is None and not self._listed_whole:
            whole.append("no index base says up to which run it accounts for the archive")
        if self._lost_files > lost or (self._lost_files and not self._listed_whole):
            whole.append("an index file is damaged")
        if unsealed:
            whole.append(f"{', '.join(unsealed)} left parts no index file may cover")
        if not whole:
            self._note_strangers([*index_keys, *manifests])
            self.complete = True
            return
        logger.info("listing the whole archive: %s", "; ".join(whole))
        self._read.update(unsealed)  # their parts, read now: the next refresh lists for new ones only
        self.unsealed_read.update(unsealed)
        self._listed_whole = True
        keys = list(store.object_keys())
        self._sealed_crawls.update(_manifest_crawl(k) for k in keys if is_key(k, "manifest"))
        self._seal_markers(index_keys, own_crawl)
        for key in keys:
            if part_of(key) and key not in self._read and part_of(key).crawl_id != own_crawl:
                self._read.add(key)
                if not self._covers(key):  # published by a crawl not sealed yet
                    try:
                        data = read_capped(store, key, PART_MAX_BYTES)
                    except Damaged as exc:
                        self.damaged.append(f"{exc}; its rows are not known to this run")
                        continue
                    self._learn(read_part_entries(data, key, part_of(key).crawl_id))
        self._note_strangers(keys)
        self.complete = True

    def _read_manifests(self, store: Store, manifests: list[str]) -> list[str]:
        """Read the manifests of crawls no index file covers (archives older than the index, and
        crawls whose index file is lost); why the whole archive must be listed, if it must."""
        why = []
        for key in manifests:
            self.newest_manifest = max(self.newest_manifest, key)
            self._sealed_crawls.add(_manifest_crawl(key))
            if key in self._read:
                continue
            self._read.add(key)
            if _manifest_crawl(key) in self._covered_crawls:
                continue  # an index file has its entries
            try:
                files = manifest_files(store, key)
            except Damaged as exc:  # its parts are read, as parts no manifest covers
                self.damaged.append(f"{exc}; its parts are read instead")
                why.append(f"{key} is damaged")
                continue
            if self._lost_files:  # the crawls' parts give back the URLs a lost index file held
                continue
            self._covered_files.update(files)
            self._learn([{"article_id": i, "file": file} for file, ids in files.items() for i in ids])
        return why

    def uncovered(self) -> list[dict]:
        """The entries read from manifests and parts whose crawl has no index file even now
        (a crawl sealed since, by this run or a flush, has its delta): the next base keeps them."""
        return [
            entry
            for entry in self.learned
            if (part := part_of(entry.get("file"))) is None or part.crawl_id not in self._covered_crawls
        ]

    def _learn(self, entries: list[dict]) -> None:
        """Entries no index file holds, read from manifests or parts: the next base keeps them."""
        self.learned += entries
        for entry in entries:
            self.add(entry)

    def _unsealed_markers(self, index_keys: list[str], own_crawl: str) -> list[str]:
        """The open markers of crawls that may have published parts no index file covers: no
        index file and no manifest of theirs is known. A marker of a sealed crawl is noted, for
        the next merge to delete (:meth:`_seal_markers`)."""
        markers = self._seal_markers(index_keys, own_crawl)
        return [key for key in markers if key not in self.retired_markers]

    def _seal_markers(self, index_keys: list[str], own_crawl: str) -> list[str]:
        """Note the open markers whose crawl has an index file or a manifest as retired; the
        markers no base names, but the caller's own."""
        markers = [
            key
            for key in index_keys
            if is_key(key, "marker") and key not in self._merged and marker_crawl(key) != own_crawl
        ]
        for key in markers:
            if marker_crawl(key) in self._covered_crawls or marker_crawl(key) in self._sealed_crawls:
                self.retired_markers.add(key)
        return markers

    def _read_index_files(self, store: Store, index_keys: list[str], tags: dict[str, str]) -> None:
        """Read the live index files not read yet: every base no other base replaces, newest
        first (a base replaces only older ones), then the deltas no base holds; added to the
        index bases first, oldest first. A damaged one is noted in :attr:`damaged` and its
        crawls are left uncovered.

        Each is copied to a temporary file and checked whole (:func:`checked_index_file`) before
        anything of it counts, then added with only the columns the index holds, a row group at a
        time, the strings of few values left
        as dictionaries (decoding them imports pyarrow.compute): a run never holds an index file,
        its bytes or its rows as Python strings (at a million entries that was several hundred MB).

        With a :attr:`cache`, the first files a run reads become layers of the index
        (:meth:`HeldIndex.add_segment`) and the big ones are kept: a file kept by an earlier run
        is mapped from its copy, neither downloaded nor checked again."""
        layered = self.cache is not None and self.held_index.takes_segments()
        with tempfile.TemporaryDirectory(prefix="newsarchive-index-") as folder:
            read: list[tuple[str, Path | Cached]] = []
            for base in reversed(_by_crawl(k for k in index_keys if is_key(k, "base"))):
                if base in self._read or base in self._merged:
                    continue
                self._read.add(base)
                try:
                    found = self._found(store, base, tags, Path(folder) / f"{len(read)}-base", layered)
                    checked_file = self._checked[base]
                    _check_claims(base, checked_file)
                except Damaged as exc:
                    self._lost(exc, base)
                    continue
                self._merged.update(checked_file.merged)
                self.bases[base] = LiveBase(
                    checked_file.rows, checked_file.through, checked_file.group_rows > _INDEX_BATCH
                )
                read.insert(0, (base, found))
            self.through = max((b.through for b in self.bases.values() if b.through), default=None)
            for key in sorted(k for k in index_keys if is_key(k, "delta")):
                if key in self._merged or key in self._read:
                    continue
                self._read.add(key)
                try:
                    found = self._found(store, key, tags, Path(folder) / f"{len(read)}-delta", layered)
                    self.deltas[key] = self._checked[key].rows
                except Damaged as exc:
                    self._lost(exc, key)
                    continue
                read.append((key, found))
            layers = HeldIndex()  # the small files since the last big one: one layer
            for key, found in read:
                files: set[str] = set()
                if isinstance(found, Cached):
                    layers = self._layer(layers)
                    self.held_index.add_segment(found.segment)
                    self._covered_packed.append(found.segment.files)
                else:
                    kept = layered and self._checked[key].rows >= CACHE_MIN_ROWS
                    adding = HeldIndex() if kept else layers if layered else self.held_index
                    try:  # checked whole already: what fails now is the file changing under the run
                        for batch in index_batches(found, files, HELD_COLUMNS, decode=False):
                            adding.add_table(batch)
                    except (Damaged, pa.ArrowException, OSError, ValueError) as exc:
                        self._lost(
                            Damaged(f"{key}: not a readable index file ({type(exc).__name__}: {exc})"), key
                        )
                        continue
                    found.unlink()
                    if kept:
                        layers = self._layer(layers)
                        self.held_index.add_segment(self._kept(key, tags[key], adding.frozen()))
                self._covered_crawls.add(index_crawl(key))
                self._covered_files.update(files)
            if layered:
                self._layer(layers)
                # the copies of the files read that are still listed: those of files merged away go
                self.cache.prune({key: tags[key] for key in (*self.bases, *self.deltas) if key in tags})
        self._covered_crawls.update(index_crawl(k) for k in self._merged if is_key(k, "delta", "base"))

    def _found(
        self, store: Store, key: str, tags: dict[str, str], target: Path, layered: bool
    ) -> Path | Cached:
        """The copy a run kept of ``key``, or ``key`` downloaded to ``target`` and checked whole
        (what the file says of itself, in :attr:`_checked`)."""
        if layered and (cached := self.cache.get(key, tags[key])) is not None:
            try:  # what the copy says of its file, checked as the file's own word would be
                self._checked[key] = _checked_file(cached.about)
                if is_key(key, "base"):
                    _check_claims(key, self._checked[key])
                return cached
            except (ValueError, TypeError) as exc:  # Damaged, BadKey
                logger.warning("index cache: the copy of %s is not used (%s); read from the store", key, exc)
                self.cache.discard(key, tags[key])
        path = _fetched(store, key, target)
        self._checked[key] = checked_index_file(path, key)
        return path

    def keep_written(self, store: Store, key: str, path: Path) -> None:
        """Keep a copy of an index file this run wrote (a merge's base, at ``path``) for the next
        run here, which would otherwise read it from the store first."""
        if self.cache is None or not self.cache.usable():
            return
        try:
            self._checked[key] = checked_index_file(path, key)
            if self._checked[key].rows < CACHE_MIN_ROWS:
                return
            tag = store.object_tags(f"{INDEX}/").get(key)  # one listing: the tag the next run will list
            if tag is not None:
                adding = HeldIndex()
                for batch in index_batches(path, set(), HELD_COLUMNS, decode=False):
                    adding.add_table(batch)
                self._kept(key, tag, adding.frozen())
        except (Damaged, StoreError) as exc:
            logger.warning("index cache: %s not kept (%s); the next run reads it", key, exc)

    def _covers(self, part: str) -> bool:
        return part in self._covered_files or any(part in names for names in self._covered_packed)

    def _layer(self, layers: HeldIndex) -> HeldIndex:
        """The small files read since the last big one, as a layer; a new one for the next."""
        if layers.has_entries():
            self.held_index.add_segment(layers.frozen())
        return HeldIndex()

    def _kept(self, key: str, tag: str, segment: Segment) -> Segment:
        """``segment`` kept for the next run, as the copy it maps (or itself, if not kept)."""
        kept = self.cache.put(key, tag, Cached(segment, dataclasses.asdict(self._checked[key])))
        return segment if kept is None else kept.segment

    def visit(self, url: str) -> Visit | None:
        """The latest fetch of ``url`` that archived no row, unless the URL led to an archived
        row fetched later."""
        return self.held_index.visit(url_key(url))

    def add_table(self, table: pa.Table | pa.RecordBatch) -> None:
        """Entries in bulk (an index file's, in its order), with no Python object per entry."""
        self.held_index.add_table(table)

    def add(self, entry: dict) -> None:
        """One entry (an index row, or what is known of a row: at least article id and file)."""
        self.held_index.add(entry)

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

    def _lost(self, damage: Damaged, key: str) -> None:
        self.damaged.append(f"{damage}; read around (newsarchive reindex rebuilds the index)")
        self._lost_files += 1
        self.lost_keys.add(key)


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


@dataclass(frozen=True)
class IndexFile:
    """What an index file holds: its entries, the keys it replaces (a base's; a delta's is
    empty), the newest manifest it accounts for (a base's ``through``; None if it says none),
    and the part keys its entries name."""

    entries: pa.Table
    merged: list[str]
    through: str | None
    files: frozenset[str]


def read_index_file(store: Store, key: str) -> IndexFile:
    """An index file as :class:`IndexFile`, its rows decoded (what a merge rewrites);
    :class:`Damaged` when it is no index file, would expand past what its size allows, or its
    metadata names what it may not; :class:`StoreError` when the store fails."""
    data = read_capped(store, key, INDEX_MAX_BYTES)
    checked_file = checked_index_file(data, key)
    files: set[str] = set()
    try:
        entries = pa.Table.from_batches(list(index_batches(data, files)), schema=_schema_of(data))
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise Damaged(f"{key}: not a readable index file ({type(exc).__name__}: {exc})") from None
    return IndexFile(entries, checked_file.merged, checked_file.through, frozenset(files))


@dataclass(frozen=True, slots=True)
class CheckedIndexFile:
    """What an index file says of itself, once all of it is found within its bounds."""

    rows: int
    merged: list[str]
    through: str | None
    group_rows: int  # rows of its biggest row group, which a reader decodes whole


def _checked_file(about: dict) -> CheckedIndexFile:
    """What a kept copy says its index file said of itself, checked as that file's metadata is
    (:class:`Damaged`, or TypeError for another set of fields)."""
    checked_file = CheckedIndexFile(**about)
    if not (is_count(checked_file.rows) and is_count(checked_file.group_rows)):
        raise Damaged("counts of an index file that are no counts")
    if checked_file.through is not None and not isinstance(checked_file.through, str):
        raise Damaged("its through is no manifest's key")
    metadata = {_MERGED: json.dumps(checked_file.merged).encode()}
    if checked_file.through is not None:
        metadata[_THROUGH] = checked_file.through.encode()
    return CheckedIndexFile(
        checked_file.rows,
        _merged_keys(metadata, len(metadata[_MERGED])),
        _through(metadata),
        checked_file.group_rows,
    )


def checked_index_file(source: bytes | Path, key: str) -> CheckedIndexFile:
    """Check an index file whole before any of it counts: its columns, its metadata (rows and
    uncompressed sizes against its size, the keys it replaces, its ``through``), and the strings
    every batch would expand to (read with the strings as dictionaries, none decoded);
    :class:`Damaged` naming ``key`` when it fails."""
    try:
        file = _parquet(source)
        metadata = file.schema_arrow.metadata or {}
        merged, through = _merged_keys(metadata, _size(source)), _through(metadata)
        for _ in index_batches(source, set(), (*HELD_COLUMNS, *_STRING_COLUMNS), decode=False):
            pass  # every string counted, and every column a crawl reads decoded once
        groups = [file.metadata.row_group(g).num_rows for g in range(file.metadata.num_row_groups)]
        return CheckedIndexFile(file.metadata.num_rows, merged, through, max(groups, default=0))
    except Damaged as exc:
        raise Damaged(f"{key}: {exc}") from None
    except (pa.ArrowException, OSError, ValueError, TypeError, KeyError) as exc:
        raise Damaged(f"{key}: not a readable index file ({type(exc).__name__}: {exc})") from None


# what ArchiveIndex keeps of an entry (pipelines/archive/held.py): a crawl reads no other column
HELD_COLUMNS = ("url_key", "article_id", "text_hash", "version", "file", "last_fetched", "outcome")


def index_batches(
    source: bytes | Path, files: set[str], columns: Iterable[str] = INDEX_SCHEMA.names, decode: bool = True
) -> Iterator[pa.RecordBatch]:
    """The entries of an index file (a file of the former columns has no ``outcome``) in
    batches of ``columns``, each given once its metadata and the strings it expands to are found
    within what the file's size allows (:class:`Damaged`); the strings decoded, or left as
    dictionaries. The part keys they name go into ``files`` (read from the ``file`` column's
    dictionaries, without a Python string per entry)."""
    file, size = _parquet(source), _size(source)
    if _decoded(file.schema_arrow) not in _INDEX_SCHEMAS:
        raise Damaged("not the index's columns")
    metadata, budget = file.metadata, _INDEX_EXPANSION * size
    if metadata.num_rows > size // _INDEX_MIN_ENTRY_BYTES:
        raise Damaged(f"{metadata.num_rows} entries claimed in {size} bytes; not decoded")
    claimed = sum(
        metadata.row_group(g).column(c).total_uncompressed_size
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    )
    if claimed > budget:
        raise Damaged(f"{claimed} bytes of columns claimed in {size} bytes; not decoded")
    names = [name for name in INDEX_SCHEMA.names if name in file.schema_arrow.names and name in columns]
    schema = pa.schema([field for field in INDEX_SCHEMA if field.name in names])
    # a row group at a time: ParquetFile.iter_batches keeps what it decoded of the dictionaries
    # of every group it read (420 MB for a million sha256 keys), one group holds a group's
    for group in range(metadata.num_row_groups):
        table = file.read_row_group(group, columns=names)
        for batch in table.to_batches(_INDEX_BATCH):
            budget -= sum(_string_bytes(batch.column(name)) for name in _STRING_COLUMNS if name in names)
            if budget < 0:
                raise Damaged(f"its strings expand past {_INDEX_EXPANSION} times its {size} bytes")
            if not all(_times_held(batch.column(name)) for name in _TIME_COLUMNS if name in names):
                raise Damaged("a time past what a date holds (year 1 to 9999)")
            if "file" in names:  # read as a dictionary: its distinct values, no string per row
                files.update(name for name in batch.column("file").dictionary.to_pylist() if name is not None)
            if decode:
                decoded = [
                    c.dictionary_decode() if pa.types.is_dictionary(c.type) else c for c in batch.columns
                ]
                batch = pa.RecordBatch.from_arrays(decoded, schema=schema)
            yield batch
        del table


def _parquet(source: bytes | Path) -> pq.ParquetFile:
    """An index file opened with the strings of few distinct values read as dictionaries, and
    every string column stored with a dictionary too (none of this code's: it writes plain): the
    strings such a column expands to are counted before one is decoded. A plain column decodes
    to no more than its pages' sizes, which the metadata check bounds; read as a dictionary, a
    million sha256 keys took 420 MB to hash."""
    opened = io.BytesIO(source) if isinstance(source, bytes) else source
    metadata = pq.read_metadata(opened)
    if isinstance(opened, io.BytesIO):
        opened.seek(0)
    stored = metadata.schema.to_arrow_schema().names
    with_dictionary = {
        metadata.row_group(g).column(c).path_in_schema
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
        if metadata.row_group(g).column(c).has_dictionary_page
    }
    dictionaries = [c for c in _STRING_COLUMNS if c in stored and (c in _FEW_VALUES or c in with_dictionary)]
    return pq.ParquetFile(opened, read_dictionary=dictionaries)


_FEW_VALUES = ("file", "crawl_id", "outcome")  # string columns of a few distinct values a group
_TIME_COLUMNS = ("first_fetched", "last_fetched")
_MICROS_HELD = (
    (datetime.min.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1),
    (datetime.max.replace(tzinfo=UTC) - _EPOCH) // timedelta(microseconds=1),
)


def _times_held(column: pa.Array) -> bool:
    """Every time of a timestamp column (microseconds) one a datetime holds: a time past year
    9999 would raise in every lookup and merge that turned it into one."""
    validity, values = column.buffers()[:2]
    if values is None or not len(column):
        return True
    micros = np.frombuffer(values, np.int64, count=len(column), offset=column.offset * 8)
    if validity is not None:
        bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
        micros = micros[bits[column.offset : column.offset + len(column)].astype(bool)]
    return not len(micros) or (_MICROS_HELD[0] <= micros.min() and micros.max() <= _MICROS_HELD[1])


def _string_bytes(column: pa.Array) -> int:
    """The bytes of the strings a column holds once each row has its own (a dictionary's counted
    by :func:`_expanded_bytes`, before they are)."""
    if pa.types.is_dictionary(column.type):
        return _expanded_bytes(column)
    offsets = np.frombuffer(column.buffers()[1], np.int32)[column.offset : column.offset + len(column) + 1]
    return int(offsets[-1] - offsets[0]) if len(offsets) else 0


def _size(source: bytes | Path) -> int:
    return len(source) if isinstance(source, bytes) else source.stat().st_size


def _schema_of(source: bytes | Path) -> pa.Schema:
    """The decoded columns an index file has: :data:`INDEX_SCHEMA`'s, less ``outcome`` in a former one."""
    names = _parquet(source).schema_arrow.names
    return pa.schema([field for field in INDEX_SCHEMA if field.name in names])


def live_index_files(store: Store, keys: Iterable[str]) -> Iterator[tuple[str, bytes | Damaged]]:
    """Of the index files ``keys``, those a crawl reads, picked as it picks them
    (:meth:`ArchiveIndex._read_index_files`): the bases no newer live base replaces, newest first,
    each checked whole with its claims, then the deltas no live base holds. Each comes with its
    bytes, or with the :class:`Damaged` it is read around for; :class:`StoreError` if the store
    fails."""
    merged: set[str] = set()
    for base in reversed(_by_crawl(key for key in keys if is_key(key, "base"))):
        if base in merged:
            continue
        try:
            data = read_capped(store, base, INDEX_MAX_BYTES)
            checked_file = checked_index_file(data, base)
            _check_claims(base, checked_file)
        except Damaged as exc:
            yield base, exc
            continue
        merged.update(checked_file.merged)
        yield base, data
    for key in sorted(key for key in keys if is_key(key, "delta") and key not in merged):
        try:
            data = read_capped(store, key, INDEX_MAX_BYTES)
            checked_index_file(data, key)
        except Damaged as exc:
            yield key, exc
            continue
        yield key, data


def _check_claims(base: str, checked_file: CheckedIndexFile) -> None:
    """:class:`Damaged` for a base that says it is, or accounts for a manifest, from a crawl
    dated more than a day ahead: read first, it would hide every index file and manifest there
    is; read around, it hides none. (A base can still claim to replace files it does not hold:
    its word hides them, but deletes none: :func:`compact_index` deletes only what its own run
    merged, and `newsarchive reindex` rebuilds what was hidden.)"""
    ahead = datetime.now(UTC) + timedelta(days=1)
    for crawl in (index_crawl(base), _manifest_crawl(checked_file.through) if checked_file.through else ""):
        if (when := _crawl_time(crawl)) is not None and when > ahead:
            raise Damaged(f"{base}: names crawl {crawl}, dated ahead of now")


def _crawl_time(crawl_id: str) -> datetime | None:
    """When a crawl id of :func:`pipelines.archive.keys.new_crawl_id`'s form says it started."""
    dated = _CRAWL_TIME.match(crawl_id)
    try:
        return datetime.strptime(dated[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC) if dated else None
    except ValueError:  # digits that are no date: an id given by hand
        return None


_CRAWL_TIME = re.compile(r"[0-9]{8}T[0-9]{6}Z")  # how new_crawl_id's ids start


def _fetched(store: Store, key: str, target: Path) -> Path:
    """The object ``key`` copied to ``target`` a megabyte at a time, refused (:class:`Damaged`)
    past :data:`INDEX_MAX_BYTES`: never in memory whole."""
    copied = 0
    with store.stream(key) as handle, target.open("wb") as out:
        while chunk := handle.read(1 << 20):
            copied += len(chunk)
            if copied > INDEX_MAX_BYTES:
                raise Damaged(
                    f"{key}: over {INDEX_MAX_BYTES} bytes, not read (more than such a file can hold)"
                )
            out.write(chunk)
    return target


def _expanded_bytes(column: pa.DictionaryArray) -> int:
    """The bytes of the strings a dictionary-encoded column holds once each row has its own."""
    strings = column.dictionary  # a StringArray: its second buffer holds int32 offsets
    if not len(strings):
        return 0
    offsets = np.frombuffer(strings.buffers()[1], np.int32)[
        strings.offset : strings.offset + len(strings) + 1
    ]
    lengths = np.diff(offsets)
    indices = column.indices  # read from its buffers: fill_null would import pyarrow.compute
    validity, values = indices.buffers()[:2]
    width = indices.type.bit_width // 8
    rows = np.frombuffer(values, f"<i{width}", count=len(indices), offset=indices.offset * width)
    if validity is not None:
        bits = np.unpackbits(np.frombuffer(validity, np.uint8), bitorder="little")
        rows = rows[bits[indices.offset : indices.offset + len(indices)].astype(bool)]
    return int(lengths[rows].sum())


def _merged_keys(metadata: dict[bytes, bytes], size: int) -> list[str]:
    """The keys a base replaces, each checked to be an index file's or an open marker's: a base
    names nothing else."""
    try:
        merged = loads_bounded(metadata.get(_MERGED, b"[]"), size, "its list of the index files it replaces")
    except DamagedJSON as exc:
        raise Damaged(str(exc)) from None
    if not isinstance(merged, list):
        raise Damaged("its list of the index files it replaces is no list")
    return [checked(key, "delta", "base", "marker") for key in merged]


def _through(metadata: dict[bytes, bytes]) -> str | None:
    """The newest manifest a base accounts for, checked to be a manifest's key (None: it says none)."""
    through = metadata.get(_THROUGH)
    if through is None:
        return None
    try:
        return checked(through.decode(), "manifest")
    except (UnicodeDecodeError, BadKey):
        raise Damaged("its through is no manifest's key") from None


_STRING_COLUMNS = [field.name for field in INDEX_SCHEMA if pa.types.is_string(field.type)]


def _decoded(schema: pa.Schema) -> pa.Schema:
    """The columns as they read decoded (a dictionary as its values), metadata aside."""
    return pa.schema(
        [
            pa.field(f.name, f.type.value_type if pa.types.is_dictionary(f.type) else f.type, f.nullable)
            for f in schema
        ]
    )


_INDEX_SCHEMAS = (_decoded(INDEX_SCHEMA), _decoded(FORMER_INDEX_SCHEMA))


def compact_index(
    store: Store,
    workdir: Path,
    crawl_id: str,
    index: ArchiveIndex | None = None,
    keep_deltas: int | None = None,
) -> str | None:
    """Merge index files into a new base ``base-<crawl_id>`` when :func:`merge_plan` says so,
    and delete what it replaced; the new base's key, or None when there was nothing to do.

    ``index``: the run's, read up to now (a run reads every live base anyway; none is read
    again to learn what it holds); without one, the store is read here. Only the files merged
    are read, and only the keys listed now that the new base replaces are deleted, after it is
    published (a failed delete leaves files every reader ignores: the base names them)."""
    index = index or ArchiveIndex()
    index.refresh(store)
    base = base_key(crawl_id)
    plan = merge_plan(index, keep_deltas)
    if plan is None or base in index.index_listing:
        return None
    tables, named = [], set()
    try:
        for key in plan:
            file = read_index_file(store, key)
            tables.append(file.entries)
            named.update(file.merged)
    except Damaged as exc:  # read whole by this run's refresh, damaged since: left to reindex
        logger.warning("index not compacted: %s", exc)
        return None
    tables.append(pa.Table.from_pylist(index.uncovered(), schema=INDEX_SCHEMA))
    listed = set(index.index_listing)
    # Deleted: what this run merged, and markers of crawls it found sealed or read the parts of.
    # Named only, never deleted on another object's word: what the merged bases replaced and is
    # still there (a delete refused), and damaged index files whose crawls this run read from
    # their parts (readers skip them; `newsarchive reindex` or `verify` show them).
    deleted = set(plan) | index.retired_markers | index.unsealed_read
    replaced = sorted(deleted | (named & listed) | index.lost_keys)
    through = max(index.through or "", index.newest_manifest) or None
    spooled = workdir / f".{Path(base).name}"
    write_index_table(spooled, _merged_by_bucket(tables), replaced, through)
    ensure_held(store)
    store.publish(spooled, base)
    index.keep_written(store, base, spooled)
    spooled.unlink()
    for key in sorted(deleted & listed):
        try:
            ensure_held(store)  # lost: the rest stay, and every reader goes by the base's list
            store.delete(key)
        except StoreError as exc:  # no delete permission: readers go by the base's list anyway
            logger.warning("index compacted into %s, but %s stays: %s", base, key, exc)
            break
    return base


_BUCKETS = "0123456789abcdef"  # the first character of a key (a sha256 in hex): a merge's sixteenths
_POSITION = "_position"


def _merged_by_bucket(tables: list[pa.Table]) -> pa.Table:
    """:func:`merge_entries` over the entries of ``tables``, in their order, a sixteenth of the keys
    at a time: only those are Python dicts at once (a merge of a big tier would otherwise hold
    every entry of the archive as one). Entries of one key fall in one bucket; the merged entries
    keep the order of their first, as :class:`ArchiveIndex` reads them (the first text wins)."""
    import pyarrow.compute as pc  # a merge's alone: the crawl path does without the import

    entries = pa.concat_tables(tables, promote_options="default")
    entries = entries.append_column(_POSITION, pa.array(np.arange(entries.num_rows), pa.int64()))
    first = pc.utf8_slice_codeunits(pc.coalesce(entries["url_key"], entries["article_id"]), 0, 1)
    masks = [pc.equal(first, bucket).fill_null(False) for bucket in _BUCKETS]
    masks.append(pc.invert(pc.is_in(first, value_set=pa.array(list(_BUCKETS)))).fill_null(True))
    schema = INDEX_SCHEMA.append(pa.field(_POSITION, pa.int64()))
    merged = [
        pa.Table.from_pylist(merge_entries(entries.filter(mask).to_pylist()), schema=schema) for mask in masks
    ]
    return pa.concat_tables(merged).sort_by(_POSITION).drop_columns([_POSITION])


def merge_plan(index: ArchiveIndex, keep_deltas: int | None = None) -> list[str] | None:
    """The index files the sealing run merges into one base, oldest first (bases, then deltas),
    or None when it merges nothing.

    It merges when :data:`COMPACT_AFTER` deltas are in no base, when no base says up to which
    manifest it accounts for the archive but there is a base or the run read entries from
    manifests or parts of crawls no index file covers (:meth:`ArchiveIndex.uncovered`: an
    archive written before ``through``; the new base keeps them; a young
    archive of a few deltas waits for COMPACT_AFTER), or when an index file has the former
    name or a base has row groups of more than :data:`_INDEX_BATCH` entries (written before:
    rewritten once). The new base is put in its tier (:func:`tier`): while that tier holds
    ``TIER_FANOUT - 1`` other bases, they are merged in too, and the next tier is looked at. An
    entry is so rewritten once per tier it climbs: O(log n) times, never all of them every few
    runs. Damaged files are neither merged nor a reason to merge: the run reads around them,
    ``newsarchive reindex`` rebuilds them."""
    deltas, uncovered = _by_crawl(index.deltas), len(index.uncovered())
    # written before: the data glob reads them, or each run would decode a million entries at once
    former = [key for key, base in index.bases.items() if former_index_name(key) or base.rewrite]
    if not (
        len(deltas) >= (COMPACT_AFTER if keep_deltas is None else keep_deltas)
        or (index.through is None and (index.bases or uncovered))
        or former
        or any(former_index_name(key) for key in deltas)
        or index.lost_keys  # read around by a whole listing once: the new base names them
        or index.unsealed_read  # the dead crawls' parts read once: the new base holds them
    ):
        return None
    merged = [*former]
    entries = sum(index.deltas.values()) + uncovered + sum(index.bases[k].entries for k in former)
    while True:
        level = tier(entries)
        same = [key for key, base in index.bases.items() if key not in merged and tier(base.entries) == level]
        more = sum(index.bases[key].entries for key in same)
        if len(same) + 1 < TIER_FANOUT or entries + more > TIER_MAX_ENTRIES:
            break
        merged += same
        entries += more
    return [*_by_crawl(merged), *deltas]


def tier(entries: int) -> int:
    """A base's tier by its entries: 0 below :data:`TIER_ENTRIES`, then one more for each
    :data:`TIER_FANOUT` times as many."""
    level, bound = 0, TIER_ENTRIES
    while entries >= bound:
        level, bound = level + 1, bound * TIER_FANOUT
    return level


def merge_entries(entries: list[dict]) -> list[dict]:
    """One entry per URL key (per article where no URL is known) and version, with its first and
    last fetch. Earlier versions stay: their rows stay in the archive, and the index covers them.
    A URL's visits (entries with an ``outcome``: fetches that archived no row) merge apart from
    its archived entries, never into one: of its visits the latest is kept, outcome and all (it
    decides when the page is fetched again), with the first fetch of them all."""
    merged: dict[tuple[str | None, int, bool], dict] = {}
    for entry in entries:
        visit = entry.get("outcome") is not None
        key = (entry.get("url_key") or entry.get("article_id"), entry.get("version") or 1, visit)
        held = merged.get(key)
        if held is None:
            merged[key] = dict(entry)
            continue
        first = min(_fetches(held, entry, "first_fetched"), default=None)
        last = max(_fetches(held, entry, "last_fetched"), default=None)
        if visit and entry.get("last_fetched") == last:  # the later visit's outcome stands
            held.update(entry)
        held["first_fetched"], held["last_fetched"] = first, last
    return list(merged.values())


def _fetches(held: dict, entry: dict, name: str) -> list[datetime]:
    return [t for t in (held.get(name), entry.get(name)) if t is not None]


_FOLDER_KINDS = {INDEX: ("delta", "base", "marker"), MANIFESTS: ("manifest",)}  # what a key in each may be


def _manifest_crawl(key: str) -> str:
    return key.removeprefix(f"{MANIFESTS}/").removesuffix(".json")


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
