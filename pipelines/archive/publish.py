"""Publishing: a crawl's parts go from the spool to the store as they are written; its manifest
seals the run.

A crawl publishes each part as soon as it is spooled (:class:`Publisher`; the spool:
:mod:`pipelines.archive.spool`). A part is removed from the spool only after the store holds it
(same size and checksum) and the journal says so; the manifest ``_manifests/<crawl id>.json``
(:class:`pipelines.archive.manifest.Manifest`) is published last, then the folder goes. A crawl's
WARCs go before its parts when it closes (a full one goes at once, during the crawl), so that by
its manifest every row's ``warc_file`` is there. Every step can be repeated, so a crawl killed at
any point is finished by the next run (or ``newsarchive flush``): nothing is lost, nothing is
published twice. A crawl that died before closing gets a manifest with ``"interrupted": true``;
the articles it had not yet written are crawled again.

Nothing is published from a spool that records another archive
(:func:`pipelines.archive.spool.spool_for`), nor unless the run still holds the archive's lock
(:func:`pipelines.archive.lock.ensure_held`); what is not published stays in the spool.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import shutil
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.archive.catalog import discovery_in, drop_stale_checkpoints, seal_checkpoint
from pipelines.archive.index import (
    PART_COLUMNS,
    ArchiveIndex,
    compact_index,
    from_json,
    part_entries,
    to_json,
    write_index_file,
)
from pipelines.archive.index_cache import CACHE_FOLDER, IndexCache
from pipelines.archive.keys import WARC_FOLDER, delta_key, is_key, open_marker_key, part_key, shown
from pipelines.archive.lock import ensure_held
from pipelines.archive.manifest import ArchivedFile, Manifest, is_discovery_page, languages_of
from pipelines.archive.spool import QUARANTINE, Spool, SpooledCrawl, SpoolRefused, spooled_entries
from pipelines.archive.storage import Store, StoreError, write_atomically
from pipelines.archive.warc import OPEN_SUFFIX, WarcError, WarcFile, check, finish_open_files, finished_files
from pipelines.runtime.jsondata import DamagedJSON

logger = logging.getLogger(__name__)


def archived_ids(store: Store) -> dict[str, str]:
    """Every article id the store holds, mapped to the key of the file with its latest version."""
    index = ArchiveIndex()
    index.refresh(store)
    return {article: index.held(article).file for article in index.held_index}


@dataclass
class PublishReport:
    files: int = 0
    bytes: int = 0
    warc_files: int = 0
    warc_bytes: int = 0
    manifests: list[str] = field(default_factory=list)
    duplicate_rows: int = 0  # rows someone else archived while these waited; not published
    pending_files: int = 0
    pending_crawls: list[str] = field(default_factory=list)
    busy_crawls: list[str] = field(default_factory=list)  # still running, or being flushed
    quarantined: list[str] = field(default_factory=list)  # unreadable parts, set aside (paths)
    damaged: list[str] = field(default_factory=list)  # archive objects read around, one line each
    errors: list[str] = field(default_factory=list)

    def add(self, other: PublishReport) -> None:
        for name, value in vars(other).items():
            setattr(self, name, getattr(self, name) + value)


@dataclass
class SpooledPart:
    """A part this crawl wrote: spooled, and published unless ``published`` says otherwise."""

    key: str
    rows: int
    bytes: int
    published: PublishReport


# what publishing a part reads of it: the index's columns, and the manifest's languages and versions
PUBLISHED_COLUMNS = (*PART_COLUMNS, "language", "extractor_version")


def publish_spool(
    store: Store,
    spool: Spool,
    index: ArchiveIndex | None = None,
    columns: Mapping[str, pa.Table] | None = None,
) -> PublishReport:
    """Publish every crawl in the spool that nobody holds, oldest first.

    ``index`` is what the caller knows of the archive, up to date; without one it is read here.
    ``columns`` holds the :data:`PUBLISHED_COLUMNS` of parts the caller has in memory, by key:
    those are not read back.
    """
    report = PublishReport()
    for path, why in spool.refused():
        _set_aside(spool.root, path, path.name, why, report)
    crawl_ids = spool.crawl_ids()
    if not crawl_ids:
        return report
    if index is None:
        index = ArchiveIndex(IndexCache(spool.root / CACHE_FOLDER))
        _refresh(index, store, report)
    for crawl_id in crawl_ids:
        try:
            crawl = spool.claim(crawl_id)
        except OSError as exc:  # its lock file is a link, or no file
            _set_aside(
                spool.root, spool.root / crawl_id, crawl_id, f"cannot be locked ({exc.strerror})", report
            )
            continue
        if crawl is None:
            report.busy_crawls.append(crawl_id)
            continue
        try:
            if index.complete and not report.errors:
                try:
                    _publish_crawl(store, crawl, index, report, columns or {})
                except DamagedJSON as exc:  # its crawl.json: kept in the spool, for the operator
                    report.damaged.append(f"{exc}; the spooled crawl {crawl_id} is not published")
                except SpoolRefused as exc:  # what no crawl writes: none of it is published
                    _set_aside(spool.root, crawl.folder, f"{crawl_id}.refused", str(exc), report)
            if crawl.folder.exists():
                report.pending_crawls.append(crawl_id)
                report.pending_files += len(crawl.parts())
        finally:
            crawl.release()
    return report


class Publisher:
    """One crawl's view of its archive: the store, the spool, and one index of what is held.

    Built once per crawl and shared by the stages that need the archive (dedup asks what it
    holds, the archive writer hands it parts), so the store's client is made once and each
    manifest is read once. :meth:`write_part` spools a part and publishes it at once, so a long
    crawl uploads as it goes; after a failed publication the crawl only spools, and
    :meth:`close` tries the rest once more before sealing the run with its manifest.
    Methods block (file and network I/O): callers on an event loop run them in a thread.
    """

    def __init__(self, store: Store, spool: Spool):
        self.store = store
        self.spool = spool
        self.index = ArchiveIndex(IndexCache(spool.root / CACHE_FOLDER))
        self.crawl: SpooledCrawl | None = None
        self.discovery: dict[str, dict] = {}  # the last sealed run's discovery pages (see close)
        self._parts = 0
        self._noted = False  # index entries of no part: unchanged articles, visits (note)
        self._captured = False  # a page judged no article, captured all the same (keep_capture)
        self._publishing = True
        self._marked = False  # its open marker published (before its first part)
        self._unpublished: dict[str, pa.Table] = {}  # PUBLISHED_COLUMNS of the parts close publishes

    def note(self, entries: list[dict]) -> None:
        """Index entries of no part: articles this crawl fetched again and found unchanged
        (:func:`~pipelines.archive.index.unchanged_entries`), and article pages it fetched or
        refused that archived no row (:func:`~pipelines.archive.index.visit_entries`: their
        outcome says when to fetch them again). A run whose only news they are is sealed all the
        same: its index delta remembers them."""
        self.crawl.note(entries)
        self._noted = True

    def keep_capture(self) -> None:
        """A page judged no article is captured all the same: its WARC is the only copy a later
        ``reextract`` can recover it from, so the crawl is sealed even with no row."""
        self._captured = True

    def open(self, crawl_id: str, outlets: Iterable[str]) -> PublishReport:
        """Read the index, publish what earlier runs left in the spool, start this crawl's folder."""
        report = PublishReport()
        _refresh(self.index, self.store, report)
        if report.errors:
            logger.warning(
                "archive not readable, deduplicating against the spool only: %s", report.errors[-1]
            )
        if self.spool.unclaimed:
            logger.error("%s", self.spool.unclaimed)
        for entry in spooled_entries(self.spool):  # waiting in the spool: as good as archived
            self.index.add(entry)
        report.add(publish_spool(self.store, self.spool, self.index))
        self._publishing = self.index.complete and not report.errors
        if self.index.complete:
            newest = max([self.index.newest_manifest, *report.manifests], default="")
            self.discovery = discovery_in(self.store, newest, report.damaged) if newest else {}
        self.crawl = self.spool.open_crawl(crawl_id, outlets)
        return report

    def write_part(self, partition: str, table: pa.Table, publish: bool = True) -> SpooledPart:
        """Spool ``table`` as the next part of ``partition``; publish it too if asked (and if the
        store works). The last parts of a crawl are only spooled: :meth:`close` marks the crawl
        finished (all its rows spooled) and then publishes them."""
        self._parts += 1
        key = part_key(partition, self.crawl.crawl_id, self._parts)
        size = self.crawl.write_part(key, table)
        report = PublishReport()
        if publish and self._publishing:
            self._marked = self._marked or _mark_open(self.store, self.crawl, report)
            if self._marked:
                _publish_part(self.store, self.crawl, self.crawl.folder / key, self.index, report, table)
            self._publishing = not report.errors
        elif not publish:  # the crawl's last parts, which close publishes: not read back then
            self._unpublished[key] = table.select([c for c in PUBLISHED_COLUMNS if c in table.column_names])
        return SpooledPart(key, table.num_rows, size, report)

    def publish_warc(self, warc: WarcFile) -> PublishReport:
        """Publish a finished WARC and its index now (if the store works; else at close). Not
        before the crawl has a row or an index entry to seal: a run that finds nothing new keeps
        no WARC (:func:`_publish_crawl`), which close decides."""
        report = PublishReport()
        if self._publishing and (self._parts or self._noted or self._captured):
            self._publishing = _publish_warc(self.store, self.crawl, warc, report)
        return report

    def close(
        self,
        discovery: dict[str, dict] | None = None,
        stopped_early: bool = False,
        reextracted_from: dict | None = None,
    ) -> PublishReport:
        """The crawl is over: publish what is left in the spool (this crawl's and any earlier
        run's), reading only what others published meanwhile, and seal each with its manifest.
        ``discovery`` (validators of the sitemaps, feeds and listings it read) goes into this
        crawl's manifest, for the next run's conditional requests; a crawl ``stopped_early`` (a
        signal, a limit) gets ``"interrupted": true`` like one that died. A run of
        ``newsarchive reextract`` says what it rebuilt the rows from (``reextracted_from``)."""
        extra: dict = {"captures_kept": True} if self._captured else {}
        if discovery or stopped_early or reextracted_from:
            # a page's validators no request may carry (a server's ETag with a tab) are not kept:
            # the crawl's record would be refused as forged, and its next run asks unconditionally
            kept = {url: page for url, page in (discovery or {}).items() if is_discovery_page(url, page)}
            extra |= {"discovery": kept, "stopped_early": stopped_early}
            if reextracted_from:
                extra["reextracted_from"] = reextracted_from
        if extra:
            self.crawl.write_info(self.crawl.info | extra)
        self.crawl.finish()
        self.crawl.release()
        report = PublishReport()
        _refresh(self.index, self.store, report, self.crawl.crawl_id)  # what others published meanwhile
        report.add(publish_spool(self.store, self.spool, self.index, self._unpublished))
        self._unpublished = {}
        if self.crawl.crawl_id not in report.pending_crawls:
            try:
                compact_index(self.store, self.spool.root, self.crawl.crawl_id, self.index)
            except StoreError as exc:  # the deltas stay; a later run compacts them
                logger.warning("index not compacted: %s", exc)
            try:
                seal_checkpoint(self.store, self.spool.root)
            except StoreError as exc:  # readers read the manifests since the last one; a later run writes it
                logger.warning("catalog checkpoint not written: %s", exc)
        return report


