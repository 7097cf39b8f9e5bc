"""The spool: parts, WARCs and records wait in a local folder until the store holds them.

It has one folder per crawl, laid out like the archive::

    <spool>/<crawl id>/crawl.json            start time, outlets; end time once the crawl closed
    <spool>/<crawl id>/.lock                 held (flock) by the crawl while it runs
    <spool>/<crawl id>/outlet=.../part-*.parquet   parts not yet published
    <spool>/<crawl id>/_warc/*.warc.gz, *.cdxj    WARCs and their indexes not yet published
    <spool>/<crawl id>/_warc/*.warc.gz.open       the WARC being written (pipelines/archive/warc.py)
    <spool>/<crawl id>/published.jsonl       one line per part the store holds, checked
    <spool>/<crawl id>/notes.jsonl           index entries of articles fetched again, unchanged

A crawl's record (``crawl.json``) and journal (``published.jsonl``) become its manifest
(:meth:`pipelines.archive.manifest.Manifest.of_crawl`) when :mod:`pipelines.archive.publish` seals
it; both are read back as a manifest's reader takes them, and what no crawl writes there is
refused (:class:`SpoolRefused`), never published.

Each archive has a spool of its own, which records it (``<spool>/archive.json``, written when
the spool is first used): a spool that records another archive is refused, never published
into this one (:func:`spool_for`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa

from pipelines.archive.index import VISIT_OUTCOMES, from_json, read_part_entries, to_json
from pipelines.archive.keys import (
    CRAWL,
    WARC_FOLDER,
    BadKey,
    checked_crawl,
    checked_outlet,
    is_key,
    part_of,
    shown,
)
from pipelines.archive.manifest import (
    MANIFEST_MAX_BYTES,
    BadManifest,
    check_crawl_record,
    file_entry,
    warc_entry,
)
from pipelines.archive.rows import parquet_file
from pipelines.archive.schema import INDEX_SCHEMA
from pipelines.archive.storage import LocalStore, Store, archive_identity, read_up_to, write_atomically
from pipelines.archive.warc import open_regular
from pipelines.runtime.jsondata import DamagedJSON, loads_bounded
from pipelines.stages.dedup import url_key


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(target: Path, data: dict) -> None:
    write_atomically(target, lambda handle: handle.write(json.dumps(data, indent=1).encode()))


def _parts(folder: Path) -> list[Path]:
    """Spooled parts, not the temporary files of parts being written, nor links or files whose
    names are no part's key (:func:`pipelines.archive.publish._set_aside_strays` sets those aside)."""
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


def _journal_key(entry: dict, path: Path, crawl_id: str, reextraction: bool) -> str:
    """The key of a journal entry, once it is a key of what the entry says it is (a part, or a
    WARC with its index) written by this crawl (``crawl_id``; a ``reextraction`` copies its
    source's WARCs under their keys), and the entry has the counts a manifest sums, each field as
    a manifest's reader takes it, and index entries of its own part; else :class:`SpoolRefused`."""
    warc = entry.get("kind") == "warc"
    try:
        if "kind" in entry and not warc:
            raise BadKey(f"kind {shown(entry['kind'])} is no kind of file a crawl publishes")
        key = warc_entry(entry, crawl_id).key if warc else file_entry(entry, crawl_id, "part").key
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
    :func:`part_entries`, :func:`unchanged_entries`, :func:`visit_entries`): objects of
    :data:`INDEX_SCHEMA`'s fields and types, each naming a part (``file`` when they are a part's
    own), or (in the notes only) a visit: a URL, its key, an outcome, no article nor part; else
    :class:`SpoolRefused`."""
    if not isinstance(entries, list) or not all(isinstance(entry, dict) for entry in entries):
        raise SpoolRefused(f"{path}: index entries that are not a list of objects")
    for entry in entries:
        if not entry.keys() <= set(INDEX_SCHEMA.names):
            raise SpoolRefused(f"{path}: an index entry of other fields")
        if file is None and entry.get("outcome") is not None:
            _check_visit(entry, path)
            continue
        if not isinstance(entry.get("article_id"), str) or entry.get("outcome") is not None:
            raise SpoolRefused(f"{path}: an index entry of no article id, or an outcome in a part's entries")
        named = entry.get("file")
        if not (named == file if file else is_key(named, "part")):
            raise SpoolRefused(f"{path}: an index entry of {shown(named)}, not of {file or 'a part'}")
    try:
        parsed = from_json(entries)
        pa.Table.from_pylist(parsed, schema=INDEX_SCHEMA)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise SpoolRefused(f"{path}: an index entry of the wrong types ({shown(str(exc))})") from None
    return parsed


def _check_visit(entry: dict, path: Path) -> None:
    """A visit as :func:`visit_entries` writes it, or :class:`SpoolRefused`: one of
    :data:`VISIT_OUTCOMES`, a URL of at most :data:`_VISIT_URL_CHARS` under its own key (a wrong
    key would hold back another page), and no article, version or part."""
    url = entry.get("url")
    if entry["outcome"] not in VISIT_OUTCOMES:
        raise SpoolRefused(f"{path}: a visit of outcome {shown(str(entry['outcome']))}")
    try:
        own_key = (
            isinstance(url, str) and len(url) <= _VISIT_URL_CHARS and entry.get("url_key") == url_key(url)
        )
    except ValueError:  # no URL canonicalisation takes (a port out of range, a broken IPv6 host)
        own_key = False
    if not own_key:
        raise SpoolRefused(f"{path}: a visit whose URL is not under its own key")
    if any(entry.get(name) is not None for name in ("article_id", "file", "version", "text_hash")):
        raise SpoolRefused(f"{path}: a visit naming an article or a part")


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
            check_crawl_record(info)
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
_VISIT_URL_CHARS = 64 * 1024  # a URL longer than any server takes (most refuse past 8 KiB)
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


def spooled_entries(spool: Spool) -> Iterator[dict]:
    """Index entries of the parts waiting in the spool, under the keys they will have."""
    for crawl_id in spool.crawl_ids():
        folder = spool.root / crawl_id
        for part in _parts(folder):
            yield from read_part_entries(part, part.relative_to(folder).as_posix())


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
