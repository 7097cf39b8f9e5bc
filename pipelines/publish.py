"""Publishing: parts wait in a local spool until the store holds them; a manifest seals each run.

The spool has one folder per crawl, laid out like the archive::

    <spool>/<crawl id>/crawl.json            start time, outlets; end time once the crawl closed
    <spool>/<crawl id>/.lock                 held (flock) by the crawl while it runs
    <spool>/<crawl id>/outlet=.../part-*.parquet   parts not yet published
    <spool>/<crawl id>/published.jsonl       one line per part the store holds, checked

A crawl publishes each part as soon as it is spooled (:class:`Archive`). A part is removed from
the spool only after the store holds it (same size and checksum) and the journal says so; the
manifest ``_manifests/<crawl id>.json`` is published last, then the folder goes. Every step can
be repeated, so a crawl killed at any point is finished by the next run (or ``newsarchive
flush``): nothing is lost, nothing is published twice. A crawl that died before closing gets a
manifest with ``"interrupted": true``; the articles it had not yet written are crawled again.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.schema import SCHEMA_VERSION
from pipelines.storage import LocalStore, Store, StoreError, write_atomically

logger = logging.getLogger(__name__)

MANIFESTS = "_manifests"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_json(target: Path, data: dict) -> None:
    write_atomically(target, lambda handle: handle.write(json.dumps(data, indent=1).encode()))


def _parts(folder: Path) -> list[Path]:
    """Spooled parts, not the temporary files of parts being written."""
    return sorted(p for p in folder.rglob("*.parquet") if not p.name.startswith("."))


class SpooledCrawl:
    """One crawl's folder in the spool, locked by whoever holds this object."""

    def __init__(self, folder: Path, lock_fd: int):
        self.folder = folder
        self.crawl_id = folder.name
        self._lock_fd = lock_fd

    @property
    def info(self) -> dict:
        return json.loads((self.folder / "crawl.json").read_text(encoding="utf-8"))

    def write_info(self, info: dict) -> None:
        _write_json(self.folder / "crawl.json", info)

    def finish(self) -> None:
        """The crawl closed: its manifest will not say ``interrupted``."""
        self.write_info(self.info | {"finished_at": _now()})

    def write_part(self, key: str, table: pa.Table) -> int:
        """Spool ``table`` as the part ``key``; return its size in bytes."""
        target = self.folder / key
        write_atomically(target, lambda handle: pq.write_table(table, handle, compression="zstd"))
        return target.stat().st_size

    def parts(self) -> list[Path]:
        return _parts(self.folder)

    def journal(self) -> dict[str, dict]:
        """Parts the store holds, by key (a line may repeat after a kill; the last one counts)."""
        path = self.folder / "published.jsonl"
        if not path.exists():
            return {}
        entries = {}
        for line in path.read_text(encoding="utf-8").splitlines():
            # a line cut short by a kill is no entry: its part is still in the spool
            if line.strip():
                with contextlib.suppress(json.JSONDecodeError, KeyError):
                    entry = json.loads(line)
                    entries[entry["key"]] = entry
        return entries

    def record(self, entry: dict) -> None:
        line = json.dumps(entry).encode() + b"\n"
        with (self.folder / "published.jsonl").open("a+b") as handle:
            if handle.seek(0, os.SEEK_END) > 0:
                handle.seek(-1, os.SEEK_END)
                if handle.read(1) != b"\n":  # a line cut short by a kill: end it first
                    line = b"\n" + line
            handle.write(line)
            handle.flush()
            os.fsync(handle.fileno())

    def release(self) -> None:
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