def _refresh(index: ArchiveIndex, store: Store, report: PublishReport, own_crawl: str = "") -> None:
    known = len(index.damaged)
    try:
        index.refresh(store, own_crawl)
    except StoreError as exc:
        report.errors.append(str(exc))
    report.damaged += index.damaged[known:]


def _publish_crawl(
    store: Store,
    crawl: SpooledCrawl,
    index: ArchiveIndex,
    report: PublishReport,
    columns: Mapping[str, pa.Table],
) -> None:
    _set_aside_strays(crawl, report)
    info = crawl.info  # all three checked before anything of the crawl is published
    reextraction = "reextracted_from" in info
    crawl.journal(reextraction)
    crawl.notes()
    finish_open_files(crawl.folder)  # what a killed crawl was writing: cut to its whole records
    if _found_nothing_new(crawl, info, reextraction):
        _discard(crawl, report)
        return
    for warc in finished_files(crawl.folder):
        if not _publish_warc(store, crawl, warc, report):
            return
    parts = crawl.parts()
    if parts and not _mark_open(store, crawl, report):
        return
    for part in parts:
        if not _publish_part(store, crawl, part, index, report, columns.get(_key(crawl, part))):
            return
    journal = crawl.journal(reextraction)
    delta_file = crawl.folder / f".{Path(delta_key(crawl.crawl_id)).name}"  # not named *.parquet
    if not delta_file.exists():  # written once: a repeated publication sends the same bytes
        entries = [entry for part in journal.values() for entry in from_json(part.get("index", []))]
        write_index_file(delta_file, entries + crawl.notes())
    if _published(store, delta_file, delta_key(crawl.crawl_id), report) is None:
        return
    manifest = Manifest.of_crawl(info, journal)
    spooled_manifest = crawl.folder / ".manifest.json"
    write_atomically(spooled_manifest, lambda handle: handle.write(manifest.to_bytes()))
    try:  # a crawl sealed late, under an older id: no checkpoint may claim to cover it
        drop_stale_checkpoints(store, manifest.key)
    except StoreError as exc:  # the next checkpoint covers it; until then ls and pull miss it
        logger.warning("catalog checkpoint not dropped before %s: %s", manifest.key, exc)
    if _published(store, spooled_manifest, manifest.key, report) is None:
        return
    report.manifests.append(manifest.key)
    if (crawl.folder / _MARKER).exists():
        _unmark(store, crawl.crawl_id)
    shutil.rmtree(crawl.folder)


