"""Publishing: parts wait in a local spool until the store holds them; a manifest seals each run.

The spool has one folder per crawl, laid out like the archive::

    <spool>/<crawl id>/crawl.json            start time, outlets; end time once the crawl closed
    <spool>/<crawl id>/.lock                 held (flock) by the crawl while it runs
    <spool>/<crawl id>/outlet=.../part-*.parquet   parts not yet published
    <spool>/<crawl id>/_warc/*.warc.gz, *.cdxj    WARCs and their indexes not yet published
    <spool>/<crawl id>/_warc/*.warc.gz.open       the WARC being written (pipelines/archive/warc.py)
    <spool>/<crawl id>/published.jsonl       one line per part the store holds, checked

A crawl publishes each part as soon as it is spooled (:class:`Publisher`). A part is removed from
the spool only after the store holds it (same size and checksum) and the journal says so; the
manifest ``_manifests/<crawl id>.json`` is published last, then the folder goes. A crawl's WARCs
go before its parts when it closes (a full one goes at once, during the crawl), so that by its
manifest every row's ``warc_file`` is there. Every step can
be repeated, so a crawl killed at any point is finished by the next run (or ``newsarchive
flush``): nothing is lost, nothing is published twice. A crawl that died before closing gets a
manifest with ``"interrupted": true``; the articles it had not yet written are crawled again.

Each archive has a spool of its own, which records it (``<spool>/archive.json``, written when
the spool is first used): a spool that records another archive is refused, never published
into this one (:func:`spool_for`). Nothing is published unless the run still holds the archive's
lock (:func:`pipelines.archive.lock.ensure_held`); what is not published stays in the spool.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import stat
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.archive.catalog import BadManifest, manifest_file, manifest_run, manifest_warc
from pipelines.archive.index import (
    MANIFEST_MAX_BYTES,
    PART_COLUMNS,
    ArchiveIndex,
    compact_index,
    from_json,
    part_entries,
    read_capped,
    read_part_entries,
    to_json,
    write_index_file,
)
from pipelines.archive.keys import (
    CRAWL,
    OUTLET,
    WARC_FOLDER,
    BadKey,
    checked_crawl,
    checked_outlet,
    delta_key,
    is_key,
    manifest_key,
    part_key,
    part_of,
    shown,
)
from pipelines.archive.lock import ensure_held
from pipelines.archive.rows import parquet_file
from pipelines.archive.schema import INDEX_SCHEMA, SCHEMA_VERSION
from pipelines.archive.storage import (
    LocalStore,
    Store,
    StoreError,
    archive_identity,
    read_up_to,
    write_atomically,
)
from pipelines.archive.warc import (
    OPEN_SUFFIX,
    WarcError,
    WarcFile,
    check,
    finish_open_files,
    finished_files,
    open_regular,
)
from pipelines.runtime.jsondata import DamagedJSON, loads_bounded

logger = logging.getLogger(__name__)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(target: Path, data: dict) -> None:
    write_atomically(target, lambda handle: handle.write(json.dumps(data, indent=1).encode()))


def _parts(folder: Path) -> list[Path]:
    """Spooled parts, not the temporary files of parts being written, nor links or files whose
    names are no part's key (:func:`_set_aside_strays` sets those aside)."""
    return sorted(
        p
        for p in folder.rglob("*.parquet")
        if not p.name.startswith(".")
        and is_key(p.relative_to(folder).as_posix(), "part")
        and not p.is_symlink()
        and p.is_file()
    )


def _read_spooled(path: Path, limit: int) -> bytes:
    """A file of the spool, at most ``limit`` bytes and one more (to tell it is longer), read
    only if it is a regular file, never through a link (:func:`pipelines.archive.warc.open_regular`)."""
    with os.fdopen(open_regular(path), "rb") as handle:
        return read_up_to(handle, limit)


class SpoolRefused(ValueError):
    """A crawl's folder in the spool holds what no crawl writes there: named, not published."""