class Spool:
    """The local folder where parts wait for the store."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

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
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if (p / "crawl.json").exists())

    @staticmethod
    def _lock(folder: Path) -> SpooledCrawl | None:
        fd = os.open(folder / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        return SpooledCrawl(folder, fd)


class ArchiveIndex:
    """What the archive holds: article id -> key of the file that holds it.

    Manifests list their files' ids; a part no manifest covers yet (its crawl is still being
    published, or was killed) is read itself. :meth:`refresh` reads only the objects it has not
    read before, so a run reads each manifest once however often it looks again.
    """

    def __init__(self) -> None:
        self.ids: dict[str, str] = {}
        self.complete = False  # the store was read (False: unreadable, the spool is all we know)
        self._read: set[str] = set()

    def __contains__(self, article_id: str) -> bool:
        return article_id in self.ids

    def refresh(self, store: Store) -> None:
        """Read what is new in the store; raises :class:`StoreError` if it cannot be listed or read."""
        keys = list(store.object_keys())
        covered: set[str] = set()
        for key in keys:
            if not (key.startswith(f"{MANIFESTS}/") and key.endswith(".json")):
                continue
            if key in self._read:
                continue
            try:
                files = {entry["key"]: entry["article_ids"] for entry in json.loads(store.read(key))["files"]}
            except (ValueError, KeyError, TypeError):
                logger.warning("not a manifest, ignored: %s", key)
                files = {}
            self._read.add(key)
            covered.update(files)
            for file_key, file_ids in files.items():
                self.add(file_ids, file_key)
                self._read.add(file_key)
        for key in keys:
            if key.endswith(".parquet") and key not in covered and key not in self._read:
                self.add(_article_ids(store.read(key), key), key)
                self._read.add(key)
        self.complete = True

    def add(self, article_ids: Iterable[str], key: str) -> None:
        self.ids.update(dict.fromkeys(article_ids, key))

    def add_spool(self, spool: Spool) -> None:
        """Parts waiting in the spool count as archived; their key is the one they will have."""
        for crawl_id in spool.crawl_ids():
            folder = spool.root / crawl_id
            for part in _parts(folder):
                self.add(_article_ids(part.read_bytes(), str(part)), part.relative_to(folder).as_posix())


def archived_ids(store: Store) -> dict[str, str]:
    """Every article id the store holds, mapped to the key of its file."""
    index = ArchiveIndex()
    index.refresh(store)
    return index.ids


def _article_ids(parquet: bytes, name: str) -> list[str]:
    """The ``article_id`` column of a Parquet file; none (and a warning) if it is unreadable."""
    try:
        return _id_column(io.BytesIO(parquet))
    except (pa.ArrowException, ValueError, KeyError):
        logger.warning("not a readable archive part, ignored: %s", name)
        return []


def _id_column(parquet: Path | io.BytesIO) -> list[str]:
    # ParquetFile, not read_table, which would import pyarrow.dataset (12 MB) for nothing
    return pq.ParquetFile(parquet).read(columns=["article_id"]).column(0).to_pylist()


@dataclass
class PublishReport:
    files: int = 0
    bytes: int = 0
    manifests: list[str] = field(default_factory=list)
    duplicate_rows: int = 0  # rows someone else archived while these waited; not published
    pending_files: int = 0
    pending_crawls: list[str] = field(default_factory=list)
    busy_crawls: list[str] = field(default_factory=list)  # still running, or being flushed
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


def publish_spool(store: Store, spool: Spool, index: ArchiveIndex | None = None) -> PublishReport:
    """Publish every crawl in the spool that nobody holds, oldest first.

    ``index`` is what the caller knows of the archive, up to date; without one it is read here.
    """
    report = PublishReport()
    crawl_ids = spool.crawl_ids()
    if not crawl_ids:
        return report
    if index is None:
        index = ArchiveIndex()
        _refresh(index, store, report)
    for crawl_id in crawl_ids:
        crawl = spool.claim(crawl_id)
        if crawl is None:
            report.busy_crawls.append(crawl_id)
            continue
        try:
            if index.complete and not report.errors:
                _publish_crawl(store, crawl, index, report)
            if crawl.folder.exists():
                report.pending_crawls.append(crawl_id)
                report.pending_files += len(crawl.parts())
        finally:
            crawl.release()
    return report


class Archive:
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
        self._parts = 0
        self._publishing = True

    def holds(self, article_id: str) -> bool:
        return article_id in self.index

    def open(self, crawl_id: str, outlets: Iterable[str]) -> PublishReport:
        """Read the index, publish what earlier runs left in the spool, start this crawl's folder."""
        report = PublishReport()
        _refresh(self.index, self.store, report)
        if report.errors:
            logger.warning(
                "archive not readable, deduplicating against the spool only: %s", report.errors[-1]
            )
        self.index.add_spool(self.spool)
        report.add(publish_spool(self.store, self.spool, self.index))
        self._publishing = self.index.complete and not report.errors
        self.crawl = self.spool.open_crawl(crawl_id, outlets)
        return report

    def write_part(self, partition: str, table: pa.Table, publish: bool = True) -> SpooledPart:
        """Spool ``table`` as the next part of ``partition``; publish it too if asked (and if the
        store works). The last parts of a crawl are only spooled: :meth:`close` marks the crawl
        finished (all its rows spooled) and then publishes them."""
        self._parts += 1
        key = f"{partition}/part-{self.crawl.crawl_id}-{self._parts:05d}.parquet"
        size = self.crawl.write_part(key, table)
        report = PublishReport()
        if publish and self._publishing:
            _publish_part(self.store, self.crawl, self.crawl.folder / key, self.index, report, table)
            self._publishing = not report.errors
        return SpooledPart(key, table.num_rows, size, report)

    def close(self) -> PublishReport:
        """The crawl is over: publish what is left in the spool (this crawl's and any earlier
        run's), reading only what others published meanwhile, and seal each with its manifest."""
        self.crawl.finish()
        self.crawl.release()
        report = PublishReport()
        _refresh(self.index, self.store, report)  # only what others published meanwhile
        report.add(publish_spool(self.store, self.spool, self.index))
        return report


