"""Storage stage: where published archive objects live, behind one small interface.

Two back ends: a local folder (the default) and any S3-compatible object store. Both publish
a finished file under a key exactly once: an existing key is never overwritten (a second
publication of the same bytes is a no-op, so a publication that was interrupted can simply be
repeated), and a publication counts only once the store shows the same size and checksum.

Credentials, region and endpoint of the object store come from boto3's own chain
(``AWS_ACCESS_KEY_ID``..., profiles, ``AWS_ENDPOINT_URL``/``AWS_ENDPOINT_URL_S3``); nothing here
reads or prints them. Errors name the operation, key and the store's error code, never the
store's message or the request (which may echo credentials).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

from pipelines.archive.keys import shown
from pipelines.archive.storage.base import (
    KeyRefused,
    KeyTaken,
    Store,
    StoreError,
    checked_key,
    file_digests,
    refused_key,
)
from pipelines.runtime.uri import mask_uri

__all__ = [
    "KeyRefused",
    "KeyTaken",
    "LocalStore",
    "Store",
    "StoreError",
    "archive_identity",
    "checked_key",
    "confined",
    "file_digests",
    "read_up_to",
    "refused_key",
    "store_for",
    "write_atomically",
]


def read_up_to(handle: BinaryIO, limit: int) -> bytes:
    """At most ``limit`` bytes of ``handle`` and one more (so a caller can tell it is longer),
    a megabyte at a time: ``read(limit + 1)`` would reserve the whole limit at once."""
    data = bytearray()
    while len(data) <= limit and (chunk := handle.read(min(1 << 20, limit + 1 - len(data)))):
        data += chunk
    return bytes(data)


def write_atomically(
    target: Path, write: Callable[[BinaryIO], object], place: Callable[[str, Path], None] = os.replace
) -> None:
    """Write ``target`` whole or not at all: ``write`` fills a temporary file beside it, which
    is flushed to disk and then put in place (``os.replace``; ``os.link`` to never replace)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        place(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)


def confined(root: Path, key: str) -> Path:
    """The path of ``key`` under ``root``, once it is sure to stay inside it: :func:`refused_key`
    refuses none of its parts, and no symbolic link inside ``root`` leads out of it."""
    path = root / checked_key(str(root), key)
    if not path.resolve().is_relative_to(root.resolve()):
        raise KeyRefused(f"{root}: key {shown(key)} leads outside it through a link; refused")
    return path


def _link_or_copy(source: Path, target: Path) -> None:
    """``source`` at ``target`` too; FileExistsError if ``target`` exists."""
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(source, target)
    except FileExistsError:
        raise
    except OSError:  # another file system, or one without hard links

        def copy(handle: BinaryIO) -> None:
            with source.open("rb") as data:
                shutil.copyfileobj(data, handle, 1 << 20)

        write_atomically(target, copy, place=os.link)


def _keys_in_order(folder: Path, prefix: str, start_after: str | None) -> Iterator[str]:
    """The keys of the regular files under ``folder`` (whose keys start with ``prefix``) after
    ``start_after``, in S3's order, read as they are yielded: code points sort as UTF-8 bytes do,
    and a folder sorts by its name and a slash, so its keys come where S3 lists them. A folder
    whose keys all sort before ``start_after`` is not read; nor a linked folder, a link, or a dot
    name (temporary files and the spool: no object of the archive)."""
    names = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:  # an unreadable folder lists nothing
        for entry in entries:
            if entry.name.startswith("."):
                continue
            if entry.is_dir(follow_symlinks=False):
                names.append(entry.name + "/")
            elif entry.is_file(follow_symlinks=False):
                names.append(entry.name)
    for name in sorted(names):
        key = prefix + name
        if not name.endswith("/"):
            if start_after is None or key > start_after:
                yield key
        elif start_after is None or key > start_after or start_after.startswith(key):
            yield from _keys_in_order(folder / name, key, start_after)


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as left, b.open("rb") as right:
        while chunk := left.read(1 << 20):
            if chunk != right.read(len(chunk)):
                return False
    return True