_MARKER = ".open.json"  # a crawl's open marker, in its folder of the spool


def _mark_open(store: Store, crawl: SpooledCrawl, report: PublishReport) -> bool:
    """Publish the crawl's open marker before its first part: until its manifest is published,
    the marker tells the next runs (on any spool) that parts of it may be in no index file, so
    they list the archive for them (:meth:`ArchiveIndex.refresh`). False when the store failed."""
    marker = crawl.folder / _MARKER
    if not marker.exists():  # the same bytes every time: a repeated publication is a no-op
        data = json.dumps({"crawl_id": crawl.crawl_id}).encode()
        write_atomically(marker, lambda handle: handle.write(data))
    return _published(store, marker, open_marker_key(crawl.crawl_id), report) is not None


def _unmark(store: Store, crawl_id: str) -> None:
    """Delete a sealed crawl's open marker; one a store keeps (no delete permission) is ignored
    by every reader, and the next merge of the index deletes it or names it as replaced."""
    try:
        ensure_held(store)
        store.delete(open_marker_key(crawl_id))
    except StoreError as exc:
        logger.info("the open marker of %s stays (readers ignore it: the crawl is sealed): %s", crawl_id, exc)


def _found_nothing_new(crawl: SpooledCrawl, info: dict, reextraction: bool) -> bool:
    """A crawl that closed with no row and no index entry to publish (none published yet either) leaves
    nothing in the archive: no WARC of its discovery pages (unless it captured a page judged no
    article, :meth:`Publisher.keep_capture`), no empty index delta, no manifest.
    An hourly run that finds nothing would otherwise add four objects, 35,000 a year of
    nothing a reader needs, to list and keep. Its record is its summary (``--summary-json``).
    What is given up: ``ls`` does not list it; its discovery validators are not kept, so the
    next run asks with the last sealed run's and reads again what changed since (no article is
    missed, the index knows every one); an interrupted run of nothing is not recorded as such
    (the next run fetches the rest anyway). A reextraction is always sealed: its manifest names
    its source. A crawl that never closed (killed: no ``finished_at``) is published as it was
    left: its WARCs may hold the only capture of pages it fetched before it died."""
    closed, captured = info.get("finished_at") is not None, info.get("captures_kept") is True
    return closed and not (reextraction or captured or crawl.parts() or crawl.journal() or crawl.notes())


