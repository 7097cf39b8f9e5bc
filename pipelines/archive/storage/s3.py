"""The S3-compatible back end of the storage stage (imported only for ``s3://`` archives)."""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from functools import cached_property
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from s3transfer.utils import ChunksizeAdjuster

from pipelines.archive.storage.base import KeyTaken, StoreError, checked_key, file_digests
from pipelines.runtime.uri import mask_uri

_MD5_ETAG = re.compile(r"^[0-9a-f]{32}(-\d+)?$")
# At DEBUG these log each request whole: the endpoint with its user information, the session
# token among the headers. A crawl at --log-level DEBUG logs everything at DEBUG: never theirs.
for _wire in ("botocore", "boto3", "s3transfer", "urllib3"):
    logging.getLogger(_wire).setLevel(max(logging.getLogger(_wire).level, logging.INFO))


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
            raise ValueError(f"archive URI {mask_uri(uri)!r}: expected s3://bucket[/prefix]")
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
                "role); see docs/object-storage.md"
            )
        self._config = Config(connect_timeout=connect_timeout, read_timeout=read_timeout)
        self._refuses_second_create: bool | None = None

    @cached_property
    def client(self):
        """Made on first use: checking an ``--archive`` value costs no client."""
        try:
            client = self._session.client("s3", config=self._config)
        except ValueError:  # botocore's message shows the endpoint whole, credentials and all
            raise ValueError(
                f"{self.uri}: the S3 endpoint is no valid URL (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3 "
                "or the profile's endpoint_url)"
            ) from None
        for operation in ("PutObject", "CompleteMultipartUpload"):
            client.meta.events.register(f"before-parameter-build.s3.{operation}", _if_none_match)
        return client

    def _key(self, key: str) -> str:
        """The object's name in the bucket; S3 takes ``../x`` literally, this store refuses it."""
        key = checked_key(self.uri, key)
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

    def refuses_second_create(self, key: str, data: bytes) -> bool:
        """Whether the store honours ``If-None-Match: *``, which the archive's lease relies on:
        ``key`` is created if absent, then created again, which must be refused (412; 409 for a
        conditional write racing another). Asked once per store object: the verdict is kept."""
        if self._refuses_second_create is None:
            with self._errors("probe", key):
                answers = [self._create_if_absent(key, data) for _ in range(2)]
            self._refuses_second_create = not answers[-1]
        return self._refuses_second_create

    def _create_if_absent(self, key: str, data: bytes) -> bool:
        """One PutObject with ``If-None-Match: *``: True if the store wrote it."""
        try:
            self.client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*")
        except ClientError as exc:
            if _status(exc) in (409, 412):
                return False
            raise
        return True

    def object_keys(self, prefix: str = "", start_after: str | None = None) -> Iterator[str]:
        for key, _ in self._listed(prefix, start_after):
            yield key

    def object_tags(self, prefix: str = "") -> dict[str, str]:
        return {  # a store that lists no ETag gives no tag: nothing is kept of its objects
            key: f"{entry.get('Size')}-{entry['ETag']}" if entry.get("ETag") else ""
            for key, entry in self._listed(prefix)
        }

    def _listed(self, prefix: str, start_after: str | None = None) -> Iterator[tuple[str, dict]]:
        """Each object under ``prefix`` (after ``start_after``): its key, and what the listing says of it."""
        root = f"{self.prefix}/" if self.prefix else ""
        after = {"StartAfter": root + start_after} if start_after else {}
        with self._errors("list", prefix or "/"):
            pages = self.client.get_paginator("list_objects_v2").paginate(
                Bucket=self.bucket, Prefix=root + prefix, **after
            )
            for page in pages:
                for entry in page.get("Contents", []):
                    yield entry["Key"][len(root) :], entry

    def read(self, key: str) -> bytes:
        with self._errors("read", key):
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        with self._errors("read", key):
            byte_range = f"bytes={offset}-{offset + length - 1}"
            response = self.client.get_object(Bucket=self.bucket, Key=self._key(key), Range=byte_range)
            return response["Body"].read()

    @contextlib.contextmanager
    def stream(self, key: str) -> Iterator[BinaryIO]:
        with self._errors("read", key):
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
            try:
                yield body
            finally:
                body.close()

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            self.client.delete_object(Bucket=self.bucket, Key=self._key(key))

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
