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
import re
import tempfile
from collections.abc import Callable, Iterator
from functools import cached_property
from pathlib import Path
from typing import BinaryIO, Protocol
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.utils import ChunksizeAdjuster


class StoreError(Exception):
    """The store refused or failed a request; what was being published stays where it was."""


class KeyTaken(StoreError):
    """Another object, with different bytes, already has this key."""


class Store(Protocol):
    uri: str  # for messages: never holds credentials

    def publish(self, source: Path, key: str) -> str:
        """Make ``source`` the object ``key`` and return its sha256; raise :class:`KeyTaken`
        rather than overwrite another object."""

    def object_keys(self, prefix: str = "") -> Iterator[str]:
        """Keys under ``prefix``, relative to the archive root."""

    def read(self, key: str) -> bytes: ...


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


def _same_bytes(a: Path, b: Path) -> bool:
    if a.stat().st_size != b.stat().st_size:
        return False
    with a.open("rb") as left, b.open("rb") as right:
        while chunk := left.read(1 << 20):
            if chunk != right.read(len(chunk)):
                return False
    return True


class LocalStore:
    """An archive root on the local file system. Each object appears whole: it is copied under a
    temporary name beside its final place, flushed, then hard-linked into place, which fails
    rather than replaces when the name exists."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        self.uri = str(root)

    def publish(self, source: Path, key: str) -> str:
        target = self.root / key
        sha256 = hashlib.sha256()

        def copy(handle: BinaryIO) -> None:
            with source.open("rb") as data:
                while chunk := data.read(1 << 20):
                    sha256.update(chunk)
                    handle.write(chunk)

        try:
            write_atomically(target, copy, place=os.link)
        except FileExistsError:
            if not _same_bytes(source, target):
                raise KeyTaken(f"{self.uri}: {key} exists with other content; not overwritten") from None
        except OSError as exc:
            raise StoreError(f"{self.uri}: cannot write {key}: {exc.strerror or exc}") from None
        return sha256.hexdigest()

    def object_keys(self, prefix: str = "") -> Iterator[str]:
        base = self.root / prefix
        if not base.is_dir():
            return
        for path in sorted(base.rglob("*")):
            relative = path.relative_to(self.root)
            if path.is_file() and not any(part.startswith(".") for part in relative.parts):
                yield relative.as_posix()  # dot names are temporary files and the spool

    def read(self, key: str) -> bytes:
        try:
            return (self.root / key).read_bytes()
        except OSError as exc:
            raise StoreError(f"{self.uri}: cannot read {key}: {exc.strerror or exc}") from None


_MD5_ETAG = re.compile(r"^[0-9a-f]{32}(-\d+)?$")


class S3Store:
    """A bucket and prefix in an S3-compatible store.

    Uploads go through s3transfer (multipart above ``multipart_threshold``) with
    ``If-None-Match: *`` on PutObject and CompleteMultipartUpload, so a store that supports
    conditional writes refuses to replace an object. Before uploading, a HEAD tells whether the
    key already exists; after, a HEAD checks size and ETag (the MD5, or the multipart ETag for
    our part size). The ETag of the CompleteMultipartUpload response is not used: Ceph RGW
    leaves it empty. Where the ETag is no MD5 (SSE-KMS), the sha256 we store as object metadata
    stands in for it.
    """

    def __init__(
        self,
        uri: str,
        *,
        multipart_threshold: int = 8 << 20,
        multipart_chunksize: int = 8 << 20,
        connect_timeout: float = 10,
        read_timeout: float = 60,
    ):
        parts = urlsplit(uri)
        if parts.username or parts.password or "@" in parts.netloc:
            raise ValueError(
                "archive URI: put credentials in the environment or an AWS profile, not in the URI"
            )
        if not parts.netloc or parts.query or parts.fragment:
            raise ValueError(f"archive URI {uri!r}: expected s3://bucket[/prefix]")
        self.bucket = parts.netloc
        self.prefix = parts.path.strip("/")
        self.uri = f"s3://{self.bucket}/{self.prefix}".rstrip("/")
        self.transfer_config = TransferConfig(
            multipart_threshold=multipart_threshold, multipart_chunksize=multipart_chunksize
        )
        self._session = boto3.session.Session()
        if self._session.get_credentials() is None:
            raise ValueError(
                f"{self.uri}: no AWS credentials found (environment, profile, or instance "
                "role); see the README's object storage section"
            )
        self._config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout)

    @cached_property
    def client(self):
        """Made on first use: checking an ``--archive`` value costs no client."""
        client = self._session.client("s3", config=self._config)
        for operation in ("PutObject", "CompleteMultipartUpload"):
            client.meta.events.register(f"before-parameter-build.s3.{operation}", _if_none_match)
        return client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def publish(self, source: Path, key: str) -> str:
        size = source.stat().st_size
        chunk = ChunksizeAdjuster().adjust_chunksize(self.transfer_config.multipart_chunksize, size)
        sha256, md5, multipart = file_digests(source, chunk)
        expected_etag = multipart if size >= self.transfer_config.multipart_threshold else md5
        with self._errors("publish", key):
            existing = self._head(key)
            if existing is None:
                try:
                    self.client.upload_file(
                        str(source),
                        self.bucket,
                        self._key(key),
                        ExtraArgs={"Metadata": {"sha256": sha256}},
                        Config=self.transfer_config,
                    )
                except Exception as exc:
                    if _status(exc) != 412:  # 412: someone published this key meanwhile
                        raise
                existing = self._head(key)
            if existing is None:
                raise StoreError(f"{self.uri}: {key} uploaded but not found afterwards")
            etag = existing.get("ETag", "").strip('"')
            same = existing["ContentLength"] == size and (
                etag == expected_etag
                if _MD5_ETAG.match(etag)
                else existing.get("Metadata", {}).get("sha256") == sha256
            )
            if not same:
                raise KeyTaken(
                    f"{self.uri}: {key} exists with other content (size "
                    f"{existing['ContentLength']}, ETag {etag or 'none'}); not overwritten"
                )
        return sha256

    def object_keys(self, prefix: str = "") -> Iterator[str]:
        root = f"{self.prefix}/" if self.prefix else ""
        with self._errors("list", prefix or "/"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=root + prefix
            )
            for page in pages:
                for entry in page.get("Contents", []):
                    yield entry["Key"][len(root) :]

    def read(self, key: str) -> bytes:
        with self._errors("read", key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def _head(self, key: str) -> dict | None:
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if _status(exc) == 404:
                return None
            raise

    @contextlib.contextmanager
    def _errors(self, operation: str, key: str) -> Iterator[None]:
        """botocore's errors, reduced to what is safe to log: no request, no server message."""
        try:
            yield
        except StoreError:
            raise
        except Exception as exc:
            reason = _reason(exc)
            if reason is None:
                raise
            raise StoreError(f"{self.uri}: {operation} {key} failed: {reason}") from None