def _discard(crawl: SpooledCrawl, report: PublishReport) -> None:
    """Remove the folder of a crawl that found nothing new, its WARCs unsent. A WARC with other
    names (hard links) is no crawl's: set aside and named, as a stray is, not dropped unsaid."""
    for warc in finished_files(crawl.folder):
        if warc.path.lstat().st_nlink > 1:
            why = "has other names (hard links)"
            _set_aside(crawl.folder.parent, warc.path, f"{crawl.crawl_id}/{warc.key}", why, report)
    shutil.rmtree(crawl.folder)


def _set_aside_strays(crawl: SpooledCrawl, report: PublishReport) -> None:
    """Set aside what a crawl never writes in its folder and publishing would follow, send or
    change: links, FIFOs, devices, parts or WARCs whose names are no keys, and files this code
    appends to or cuts that have other names (hard links)."""
    for folder, folders, files in os.walk(crawl.folder):
        for name in [*folders, *files]:
            path = Path(folder, name)
            key = path.relative_to(crawl.folder).as_posix()
            info = path.lstat()
            if stat.S_ISLNK(info.st_mode):
                why = "is a link"
            elif not (stat.S_ISREG(info.st_mode) or stat.S_ISDIR(info.st_mode)):
                why = "is not a regular file"
            elif info.st_nlink > 1 and (key in _CHANGED or key.endswith(OPEN_SUFFIX)):
                why = "has other names (hard links)"
            elif not stat.S_ISREG(info.st_mode) or name.startswith(".") or _spooled_key(key):
                continue
            else:
                why = "is named by no key"
            _set_aside(crawl.folder.parent, path, f"{crawl.crawl_id}/{key}", why, report)
        folders[:] = [name for name in folders if Path(folder, name).is_dir()]


