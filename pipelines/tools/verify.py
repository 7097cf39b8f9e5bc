"""Checking the archive against its manifests: ``newsarchive verify``.

Every file a manifest lists must be there, with the size and sha256 the manifest gives, be
readable Parquet with the rows the manifest counts, and carry a schema version this code
reads; a manifest must be readable and of a known schema version; and no Parquet file of the
dataset may be in no manifest (a reader that goes by manifests would never see it; one that
globs the folders would, unchecked). Files a compaction replaced are out of the dataset; their
being still there is noted, not a problem. Each WARC a manifest lists, and its CDXJ index, must
be there with its size and sha256 and read back as whole records with matching digests and
the manifest's count (read as a stream, bodies never decoded: a WARC may be a gigabyte, a record
a gzip bomb), and no file under ``_warc/`` may be in no manifest. Derived objects are checked
too: every index file and template must be named as one, within its cap and readable, and every
manifest readable as the index reads it. Each problem is one line that names the object.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.archive.catalog import (
    Catalog,
    digest_mismatch,
    digest_problems,
    read_verified,
)
from pipelines.archive.index import (
    INDEX,
    Damaged,
    manifest_files,
    read_index_file,
)
from pipelines.archive.keys import (
    COMPACTED,
    TEMPLATE_FOLDER,
    WARC_FOLDER,
    former_index_name,
    is_key,
    manifest_key,
    shown,
)
from pipelines.archive.manifest import ArchivedFile, ArchivedWarc
from pipelines.archive.schema import SCHEMA_VERSIONS, VERSION_KEY
from pipelines.archive.storage import Store, StoreError
from pipelines.archive.templates import read_template
from pipelines.archive.warc import records


@dataclass
class Verification:
    runs: int = 0
    files: int = 0
    rows: int = 0
    bytes: int = 0
    warcs: int = 0
    warc_bytes: int = 0  # WARCs and their indexes
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth saying, not wrong


def file_problems(data: bytes, file: ArchivedFile) -> list[str]:
    """:func:`digest_problems`, then the file as Parquet: readable, its rows, its schema version."""
    return digest_problems(data, file) or _parquet_problems(data, file)


def _parquet_problems(data: bytes, file: ArchivedFile) -> list[str]:
    """The bytes of ``file`` as Parquet: readable, its rows, its schema version."""
    problems = []
    try:
        metadata = pq.ParquetFile(io.BytesIO(data)).metadata
    except (pa.ArrowException, OSError) as exc:
        return [f"{file.key}: not readable as Parquet ({exc})"]
    if metadata.num_rows != file.rows:
        problems.append(f"{file.key}: {metadata.num_rows} rows, the manifest says {file.rows}")
    version = (metadata.metadata or {}).get(VERSION_KEY.encode(), b"").decode()
    if version not in SCHEMA_VERSIONS:
        problems.append(f"{file.key}: schema version {version or 'missing'}, not one this newsarchive reads")
    return problems


class _Hashing:
    """A stream that hashes the bytes read through it (warcio reads a WARC through one)."""

    def __init__(self, stream: BinaryIO):
        self.stream, self.digest, self.seen = stream, hashlib.sha256(), 0

    def read(self, size: int = 1 << 20) -> bytes:
        chunk = self.stream.read(size if size >= 0 else 1 << 20)
        self.digest.update(chunk)
        self.seen += len(chunk)
        return chunk


def _warc_problems(store: Store, warc: ArchivedWarc) -> list[str]:
    """A WARC's size and sha256 against its manifest's, and its records read through once,
    digests checked and counted, in the same pass."""
    with store.stream(warc.key) as handle:
        hashing = _Hashing(handle)
        try:
            count = sum(1 for _ in records(hashing))
            found = (
                []
                if count == warc.records
                else [f"{warc.key}: {count} records, the manifest says {warc.records}"]
            )
        except StoreError:
            raise
        except Exception as exc:  # warcio raises many kinds on bytes that are no record
            found = [f"{warc.key}: not whole records with matching digests ({type(exc).__name__}: {exc})"]
        while hashing.read():
            pass
    return (
        digest_mismatch(warc.key, hashing.seen, warc.bytes, hashing.digest.hexdigest(), warc.sha256) or found
    )


# the derived objects: where they are, their keys' grammars, how each is read, what mends it
_DERIVED = (
    (f"{INDEX}/", ("delta", "base"), "index file", read_index_file, "newsarchive reindex rebuilds the index"),
    (
        f"{TEMPLATE_FOLDER}/",
        ("template",),
        "template",
        read_template,
        "newsarchive reindex removes it; the next crawl learns it again",
    ),
)


def derived_problems(store: Store, keys: set[str], catalog: Catalog) -> list[str]:
    """What is wrong with the archive's index files, templates, and manifests as the index reads
    them: one line each, naming the object."""
    problems = []
    for folder, kinds, name, read, mend in _DERIVED:
        for key in sorted(k for k in keys if k.startswith(folder)):
            if not is_key(key, *kinds):
                problems.append(f"{shown(key)}: no {name}'s name; nothing reads it")
                continue
            try:
                read(store, key)
            except ValueError as exc:
                problems.append(f"{exc} ({mend})")
            except StoreError as exc:
                problems.append(f"{key}: cannot be read ({exc})")
    for run in catalog.runs:
        try:
            manifest_files(store, run.key)
        except Damaged as exc:
            problems.append(str(exc))
        except StoreError as exc:
            problems.append(f"{run.key}: cannot be read ({exc})")
    return problems


def _stream_problems(store: Store, key: str, size: int, sha256: str) -> list[str]:
    """A large file's size and sha256 against its manifest's, read a megabyte at a time."""
    digest, seen = hashlib.sha256(), 0
    with store.stream(key) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            seen += len(chunk)
    return digest_mismatch(key, seen, size, digest.hexdigest(), sha256)


def verify(store: Store, checked: Callable[[ArchivedFile, int], None] | None = None) -> Verification:
    """Every check of the module on the archive in ``store``; ``checked`` is called after each
    file (a progress bar)."""
    catalog = Catalog.read(store)
    result = Verification(runs=len(catalog.runs), problems=list(catalog.problems))
    present = set(store.object_keys())
    files = catalog.files
    for run in catalog.runs:
        if run.schema_version not in SCHEMA_VERSIONS:
            version = run.schema_version
            result.problems.append(f"{run.key}: schema version {version!r} unknown to this newsarchive")
    for file in files:
        result.files += 1
        result.rows += file.rows
        result.bytes += file.bytes
        if file.key not in present:
            result.problems.append(f"{file.key}: missing (listed in {manifest_key(file.crawl_id)})")
        else:
            data, problems = read_verified(store, file)
            result.problems += problems if data is None else _parquet_problems(data, file)
        if checked:
            checked(file, len(files))
    warc_keys = set()
    for warc in catalog.warcs:
        for key, size in ((warc.key, warc.bytes), (warc.cdxj.key, warc.cdxj.bytes)):
            warc_keys.add(key)
            result.warc_bytes += size
            if key not in present:
                result.problems.append(f"{key}: missing (listed in {manifest_key(warc.crawl_id)})")
                continue
            try:
                if key == warc.key:
                    result.problems += _warc_problems(store, warc)
                else:
                    result.problems += _stream_problems(store, key, size, warc.cdxj.sha256)
            except StoreError as exc:
                result.problems.append(f"{key}: cannot be read ({exc})")
        result.warcs += 1
    result.problems += derived_problems(store, present, catalog)
    result.problems += [
        f"{key}: in no manifest (a run still in progress publishes its manifest last)"
        for key in sorted(present - warc_keys)
        if key.startswith(f"{WARC_FOLDER}/")
    ]
    renamed = [key for key in present if former_index_name(key)]
    if renamed:  # read as index files all the same; only a glob over the folders mistakes them
        result.notes.append(
            f"{len(renamed)} index files have the former name (*.parquet), which the glob "
            "**/*.parquet reads as articles (the next crawl or newsarchive reindex renames them)"
        )
    leftovers = sorted(catalog.superseded & present)
    if leftovers:  # readers that go by manifests skip them; readers that glob see their rows twice
        result.notes.append(
            f"{len(leftovers)} files a compaction replaced are not deleted yet (compact deletes them)"
        )
    unlisted = sorted(
        key for key in present - catalog.listed if key.startswith("outlet=") and key.endswith(".parquet")
    )
    abandoned = [key for key in unlisted if COMPACTED in key]
    if abandoned:
        result.notes.append(
            f"{len(abandoned)} files of a compaction interrupted before its manifest, part of no dataset "
            "(compact removes them)"
        )
    result.problems += [
        f"{key}: in no manifest (a run still in progress publishes its manifest last)"
        for key in unlisted
        if COMPACTED not in key
    ]
    return result