class LocalStore:
    """An archive root on the local file system. Each object appears whole and never replaces
    another: a spooled file on the same file system is hard-linked into place (it was flushed
    when spooled, and the spool never changes a file in place); from elsewhere it is copied
    under a temporary name beside its final place, flushed, then linked into place.

    Nothing outside the root is read, written, deleted or listed: a key :func:`refused_key`
    refuses, or whose path resolves outside the root (through a symbolic link inside it), is a
    :class:`KeyRefused`; a listing holds regular files only, no symbolic link."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.uri = str(root)

    def _path(self, key: str) -> Path:
        return confined(self.root, key)

    def publish(self, source: Path, key: str) -> str:
        target = self._path(key)
        try:
            _link_or_copy(source, target)
        except FileExistsError:
            if not _same_bytes(source, target):
                raise KeyTaken(f"{self.uri}: {key} exists with other content; not overwritten") from None
        except OSError as exc:
            raise StoreError(f"{self.uri}: cannot write {key}: {exc.strerror or exc}") from None
        try:
            with self._path(key).open("rb") as handle:
                return hashlib.file_digest(handle, "sha256").hexdigest()
        except OSError as exc:
            raise StoreError(f"{self.uri}: cannot read {key}: {exc.strerror or exc}") from None

    def object_keys(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        base = self._path(prefix.removesuffix("/")) if prefix else self.root
        if not base.is_dir() or base.is_symlink():
            return
        yield from _keys_in_order(base, prefix.removesuffix("/") + "/" if prefix else "", start_after)

    def object_tags(self, prefix: str = "") -> dict[str, str]:
        tags = {}
        for key in self.object_keys(prefix):
            with contextlib.suppress(OSError):  # removed since it was listed
                info = self._path(key).stat()
                tags[key] = f"{info.st_size}-{info.st_mtime_ns}-{info.st_ino}"
        return tags

    def read(self, key: str) -> bytes:
        try:
            return self._path(key).read_bytes()
        except OSError as exc:
            raise StoreError(f"{self.uri}: cannot read {key}: {exc.strerror or exc}") from None

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        with self.stream(key) as handle:
            handle.seek(offset)
            return handle.read(length)

    @contextlib.contextmanager
    def stream(self, key: str) -> Iterator[BinaryIO]:
        try:
            handle = self._path(key).open("rb")
        except OSError as exc:
            raise StoreError(f"{self.uri}: cannot read {key}: {exc.strerror or exc}") from None
        with handle:
            yield handle

    def delete(self, key: str) -> None:
        try:
            self._path(key).unlink(missing_ok=True)
        except OSError as exc:
            raise StoreError(f"{self.uri}: cannot delete {key}: {exc.strerror or exc}") from None


def store_for(uri: str, **s3_options: float) -> Store:
    """The back end for an ``--archive`` value: a path, a file:// URI or s3://bucket/prefix."""
    parsed = urlsplit(uri)
    if parsed.scheme == "s3":
        from pipelines.archive.storage.s3 import S3Store

        return S3Store(uri, **s3_options)
    if parsed.scheme == "file":
        return LocalStore(parsed.path)
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path, or a Windows drive letter
        return LocalStore(uri)
    raise ValueError(
        f"archive {mask_uri(uri)!r}: unsupported scheme {parsed.scheme}:// "
        "(use a folder, file:// or s3://; any S3-compatible store is s3:// "
        "with AWS_ENDPOINT_URL set)"
    )


def archive_identity(store: Store) -> str:
    """What tells one archive from another (its spool and its lock record it): a folder's
    absolute path; a bucket and prefix (``store.uri``), whatever endpoint reaches them."""
    return str(Path(store.root).resolve()) if isinstance(store, LocalStore) else store.uri


def __getattr__(name: str) -> object:
    """``S3Store`` on demand: boto3 (24 MB) is imported only by crawls that archive to S3."""
    if name == "S3Store":
        from pipelines.archive.storage.s3 import S3Store

        return S3Store
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