def _spooled_lines(path: Path) -> list[bytes]:
    """The lines of a crawl's journal or notes; :class:`SpoolRefused` if that is no regular
    file, or longer than any crawl writes."""
    try:
        raw = _read_spooled(path, _JOURNAL_BYTES)
    except OSError as exc:
        raise SpoolRefused(f"{shown(str(path))}: {exc.strerror}") from None
    if len(raw) > _JOURNAL_BYTES:
        raise SpoolRefused(f"{path}: over {_JOURNAL_BYTES:,} bytes, not read")
    return raw.splitlines()


def _check_manifest_fields(info: dict) -> None:
    """Each field of a crawl.json that :func:`_manifest` copies, as every reader of the manifest
    checks it (:func:`pipelines.archive.catalog.manifest_run`), and those the catalog does not
    read as the crawl writes them (:meth:`Publisher.close`); else :class:`BadManifest`."""
    manifest_run(manifest_key(info["crawl_id"]), {"crawl_id": info["crawl_id"]} | _copied(info), [])
    if not isinstance(info.get("stopped_early", False), bool):
        raise BadManifest(f"stopped_early {shown(info['stopped_early'])} is not a bool")
    discovery = info.get("discovery", {})
    if not isinstance(discovery, dict) or not all(_is_discovery_page(*page) for page in discovery.items()):
        raise BadManifest("discovery is no object of pages and their validators")
    origin = info.get("reextracted_from", {})
    if not (
        isinstance(origin, dict)
        and origin.keys() <= {"archive", "runs", "outlets"}
        and isinstance(origin.get("archive", ""), str)
        and isinstance(origin.get("runs", []), list)
        and all(is_key(run, "manifest") for run in origin.get("runs", []))
        and isinstance(origin.get("outlets", []), list)
        and all(isinstance(outlet, str) and OUTLET.fullmatch(outlet) for outlet in origin.get("outlets", []))
    ):
        raise BadManifest("reextracted_from is not an archive with the runs and outlets read")


def _copied(info: dict) -> dict:
    """The fields of a crawl.json a manifest carries as they are."""
    return {
        "started_at": info["started_at"],
        "finished_at": info.get("finished_at"),
        "outlets": info.get("outlets", []),
        "discovery": info.get("discovery", {}),
        **({"reextracted_from": info["reextracted_from"]} if "reextracted_from" in info else {}),
    }


def _journal_key(entry: dict, path: Path, crawl_id: str, reextraction: bool) -> str:
    """The key of a journal entry, once it is a key of what the entry says it is (a part, or a
    WARC with its index) written by this crawl (``crawl_id``; a ``reextraction`` copies its
    source's WARCs under their keys), and the entry has the counts a manifest sums, each field as
    a manifest's reader takes it, and index entries of its own part; else :class:`SpoolRefused`."""
    warc = entry.get("kind") == "warc"
    try:
        if "kind" in entry and not warc:
            raise BadKey(f"kind {shown(entry['kind'])} is no kind of file a crawl publishes")
        key = manifest_warc(entry, crawl_id).key if warc else manifest_file(entry, crawl_id, "part").key
    except (BadKey, BadManifest) as exc:
        raise SpoolRefused(f"{path}: {exc}") from None
    own_warc = reextraction or key.startswith(f"{WARC_FOLDER}/{crawl_id}-")
    if not (own_warc if warc else part_of(key).crawl_id == crawl_id):
        raise SpoolRefused(f"{path}: {key} is another crawl's file, not {crawl_id}'s")
    if not warc:
        _index_entries(entry.get("index", []), path, key)
    return key