def _reason(exc: BaseException) -> str | None:
    """The S3 error code and status, or the kind of network failure; None if neither is inside.
    boto3's ``upload_file`` wraps errors in ``S3UploadFailedError``, so causes are followed."""
    if isinstance(exc, ClientError):
        return f"{exc.response.get('Error', {}).get('Code', 'error')} (HTTP {_status(exc)})"
    if isinstance(exc, BotoCoreError | OSError):
        return type(exc).__name__
    cause = exc.__cause__ or exc.__context__
    return _reason(cause) if cause is not None else None


def _if_none_match(params: dict, **_: object) -> None:
    params.setdefault("IfNoneMatch", "*")


def _status(exc: BaseException) -> int | None:
    if isinstance(exc, ClientError):
        return exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    cause = exc.__cause__ or exc.__context__
    return _status(cause) if cause is not None else None


def store_for(uri: str, **s3_options: float) -> LocalStore | S3Store:
    """The back end for an ``--archive`` value: a path, a file:// URI or s3://bucket/prefix."""
    parsed = urlsplit(uri)
    if parsed.scheme == "s3":
        return S3Store(uri, **s3_options)
    if parsed.scheme == "file":
        return LocalStore(parsed.path)
    if parsed.scheme == "" or len(parsed.scheme) == 1:  # a path, or a Windows drive letter
        return LocalStore(uri)
    raise ValueError(
        f"archive {uri!r}: unsupported scheme {parsed.scheme}:// "
        "(use a folder, file:// or s3://; any S3-compatible store is s3:// "
        "with AWS_ENDPOINT_URL set)"
    )