_CHANGED = ("published.jsonl", "notes.jsonl")  # a crawl's files appended to (and its .open WARCs, cut)


def _spooled_key(key: str) -> bool:
    """A file of a crawl's folder that is no part or WARC (its journal, notes, record), or one
    named by the key it will have."""
    if key.endswith(".parquet") or key.startswith(f"{WARC_FOLDER}/"):
        return is_key(key, "part", "warc", "cdxj") or is_key(key.removesuffix(OPEN_SUFFIX), "warc")
    return "/" not in key


def _set_aside(spool_root: Path, path: Path, name: str, why: str, report: PublishReport) -> None:
    """Move ``path`` (a link as a link, never followed) to ``<spool>/quarantine/<name>``, kept for
    a look; if it cannot be moved, it is named and left where it is."""
    target = spool_root / QUARANTINE / name
    try:
        _real_folders(spool_root, target.parent)
        os.replace(path, target)
    except OSError as exc:
        report.damaged.append(f"{shown(str(path))} {why}; not published, left in place ({exc.strerror})")
        logger.error("%s", report.damaged[-1])
        return
    report.quarantined.append(str(target))
    logger.error("%s %s; set aside in %s, not published", shown(str(path)), why, shown(str(target)))


def _real_folders(root: Path, folder: Path) -> None:
    """Make ``folder`` under ``root``, each of its folders a real one: never through a link."""
    for depth in range(1, len(folder.relative_to(root).parts) + 1):
        step = root.joinpath(*folder.relative_to(root).parts[:depth])
        with contextlib.suppress(FileExistsError):
            step.mkdir()
        if not stat.S_ISDIR(step.lstat().st_mode):
            raise OSError(errno.ENOTDIR, "a link or no folder on the way", str(step))


def _key(crawl: SpooledCrawl, part: Path) -> str:
    return part.relative_to(crawl.folder).as_posix()