def _index_entries(entries: object, path: Path, file: str | None = None) -> list[dict]:
    """Index entries read from the spool, as a crawl writes them (:func:`to_json` of
    :func:`part_entries`): objects of :data:`INDEX_SCHEMA`'s fields and types, each naming a part
    (``file`` when they are a part's own); else :class:`SpoolRefused`."""
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise SpoolRefused(f"{path}: index entries that are not a list of objects")
    for entry in entries:
        if not entry.keys() <= set(INDEX_SCHEMA.names) or not isinstance(entry.get("article_id"), str):
            raise SpoolRefused(f"{path}: an index entry of other fields, or no article id")
        named = entry.get("file")
        if not (named == file if file else is_key(named, "part")):
            raise SpoolRefused(f"{path}: an index entry of {shown(named)}, not of {file or 'a part'}")
    try:
        parsed = from_json(entries)
        pa.Table.from_pylist(parsed, schema=INDEX_SCHEMA)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise SpoolRefused(f"{path}: an index entry of the wrong types ({shown(str(exc))})") from None
    return parsed


class SpooledCrawl:
    """One crawl's folder in the spool, locked by whoever holds this object."""

    def __init__(self, folder: Path, lock_fd: int):
        self.folder = folder
        self.crawl_id = folder.name
        self._lock_fd = lock_fd

    @property
    def info(self) -> dict:
        """What the crawl records of itself; :class:`DamagedJSON` when that is no record,
        :class:`SpoolRefused` when it is not this folder's crawl's (its id names the manifest,
        its fields fill it) or no regular file."""
        path = self.folder / "crawl.json"
        try:
            raw = _read_spooled(path, MANIFEST_MAX_BYTES)
        except OSError as exc:
            raise SpoolRefused(f"{shown(str(path))}: {exc.strerror}") from None
        info = loads_bounded(raw, MANIFEST_MAX_BYTES, str(path))
        if not isinstance(info, dict):
            raise DamagedJSON(f"{path}: a {type(info).__name__}, not an object")
        try:
            if info.get("crawl_id") != checked_crawl(self.crawl_id):
                raise SpoolRefused(f"crawl id {shown(info.get('crawl_id'))} is not its folder's")
            outlets = info.get("outlets", [])
            if not isinstance(outlets, list) or not isinstance(info.get("started_at"), str):
                raise SpoolRefused("no list of outlets, or no start time")
            for outlet in outlets:
                checked_outlet(outlet)
            _check_manifest_fields(info)
        except ValueError as exc:  # BadKey, BadManifest
            raise SpoolRefused(f"{path}: {exc}") from None
        return info

    def write_info(self, info: dict) -> None:
        _write_json(self.folder / "crawl.json", info)

    def finish(self) -> None:
        """The crawl closed: its manifest will not say ``interrupted``."""
        self.write_info(self.info | {"finished_at": _now()})

    def write_part(self, key: str, table: pa.Table) -> int:
        """Spool ``table`` as the part ``key``; return its size in bytes."""
        target = self.folder / key
        write_atomically(target, lambda handle: handle.write(parquet_file(table)))
        return target.stat().st_size

    def parts(self) -> list[Path]:
        return _parts(self.folder)

    def journal(self, reextraction: bool = False) -> dict[str, dict]:
        """Parts the store holds, by key (a line may repeat after a kill; the last one counts);
        of a ``reextraction``, with the source's WARCs it copied."""
        path = self.folder / "published.jsonl"
        if not path.exists():
            return {}
        entries = {}
        for line in _spooled_lines(path):
            # a line cut short by a kill is no entry: its part is still in the spool
            entry = None
            with contextlib.suppress(ValueError):
                entry = loads_bounded(line, MANIFEST_MAX_BYTES, str(path))
            if isinstance(entry, dict):
                entries[_journal_key(entry, path, self.crawl_id, reextraction)] = entry
        return entries

    def record(self, entry: dict) -> None:
        line = json.dumps(entry).encode() + b"\n"
        fd = open_regular(
            self.folder / "published.jsonl", os.O_RDWR | os.O_APPEND | os.O_CREAT, single_name=True
        )
        with os.fdopen(fd, "a+b") as handle:
            if handle.seek(0, os.SEEK_END) > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a line cut short by a kill: end it first
                    line = b"\n" + line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def note(self, entries: list[dict]) -> None:
        """Index entries of no part (articles fetched again, unchanged): they go into the crawl's
        index delta. Not flushed to disk one by one: losing them costs a fetch, no article."""
        with (self.folder / "notes.jsonl").open("a", encoding="utf-8") as handle:
            handle.writelines(json.dumps(entry) + "\n" for entry in to_json(entries))

    def notes(self) -> list[dict]:
        path = self.folder / "notes.jsonl"
        lines = _spooled_lines(path) if path.exists() else []
        entries = []
        for line in lines:
            with contextlib.suppress(ValueError):  # the last line, cut short by a kill
                entries.append(loads_bounded(line, MANIFEST_MAX_BYTES, str(path)))
        return _index_entries(entries, path)

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


