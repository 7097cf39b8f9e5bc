"""What every store is: its interface, its errors, which keys it takes, and the digests it checks.

Kept apart from the back ends so that ``s3`` builds on it without importing the package that
imports ``s3`` on demand.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, Protocol

from pipelines.archive.keys import shown


class StoreError(Exception):
    """The store refused or failed a request; what was being published stays where it was."""


class KeyTaken(StoreError):
    """Another object, with different bytes, already has this key."""


class KeyRefused(StoreError):
    """The key could name something outside the archive; no request was made with it."""


def refused_key(key: object) -> str | None:
    """Why a store takes no request with ``key`` (None: it may). Keys are data, never paths:
    an absolute key, an empty, ``.`` or ``..`` segment, a backslash (a separator elsewhere) or a
    NUL byte is refused by every back end, whatever the object store itself would allow."""
    if not isinstance(key, str) or not key:
        return "not a key"
    if "\x00" in key or "\\" in key:
        return "holds a NUL byte or a backslash"
    if key.startswith("/"):
        return "is absolute"
    if any(part in ("", ".", "..") for part in key.split("/")):
        return "has an empty, . or .. part"
    return None


def checked_key(uri: str, key: object) -> str:
    """``key`` if a store may take it, else :class:`KeyRefused` (naming it safely)."""
    reason = refused_key(key)
    if reason is not None:
        raise KeyRefused(f"{uri}: key {shown(key)} {reason}; refused")
    return key


class Store(Protocol):
    uri: str  # for messages: never holds credentials

    def publish(self, source: Path, key: str) -> str:
        """Make ``source`` the object ``key`` and return its sha256; raise :class:`KeyTaken`
        rather than overwrite another object."""

    def object_keys(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        """Keys under ``prefix``, relative to the archive root, in the order S3 lists them (by
        their UTF-8 bytes within a folder; SeaweedFS lists a folder's keys before those of a
        folder whose name is longer); with ``start_after``, only the keys after it: a listing of
        what is new since a key seen before costs requests for the new keys, not the old ones."""

    def object_tags(self, prefix: str = "") -> dict[str, str]:
        """The keys :meth:`object_keys` lists, each with a tag that changes when the object's
        bytes do (with the same listing: no request per object); "" where the store gives none."""

    def read(self, key: str) -> bytes: ...

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``key`` from ``offset`` (fewer at its end): one record of a WARC."""

    def stream(self, key: str) -> contextlib.AbstractContextManager[BinaryIO]:
        """``key`` to read bit by bit (``read(n)``): a WARC of a gigabyte, hashed or copied."""

    def delete(self, key: str) -> None:
        """Remove ``key`` (gone already is fine); only superseded index files are deleted."""


def file_digests(path: Path, chunk_size: int) -> tuple[str, str, str]:
    """sha256 of the file, its MD5, and the multipart ETag S3 computes for parts of ``chunk_size``."""
    sha256, md5, part_md5s = hashlib.sha256(), hashlib.md5(), []
    with path.open("rb") as handle:
        while chunk := handle.read(chunk_size):
            sha256.update(chunk)
            md5.update(chunk)
            part_md5s.append(hashlib.md5(chunk).digest())
    multipart = f"{hashlib.md5(b''.join(part_md5s)).hexdigest()}-{max(len(part_md5s), 1)}"
    return sha256.hexdigest(), md5.hexdigest(), multipart