def _publish_part(
    store: Store,
    crawl: SpooledCrawl,
    part: Path,
    index: ArchiveIndex,
    report: PublishReport,
    columns: pa.Table | None = None,
) -> bool:
    """Publish one spooled part (``columns``: its :data:`PUBLISHED_COLUMNS` or more, when the
    caller has them), without the rows another file holds meanwhile; False when the store failed
    (the part stays in the spool, and so should the ones after it)."""
    key = _key(crawl, part)
    try:  # the index's columns are all it takes, unless rows must go
        if columns is None:
            file = pq.ParquetFile(part)
            columns = file.read(columns=[c for c in PUBLISHED_COLUMNS if c in file.schema_arrow.names])
        ids = columns.column("article_id").to_pylist()
    except (pa.ArrowException, OSError, KeyError) as exc:
        # set aside, so that one bad file does not hold back every later crawl
        _set_aside(crawl.folder.parent, part, f"{crawl.crawl_id}/{key}", f"is unreadable ({exc})", report)
        return True
    versions = columns.column("version").to_pylist() if "version" in columns.column_names else [1] * len(ids)
    fresh = [_fresh(index, i, v or 1, key) for i, v in zip(ids, versions, strict=True)]
    if not all(fresh):  # archived elsewhere meanwhile (store down at open, or another crawler)
        report.duplicate_rows += len(ids) - sum(fresh)
        if not any(fresh):
            part.unlink()
            return True
        crawl.write_part(key, pq.ParquetFile(part).read().filter(pa.array(fresh)))
        columns = columns.filter(pa.array(fresh))
        ids = [i for i, keep in zip(ids, fresh, strict=True) if keep]
    sha256 = _published(store, part, key, report)
    if sha256 is None:
        return False
    size = part.stat().st_size
    entries = part_entries(columns, key, crawl.crawl_id)
    published = ArchivedFile(
        key=key,
        crawl_id=crawl.crawl_id,
        rows=len(ids),
        bytes=size,
        sha256=sha256,
        languages=languages_of(columns),
        article_ids=tuple(ids),
        extractor_versions=tuple(_distinct(columns, "extractor_version")),
    )
    crawl.record(published.entry() | {"index": to_json(entries)})  # its manifest entry, and the index's
    for entry in entries:
        index.add(entry)
    part.unlink()
    report.files += 1
    report.bytes += size
    return True


def _publish_warc(store: Store, crawl: SpooledCrawl, warc: WarcFile, report: PublishReport) -> bool:
    """Publish a finished WARC, then its CDXJ index; False when the store failed (both stay in
    the spool). A WARC that does not read back whole is set aside like an unreadable part."""
    try:
        records = warc.records or check(warc.path)
    except WarcError as exc:
        _set_aside(
            crawl.folder.parent, warc.path, f"{crawl.crawl_id}/{warc.key}", f"is unreadable ({exc})", report
        )
        return True
    sha256 = _published(store, warc.path, warc.key, report)
    if sha256 is None:
        return False
    index_sha256 = _published(store, warc.index, warc.index_key, report)
    if index_sha256 is None:
        return False
    size, index_size = warc.path.stat().st_size, warc.index.stat().st_size
    crawl.record(
        {
            "key": warc.key,
            "kind": "warc",
            "bytes": size,
            "sha256": sha256,
            "records": records,
            "cdxj": {"key": warc.index_key, "bytes": index_size, "sha256": index_sha256},
        }
    )
    warc.path.unlink()
    warc.index.unlink()
    report.warc_files += 1
    report.warc_bytes += size + index_size
    return True


def _distinct(table: pa.Table, column: str) -> list[str]:
    """The values of ``column``, each once: counted in Python, as
    :func:`pipelines.archive.manifest.languages_of` counts (pyarrow.compute costs an import)."""
    if column not in table.column_names:
        return []
    return sorted({value for value in table.column(column).to_pylist() if value is not None})


def _fresh(index: ArchiveIndex, article_id: str, version: int, key: str) -> bool:
    """Not held by another file at this version or a later one."""
    held = index.held(article_id)
    return held is None or held.file == key or held.version < version


def _published(store: Store, source: Path, key: str, report: PublishReport) -> str | None:
    """Publish ``source`` and return its sha256; on failure note why and return None. Callers
    stop there: the store is failing."""
    try:
        ensure_held(store)
        return store.publish(source, key)
    except StoreError as exc:
        report.errors.append(str(exc))
        logger.error("publication stopped, %s stays in the spool: %s", key, exc)
        return None