QUARANTINE = "quarantine"  # <spool>/quarantine/<crawl id>/...: unreadable parts, kept for a look
SPOOL_ARCHIVE = "archive.json"  # <spool>/archive.json: {"archive": the archive its crawls are for}
_SPOOL_ARCHIVE_BYTES = 65536
_JOURNAL_BYTES = 1 << 30  # a crawl's published.jsonl or notes.jsonl: index entries of all its rows
_DISCOVERY_FIELDS = {"etag", "last_modified", "read_at"}
# what a header's value may be, as the spider read it (Latin-1, no control character), kept short
_HEADER_VALUE = re.compile(r"[\x20-\x7e\xa0-\xff]{0,1024}")
LEGACY_SPOOL = Path("output") / ".spool"  # where older versions spooled for every bucket


class SpoolMismatch(ValueError):
    """The spool holds the crawls of another archive, or crawls that name none: not used."""


class Spool:
    """The local folder where parts wait for the store."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.unclaimed: str | None = None  # a message about crawls an older version left elsewhere

    def bind(self, archive: str, claim_unmarked: bool = False) -> None:
        """Make this the spool of ``archive`` (see :func:`pipelines.archive.storage.archive_identity`),
        or :class:`SpoolMismatch`. A spool that records no archive is claimed if it holds no
        crawl, or if ``claim_unmarked`` (an older version's spool its operator names for it)."""
        recorded = self.archive()
        if recorded is None:
            waiting = self.crawl_ids()
            if waiting and not claim_unmarked:
                raise SpoolMismatch(
                    f"spool {self.root} holds {len(waiting)} crawl(s) spooled by an older newsarchive, "
                    f"which recorded no archive; not used for {archive}. If they were all crawled for "
                    f"it, `newsarchive flush --archive {archive} --spool {self.root}` publishes them "
                    "there; else move their folders out"
                )
            self.root.mkdir(parents=True, exist_ok=True)
            with contextlib.suppress(FileExistsError):  # another run recorded one meanwhile
                write_atomically(
                    self.root / SPOOL_ARCHIVE,
                    lambda handle: handle.write(json.dumps({"archive": archive}).encode()),
                    place=os.link,
                )
            recorded = self.archive()
        if recorded != archive:
            raise SpoolMismatch(
                f"spool {self.root} holds the crawls of the archive {shown(recorded)}, not of {archive}; "
                "not published here (give this archive a --spool of its own, or flush that one)"
            )

    def archive(self) -> str | None:
        """The archive the spool records (None: none yet); :class:`SpoolMismatch` if the
        record cannot be read."""
        try:
            raw = _read_spooled(self.root / SPOOL_ARCHIVE, _SPOOL_ARCHIVE_BYTES)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise SpoolMismatch(f"spool {self.root}: {SPOOL_ARCHIVE} unreadable ({exc.strerror})") from None
        try:
            archive = loads_bounded(raw, _SPOOL_ARCHIVE_BYTES, SPOOL_ARCHIVE)["archive"]
        except (ValueError, TypeError, KeyError):
            archive = None
        if not isinstance(archive, str):
            raise SpoolMismatch(f"spool {self.root}: {SPOOL_ARCHIVE} names no archive; not used")
        return archive

    def open_crawl(self, crawl_id: str, outlets: Iterable[str]) -> SpooledCrawl:
        folder = self.root / crawl_id
        folder.mkdir(parents=True, exist_ok=False)
        crawl = self._lock(folder)
        if crawl is None:
            raise RuntimeError(f"spool folder {folder} is locked by another process")
        crawl.write_info(
            {"crawl_id": crawl_id, "started_at": _now(), "finished_at": None, "outlets": sorted(outlets)}
        )
        return crawl

    def claim(self, crawl_id: str) -> SpooledCrawl | None:
        """The crawl's folder, locked for us; None while its crawl (or another flush) holds it."""
        return self._lock(self.root / crawl_id)

    def crawl_ids(self) -> list[str]:
        """The crawls waiting: folders, not links, named by a crawl id, that hold a ``crawl.json``."""
        return [path.name for path, why in self._crawl_folders() if why is None]

    def refused(self) -> list[tuple[Path, str]]:
        """What looks like a crawl's folder but is none (:meth:`crawl_ids`), with why."""
        return [(path, why) for path, why in self._crawl_folders() if why is not None]

    def _crawl_folders(self) -> list[tuple[Path, str | None]]:
        if self.root.is_symlink() or not self.root.is_dir():
            return []
        found: list[tuple[Path, str | None]] = []
        for path in sorted(self.root.iterdir()):
            if path.name == QUARANTINE or not os.path.lexists(path / "crawl.json"):
                continue
            if path.is_symlink() or not path.is_dir():
                found.append((path, "is a link, not a folder"))
            elif not CRAWL.fullmatch(path.name):
                found.append((path, "is named by no crawl id"))
            else:
                found.append((path, None))
        return found

    @staticmethod
    def _lock(folder: Path) -> SpooledCrawl | None:
        """The crawl's folder, locked; None if another process holds it; OSError if its lock
        file is no regular file (never followed)."""
        fd = open_regular(folder / ".lock", os.O_RDWR | os.O_CREAT)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return SpooledCrawl(folder, fd)


def archived_ids(store: Store) -> dict[str, str]:
    """Every article id the store holds, mapped to the key of the file with its latest version."""
    index = ArchiveIndex()
    index.refresh(store)
    return {article: held.file for article, held in index.articles.items()}


def spooled_entries(spool: Spool) -> Iterator[dict]:
    """Index entries of the parts waiting in the spool, under the keys they will have."""
    for crawl_id in spool.crawl_ids():
        folder = spool.root / crawl_id
        for part in _parts(folder):
            yield from read_part_entries(part, part.relative_to(folder).as_posix())


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
        index = ArchiveIndex()
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
        self.index = ArchiveIndex()
        self.crawl: SpooledCrawl | None = None
        self.discovery: dict[str, dict] = {}  # the last sealed run's discovery pages (see close)
        self._parts = 0
        self._publishing = True
        self._unpublished: dict[str, pa.Table] = {}  # PUBLISHED_COLUMNS of the parts close publishes

    def note_unchanged(self, entries: list[dict]) -> None:
        """Articles this crawl fetched again and found unchanged: the index notes the fetch."""
        self.crawl.note(entries)

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
            _publish_part(self.store, self.crawl, self.crawl.folder / key, self.index, report, table)
            self._publishing = not report.errors
        elif not publish:  # the crawl's last parts, which close publishes: not read back then
            self._unpublished[key] = table.select([c for c in PUBLISHED_COLUMNS if c in table.column_names])
        return SpooledPart(key, table.num_rows, size, report)

    def publish_warc(self, warc: WarcFile) -> PublishReport:
        """Publish a finished WARC and its index now (if the store works; else at close)."""
        report = PublishReport()
        if self._publishing:
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
        if discovery or stopped_early or reextracted_from:
            # a page's validators no request may carry (a server's ETag with a tab) are not kept:
            # the crawl's record would be refused as forged, and its next run asks unconditionally
            kept = {url: page for url, page in (discovery or {}).items() if _is_discovery_page(url, page)}
            extra = {"discovery": kept, "stopped_early": stopped_early}
            if reextracted_from:
                extra["reextracted_from"] = reextracted_from
            self.crawl.write_info(self.crawl.info | extra)
        self.crawl.finish()
        self.crawl.release()
        report = PublishReport()
        _refresh(self.index, self.store, report)  # only what others published meanwhile
        report.add(publish_spool(self.store, self.spool, self.index, self._unpublished))
        self._unpublished = {}
        if self.crawl.crawl_id not in report.pending_crawls:
            try:
                compact_index(self.store, self.spool.root, self.crawl.crawl_id)
            except StoreError as exc:  # the deltas stay; a later run compacts them
                logger.warning("index not compacted: %s", exc)
        return report


def _refresh(index: ArchiveIndex, store: Store, report: PublishReport) -> None:
    known = len(index.damaged)
    try:
        index.refresh(store)
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
    for warc in finished_files(crawl.folder):
        if not _publish_warc(store, crawl, warc, report):
            return
    for part in crawl.parts():
        if not _publish_part(store, crawl, part, index, report, columns.get(_key(crawl, part))):
            return
    journal = crawl.journal(reextraction)
    delta_file = crawl.folder / ".index-delta.parquet"
    if not delta_file.exists():  # written once: a repeated publication sends the same bytes
        entries = [entry for part in journal.values() for entry in from_json(part.get("index", []))]
        write_index_file(delta_file, entries + crawl.notes())
    if _published(store, delta_file, delta_key(crawl.crawl_id), report) is None:
        return
    sealed_by = manifest_key(crawl.crawl_id)
    # unfinished, yet nobody held its lock: the crawl process died
    manifest = _manifest(
        info, journal, interrupted=info.get("finished_at") is None or info.get("stopped_early", False)
    )
    manifest["index"] = delta_key(crawl.crawl_id)
    spooled_manifest = crawl.folder / ".manifest.json"
    _write_json(spooled_manifest, manifest)
    if _published(store, spooled_manifest, sealed_by, report) is None:
        return
    report.manifests.append(sealed_by)
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
    crawl.record(
        {
            "key": key,
            "rows": len(ids),
            "bytes": size,
            "sha256": sha256,
            "languages": languages_of(columns),
            "extractor_versions": _distinct(columns, "extractor_version"),
            "article_ids": ids,
            "index": to_json(entries),
        }
    )
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


def languages_of(table: pa.Table) -> dict[str, int]:
    """Rows per language: what ``newsarchive ls`` and ``pull --lang`` know without the file.

    Counted in Python, as :func:`_distinct` is, not with pyarrow.compute (``value_counts``,
    ``unique``): importing it took 24 ms of a crawl's start or close, for a few hundred values.
    """
    if "language" not in table.column_names:
        return {}
    return dict(Counter(table.column("language").to_pylist()).most_common())


def _distinct(table: pa.Table, column: str) -> list[str]:
    if column not in table.column_names:
        return []
    return sorted({value for value in table.column(column).to_pylist() if value is not None})


def _fresh(index: ArchiveIndex, article_id: str, version: int, key: str) -> bool:
    """Not held by another file at this version or a later one."""
    held = index.articles.get(article_id)
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


def _manifest(info: dict, journal: dict[str, dict], interrupted: bool) -> dict:
    files = sorted(
        ({k: v for k, v in e.items() if k != "index"} for e in journal.values() if "kind" not in e),
        key=lambda e: e["key"],
    )
    warcs = sorted(
        ({k: v for k, v in e.items() if k != "kind"} for e in journal.values() if e.get("kind") == "warc"),
        key=lambda e: e["key"],
    )
    return {
        "crawl_id": info["crawl_id"],
        "schema_version": SCHEMA_VERSION,
        "newsarchive_version": version("newsarchive"),
        **_copied(info),
        "interrupted": interrupted,
        "extractor_versions": sorted({v for e in files for v in e.get("extractor_versions", [])}),
        "rows": sum(e["rows"] for e in files),
        "bytes": sum(e["bytes"] for e in files),
        "files": files,
        "warcs": warcs,
    }


def discovery_in(store: Store, manifest: str, damaged: list[str]) -> dict[str, dict]:
    """The discovery validators a manifest keeps (none if its run left any page unread): each
    a page's URL with its validators, strings a request header may carry; the manifest or an
    entry that is not is left out and named in ``damaged``."""
    try:
        stated = loads_bounded(read_capped(store, manifest, MANIFEST_MAX_BYTES), MANIFEST_MAX_BYTES, manifest)
        discovery = stated.get("discovery", {}) if isinstance(stated, dict) else None
    except StoreError:
        return {}
    except ValueError as exc:  # Damaged, DamagedJSON
        damaged.append(f"{exc}; its discovery validators are not used")
        return {}
    if not isinstance(discovery, dict):
        damaged.append(f"{manifest}: its discovery is no object; not used")
        return {}
    kept = {url: page for url, page in discovery.items() if _is_discovery_page(url, page)}
    if len(kept) < len(discovery):
        left_out = ", ".join(shown(url) for url in list(discovery.keys() - kept.keys())[:3])
        damaged.append(
            f"{manifest}: {len(discovery) - len(kept)} discovery entries are not a page's validators "
            f"(such as {left_out}); left out"
        )
    return kept


def _is_discovery_page(url: str, page: object) -> bool:
    """A URL of the web with what the spider asks it conditionally with (see ``_unchanged``)."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError:  # such as an unclosed IPv6 bracket
        return False
    return (
        scheme in ("http", "https")
        and isinstance(page, dict)
        and page.keys() <= _DISCOVERY_FIELDS
        and all(
            value is None or (isinstance(value, str) and _HEADER_VALUE.fullmatch(value))
            for value in page.values()
        )
    )


def spool_for(store: Store, folder: str | None = None, claim_unmarked: bool = False) -> Spool:
    """The spool of ``store``'s archive, in ``folder``; by default ``.spool`` in a local archive,
    else ``output/.spools/s3-<bucket>-<digest of bucket and prefix>``. :class:`SpoolMismatch`
    if it records another archive, or holds crawls that record none (unless ``claim_unmarked``,
    which ``flush`` asks for: its operator names the archive). A local archive's own ``.spool``
    is always its own, wherever the folder was moved."""
    archive = archive_identity(store)
    if folder:
        root = Path(folder)
    elif isinstance(store, LocalStore):
        root = store.root / ".spool"
    else:
        digest = hashlib.sha256(archive.encode()).hexdigest()[:16]
        root = Path("output") / ".spools" / f"s3-{store.bucket}-{digest}"
    if root.is_symlink() or (root.exists() and not root.is_dir()):
        raise SpoolMismatch(
            f"spool {root} is {'a symbolic link' if root.is_symlink() else 'not a folder'}; not used "
            "(newsarchive writes and cuts files in its spool: name a folder itself with --spool)"
        )
    spool = Spool(root)
    own = isinstance(store, LocalStore) and root.resolve() == (store.root / ".spool").resolve()
    recorded = spool.archive() if own else None
    if recorded is not None and recorded != archive and os.path.isabs(recorded):
        (root / SPOOL_ARCHIVE).unlink()  # the folder was moved: this is still its spool
    spool.bind(archive, claim_unmarked=claim_unmarked or own)
    legacy = Spool(LEGACY_SPOOL)
    unclaimed = [] if folder or own or (legacy.root / SPOOL_ARCHIVE).exists() else legacy.crawl_ids()
    if unclaimed:
        spool.unclaimed = (
            f"{legacy.root} holds {len(unclaimed)} crawl(s) spooled by an older newsarchive, which "
            f"recorded no archive: not published. If they were all crawled for {archive}: "
            f"newsarchive flush --archive {archive} --spool {legacy.root}"
        )
    return spool