def _refresh(index: ArchiveIndex, store: Store, report: PublishReport) -> None:
    try:
        index.refresh(store)
    except StoreError as exc:
        report.errors.append(str(exc))


def _publish_crawl(store: Store, crawl: SpooledCrawl, index: ArchiveIndex, report: PublishReport) -> None:
    for part in crawl.parts():
        if not _publish_part(store, crawl, part, index, report):
            return
    info = crawl.info
    manifest_key = f"{MANIFESTS}/{crawl.crawl_id}.json"
    # unfinished, yet nobody held its lock: the crawl process died
    manifest = _manifest(info, crawl.journal(), interrupted=info.get("finished_at") is None)
    manifest_file = crawl.folder / ".manifest.json"
    _write_json(manifest_file, manifest)
    if _published(store, manifest_file, manifest_key, report) is None:
        return
    report.manifests.append(manifest_key)
    shutil.rmtree(crawl.folder)


def _publish_part(
    store: Store,
    crawl: SpooledCrawl,
    part: Path,
    index: ArchiveIndex,
    report: PublishReport,
    table: pa.Table | None = None,
) -> bool:
    """Publish one spooled part (``table`` is its content, when the caller has it), without the
    rows another file holds meanwhile; False when the store failed (the part stays in the spool,
    and so should the ones after it)."""
    key = part.relative_to(crawl.folder).as_posix()
    try:  # the ids are all it takes, unless rows must go
        ids = _id_column(part) if table is None else table.column("article_id").to_pylist()
    except (pa.ArrowException, OSError, KeyError) as exc:
        report.errors.append(f"spooled part {part} is unreadable ({exc}); left for a look")
        logger.error("%s", report.errors[-1])
        return False
    fresh = [index.ids.get(i, key) == key for i in ids]
    if not all(fresh):  # archived elsewhere meanwhile (store down at open, or another crawler)
        report.duplicate_rows += len(ids) - sum(fresh)
        if not any(fresh):
            part.unlink()
            return True
        table = pq.ParquetFile(part).read() if table is None else table
        crawl.write_part(key, table.filter(pa.array(fresh)))
        ids = [i for i, keep in zip(ids, fresh, strict=True) if keep]
    sha256 = _published(store, part, key, report)
    if sha256 is None:
        return False
    size = part.stat().st_size
    crawl.record({"key": key, "rows": len(ids), "bytes": size, "sha256": sha256, "article_ids": ids})
    index.add(ids, key)
    part.unlink()
    report.files += 1
    report.bytes += size
    return True


def _published(store: Store, source: Path, key: str, report: PublishReport) -> str | None:
    """Publish ``source`` and return its sha256; on failure note why and return None. Callers
    stop there: the store is failing."""
    try:
        return store.publish(source, key)
    except StoreError as exc:
        report.errors.append(str(exc))
        logger.error("publication stopped, %s stays in the spool: %s", key, exc)
        return None


def _manifest(info: dict, journal: dict[str, dict], interrupted: bool) -> dict:
    files = sorted(journal.values(), key=lambda e: e["key"])
    return {
        "crawl_id": info["crawl_id"],
        "schema_version": SCHEMA_VERSION,
        "newsarchive_version": version("newsarchive"),
        "started_at": info["started_at"],
        "finished_at": info.get("finished_at"),
        "interrupted": interrupted,
        "outlets": info.get("outlets", []),
        "rows": sum(e["rows"] for e in files),
        "bytes": sum(e["bytes"] for e in files),
        "files": files,
    }


def spool_for(store: Store, folder: str | None = None) -> Spool:
    """The spool in ``folder``; by default ``.spool`` in a local archive, else ``output/.spool``."""
    if folder:
        return Spool(folder)
    return Spool(Path(store.root if isinstance(store, LocalStore) else "output") / ".spool")
