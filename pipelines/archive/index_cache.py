"""Index files a crawl has read before, kept in its spool as arrays it maps instead of reading.

A crawl needs every entry of the archive's index to tell a new article from a known one. Read
from the store, an index file is downloaded, checked whole and sorted into arrays at every run:
at five million entries that took 13 s and 1.2 GB before the first request. Index files never
change under their key (a store refuses to overwrite one with other bytes; a merge writes a new
key), and the big ones, the bases of the upper tiers, are rewritten O(log n) times in an
archive's life: so a crawl keeps each one it read as the sorted arrays of a
:class:`~pipelines.archive.held.Segment` (one file of its columns, one of its account) in
``<spool>/index-cache/<digest of key and tag>/``, and the next run on this machine maps them
(``mmap``): looking a key up reads a few pages of them, and memory no longer grows with the
archive. A run that finds no copy (another machine, a new base) reads the file as before and
leaves one.

What is kept is checked before it is used, never trusted for being ours: the spool is a folder
others may write to, and a disk may fail. A mapped file changed under the crawl would crash it
(SIGBUS, cut short) or mislead it, so only folders and files of this user's alone, writable by
no other, are read (written 0700 and 0600), never through a link. Its object's tag
(:meth:`Store.object_tags`: size and modification time locally, size and ETag on S3) must be
the one listed now, so an object replaced under its key is read again; every column must be a
regular file of its dtype and length, match the CRC-32 written with it, keep its keys sorted and
its pointers within the columns they point into; its account has a CRC-32 too, and what it says
of the index file is checked by the reader as that file's metadata would be. All of that is read
with plain reads, a few MB at a time, not through the map (a page read through the map would
count as the crawl's own memory). A copy that fails is removed and the file read from the store;
a copy that cannot be written is only a warning. The folder holds the copies of the index files
a run reads and that are still listed, and nothing else: the others are removed when it reads
the index (:meth:`IndexCache.prune`).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import mmap
import os
import re
import secrets
import shutil
import stat
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

from pipelines.archive.held import COLUMN_DTYPES, FENCE, PackedNames, Segment
from pipelines.archive.warc import open_regular
from pipelines.runtime.jsondata import DamagedJSON, is_count, loads_bounded

logger = logging.getLogger(__name__)

CACHE_FOLDER = "index-cache"  # <spool>/index-cache/: the spool ignores a folder with no crawl.json
# Index files of fewer entries are read from the store each run: the deltas and the bases of the
# lower tiers, a few hundred thousand entries together at most, are cheaper to read than to check.
CACHE_MIN_ROWS = 1 << 16
_FORMAT = 1
_ABOUT = "segment.json"  # a CRC-32 in hex, a line break, then the account: rows, checksums, names
_DATA = "columns.bin"  # every column, one after the other (see layout): one descriptor per map
_PAGE = 4096
_ABOUT_MAX_BYTES = 1 << 20  # its account: outcomes, the keys a base replaces, ids that are no sha256
_CHUNK = 8 << 20  # bytes of a column read at a time to check it (a multiple of FENCE values of any dtype)
_ENTRY = re.compile(r"[0-9a-f]{40}")
_WRITING = re.compile(r"\.writing-[0-9]+-[0-9a-f]{8}")
_ABANDONED_AFTER_S = 3600  # a copy still being written after an hour was left by a killed run
# the columns of a copy: the segment's, and its part keys (PackedNames: bytes, and offsets)
_DTYPES = {**COLUMN_DTYPES, "file_names": np.uint8, "file_offsets": np.int64}
_SEARCHED = ("a0", "u0", "t0", "v0")  # the first word of each table's keys: searched, through fences
_SORTED = (*_SEARCHED, "file_offsets")  # in order (the names' offsets: never decreasing)
_SAME_LENGTH = (
    ("a0", "a1", "a2", "a3", "a_version", "a_last", "a_file", "a_text"),
    ("u0", "u1", "u_article"),
    ("t0", "t1", "t_article"),
    ("v0", "v1", "v_outcome", "v_last"),
)


class DamagedCopy(ValueError):
    """A kept copy that is not what it says: removed, and its index file read from the store."""


@dataclass(frozen=True)
class Cached:
    """An index file as a run found it: its entries (whose ``files`` are the part keys it
    names) and what it says of itself (``about``: the fields of
    :class:`~pipelines.archive.index.CheckedIndexFile`)."""

    segment: Segment
    about: dict


class IndexCache:
    """The copies of index files in one spool (see the module's docstring)."""

    def __init__(self, root: Path):
        self.root = root
        self._refused = False  # the folder is not this user's alone: said once, then not used

    def get(self, key: str, tag: str) -> Cached | None:
        """The copy of ``key`` as the store tags it now, mapped; None when there is none (a
        damaged one is removed, with a warning)."""
        folder = self._folder(key, tag)
        if not tag or not os.path.lexists(folder) or not self.usable():
            return None
        try:
            return _opened(folder, key, tag)
        except (DamagedCopy, DamagedJSON, OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("index cache: the copy of %s is not used (%s); read from the store", key, exc)
            _remove(folder)
            return None

    def put(self, key: str, tag: str, cached: Cached) -> Cached | None:
        """Keep ``cached`` for the next run; the copy, mapped (None if it could not be written)."""
        folder = self._folder(key, tag)
        writing = self.root / f".writing-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            with contextlib.suppress(FileExistsError):
                self.root.mkdir(mode=0o700)
            if not tag or not self.usable():
                return None
            writing.mkdir(mode=0o700)
            _write(writing, key, tag, cached)
            try:
                writing.rename(folder)
            except OSError:  # another run kept it first: the same bytes
                _remove(writing)
        except OSError as exc:
            why = exc.strerror or exc
            logger.warning("index cache: %s not kept (%s); the next run reads it again", key, why)
            _remove(writing)
            return None
        return self.get(key, tag)

    def discard(self, key: str, tag: str) -> None:
        """Remove the copy of ``key`` (found wrong by its reader)."""
        _remove(self._folder(key, tag))

    def prune(self, listed: dict[str, str]) -> None:
        """Remove the copies of index files not listed now with these tags (merged away, or
        replaced), and copies a killed run left half written."""
        if not self.usable():
            return
        live = {self._folder(key, tag).name for key, tag in listed.items()}
        try:
            paths = list(self.root.iterdir())
        except OSError:  # removed meanwhile: nothing to prune
            return
        for path in paths:
            unlisted = _ENTRY.fullmatch(path.name) and path.name not in live
            if unlisted or (_WRITING.fullmatch(path.name) and _age_s(path) > _ABANDONED_AFTER_S):
                _remove(path)

    def usable(self) -> bool:
        """Whether the folder is this user's own and no one else may write in it: a copy is
        mapped, so one that another user could change under the crawl (cut short: SIGBUS) or
        plant is never read, nor is a folder reached through a link."""
        try:
            _check_private(self.root.lstat(), stat.S_ISDIR)
        except (OSError, DamagedCopy) as exc:
            if not self._refused and os.path.lexists(self.root):
                logger.warning("index cache: %s not used (%s)", self.root, exc)
            self._refused = True
            return False
        return True

    def _folder(self, key: str, tag: str) -> Path:
        return self.root / hashlib.sha256(f"{key}\0{tag}".encode("utf-8", "surrogatepass")).hexdigest()[:40]


def layout(rows: dict[str, int]) -> dict[str, int]:
    """Where each column starts in a copy's data file: one after the other in :data:`_DTYPES`'
    order, each at a page boundary (a view of the map is aligned); the file's size last."""
    starts, end = {}, 0
    for name, dtype in _DTYPES.items():
        starts[name] = -(-end // _PAGE) * _PAGE
        end = starts[name] + rows[name] * np.dtype(dtype).itemsize
    return {**starts, "": end}


def _write(folder: Path, key: str, tag: str, cached: Cached) -> None:
    segment = cached.segment
    names, offsets = PackedNames.pack(list(segment.files))
    columns = {**segment.columns(), "file_names": names, "file_offsets": offsets}
    rows = {name: len(column) for name, column in columns.items()}
    checksums = {}
    with _created(folder / _DATA) as handle:
        for name, start in layout(rows).items():
            handle.truncate(start)  # the gap to the page boundary reads as zeros
            handle.seek(start)
            if name:
                values = np.ascontiguousarray(columns[name], dtype=_DTYPES[name])
                values.tofile(handle)
                checksums[name] = zlib.crc32(values.data)
    about = {
        "format": _FORMAT,
        "key": key,
        "tag": tag,
        "rows": rows,
        "crc32": checksums,
        "outcomes": segment.outcomes.names,
        "odd_ids": sorted(segment.odd_ids.values()),
        "index_file": cached.about,
    }
    text = json.dumps(about, sort_keys=True)
    if len(text) > _ABOUT_MAX_BYTES:  # ids that are no sha256 by the thousand: read each run instead
        raise OSError(errno.EFBIG, "its account is too big to keep")
    with _created(folder / _ABOUT) as handle:
        handle.write(f"{zlib.crc32(text.encode()):08x}\n{text}".encode())


def _opened(folder: Path, key: str, tag: str) -> Cached:
    _check_private(folder.lstat(), stat.S_ISDIR)
    with _regular(folder / _ABOUT) as handle:
        if os.fstat(handle.fileno()).st_size > _ABOUT_MAX_BYTES + 9:
            raise DamagedCopy(f"{_ABOUT} over {_ABOUT_MAX_BYTES} bytes")
        checksum, _, text = handle.read(_ABOUT_MAX_BYTES + 10).partition(b"\n")
    if checksum != b"%08x" % zlib.crc32(text):
        raise DamagedCopy(f"{_ABOUT}: not the CRC-32 written with it")
    about = loads_bounded(text, _ABOUT_MAX_BYTES, str(folder / _ABOUT))
    if not isinstance(about, dict) or (about.get("format"), about.get("key"), about.get("tag")) != (
        _FORMAT,
        key,
        tag,
    ):
        raise DamagedCopy("kept for another index file, or by another version")
    rows, outcomes = about["rows"], _strings(about["outcomes"])
    if not isinstance(rows, dict) or not all(is_count(rows.get(name), 1 << 40) for name in _DTYPES):
        raise DamagedCopy("no length of each column")
    for names in _SAME_LENGTH:
        if len({rows[name] for name in names}) != 1:
            raise DamagedCopy(f"columns {', '.join(names)} of different lengths")
    bounds = {
        "a_file": (-1, rows["file_offsets"] - 1),
        "a_text": (-1, rows["t0"]),
        "t_article": (0, rows["a0"]),
        "u_article": (0, rows["a0"]),
        "v_outcome": (-1, len(outcomes)),
        "file_offsets": (0, rows["file_names"] + 1),
    }
    starts = layout(rows)
    with _regular(folder / _DATA) as handle:
        if os.fstat(handle.fileno()).st_size != starts[""]:
            raise DamagedCopy(f"{_DATA}: not the size its columns take")
        fences = {
            name: _checked_column(
                handle, name, starts[name], rows[name], about["crc32"][name], bounds.get(name)
            )
            for name in _DTYPES
        }
        fences = {name: fences[name] for name in _SEARCHED}
        mapped = mmap.mmap(handle.fileno(), starts[""], access=mmap.ACCESS_READ) if starts[""] else b""
    columns = {
        name: np.frombuffer(mapped, _DTYPES[name], count=rows[name], offset=starts[name])
        if rows[name]
        else np.zeros(0, _DTYPES[name])
        for name in _DTYPES
    }
    offsets = columns.pop("file_offsets")
    if len(offsets) < 1 or offsets.item(0) != 0 or offsets.item(-1) != rows["file_names"]:
        raise DamagedCopy("file_offsets: not the bounds of the names")
    index_file = about["index_file"]
    if not isinstance(index_file, dict):
        raise DamagedCopy("no account of its index file")
    files = PackedNames(columns.pop("file_names"), offsets)
    segment = Segment.from_columns(columns, files, outcomes, _strings(about["odd_ids"]), fences)
    return Cached(segment, index_file)


def _checked_column(
    handle: BinaryIO, name: str, start: int, rows: int, checksum: object, bounds: tuple[int, int] | None
) -> np.ndarray | None:
    """Every :data:`FENCE`-th value of the column at ``start`` if it is searched (None if not),
    once every byte of it is read and found as written (taken as it is read: through the map,
    it would read every page)."""
    dtype = np.dtype(_DTYPES[name])
    handle.seek(start)
    left, crc, previous, fences = rows * dtype.itemsize, 0, None, []
    while left:  # a chunk is a multiple of FENCE values: each starts at a fence
        chunk = handle.read(min(_CHUNK, left))
        if not chunk:
            raise DamagedCopy(f"{name}: cut short")
        left -= len(chunk)
        crc = zlib.crc32(chunk, crc)
        values = np.frombuffer(chunk, dtype)
        if name in _SEARCHED:
            fences.append(values[::FENCE].copy())
        if name in _SORTED and len(values):
            if (previous is not None and values[0] < previous) or bool(np.any(values[1:] < values[:-1])):
                raise DamagedCopy(f"{name}: keys out of order")
            previous = values[-1]
        if bounds and len(values) and (values.min() < bounds[0] or values.max() >= bounds[1]):
            raise DamagedCopy(f"{name}: a row points outside {bounds}")
    if crc != checksum:
        raise DamagedCopy(f"{name}: CRC-32 {crc} where {checksum} was written")
    if name not in _SEARCHED:
        return None
    return np.concatenate(fences) if fences else np.zeros(0, dtype)


def _check_private(info: os.stat_result, kind: Callable[[int], bool]) -> None:
    """:class:`DamagedCopy` unless ``info`` is of ``kind``, this user's, and writable by no other."""
    if not kind(info.st_mode) or info.st_uid != os.geteuid() or info.st_mode & 0o022:
        raise DamagedCopy("not this user's alone, a link, or of another kind")


@contextlib.contextmanager
def _regular(path: Path) -> Iterator[BinaryIO]:
    """``path`` opened for reading if it is a regular file of this user's alone (no link followed)."""
    with os.fdopen(open_regular(path), "rb") as handle:
        _check_private(os.fstat(handle.fileno()), stat.S_ISREG)
        yield handle


@contextlib.contextmanager
def _created(path: Path) -> Iterator[BinaryIO]:
    """A new file at ``path``, readable and writable by this user alone (never one planted there)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        yield handle


def _strings(value: object) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise DamagedCopy("a list of names that is no list of strings")
    return value


def _age_s(path: Path) -> float:
    try:
        return time.time() - path.lstat().st_mtime
    except OSError:
        return 0.0


def _remove(path: Path) -> None:
    """Remove a copy (never following a link planted in its place)."""
    with contextlib.suppress(OSError):
        if path.is_symlink() or not path.is_dir():
            path.unlink()
        else:
            shutil.rmtree(path)
