"""Checking the archive against its manifests: ``newsarchive verify``.

Every file a manifest lists must be there, with the size and sha256 the manifest gives, be
readable Parquet with the rows the manifest counts, and carry a schema version this code
reads; a manifest must be readable and of a known schema version; and no Parquet file of the
dataset may be in no manifest (a reader that goes by manifests would never see it; one that
globs the folders would, unchecked). Files a compaction replaced are out of the dataset; their
being still there is noted, not a problem. Each WARC a manifest lists, and its CDXJ index, must
be there with its size and sha256 (read as a stream: a WARC may be a gigabyte), and no file
under ``_warc/`` may be in no manifest. Each problem is one line that names the file.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.catalog import COMPACTED, ArchivedFile, Catalog
from pipelines.schema import SCHEMA_VERSIONS, VERSION_KEY
from pipelines.storage import Store, StoreError
from pipelines.warc import WARC_FOLDER


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


def digest_problems(data: bytes, file: ArchivedFile) -> list[str]:
    """What is wrong with the bytes read for ``file``: its size or sha256 (none: they are the
    bytes the run published)."""
    return _mismatch(file.key, len(data), file.bytes, hashlib.sha256(data).hexdigest(), file.sha256)


def read_verified(store: Store, file: ArchivedFile) -> tuple[bytes | None, list[str]]:
    """The file's bytes when they are what its manifest says; else None, and what is wrong."""
    try:
        data = store.read(file.key)
    except StoreError as exc:
        return None, [f"{file.key}: cannot be read ({exc})"]
    problems = digest_problems(data, file)
    return (None if problems else data), problems


def _mismatch(key: str, size: int, listed_size: int, sha256: str, listed_sha256: str) -> list[str]:
    if size != listed_size:
        return [f"{key}: {size} bytes, the manifest says {listed_size}"]
    if sha256 != listed_sha256:
        return [f"{key}: sha256 differs from the manifest's (the file changed since it was published)"]
    return []


def file_problems(data: bytes, file: ArchivedFile) -> list[str]:
    """:func:`digest_problems`, then the file as Parquet: readable, its rows, its schema version."""
    problems = digest_problems(data, file)
    if problems:
        return problems
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


def _stream_problems(store: Store, key: str, size: int, sha256: str) -> list[str]:
    """A large file's size and sha256 against its manifest's, read a megabyte at a time."""
    digest, seen = hashlib.sha256(), 0
    with store.stream(key) as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
            seen += len(chunk)
    return _mismatch(key, seen, size, digest.hexdigest(), sha256)


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
            result.problems.append(f"{run.manifest}: schema version {version!r} unknown to this newsarchive")
    for file in files:
        result.files += 1
        result.rows += file.rows
        result.bytes += file.bytes
        if file.key not in present:
            result.problems.append(f"{file.key}: missing (listed in _manifests/{file.crawl_id}.json)")
        else:
            try:
                result.problems += file_problems(store.read(file.key), file)
            except StoreError as exc:
                result.problems.append(f"{file.key}: cannot be read ({exc})")
        if checked:
            checked(file, len(files))
    warc_keys = set()
    for warc in catalog.warcs:
        for key, size, sha256 in (
            (warc.key, warc.bytes, warc.sha256),
            (warc.cdxj.key, warc.cdxj.bytes, warc.cdxj.sha256),
        ):
            warc_keys.add(key)
            result.warc_bytes += size
            if key not in present:
                result.problems.append(f"{key}: missing (listed in _manifests/{warc.crawl_id}.json)")
                continue
            try:
                result.problems += _stream_problems(store, key, size, sha256)
            except StoreError as exc:
                result.problems.append(f"{key}: cannot be read ({exc})")
        result.warcs += 1
    result.problems += [
        f"{key}: in no manifest (a run still in progress publishes its manifest last)"
        for key in sorted(present - warc_keys)
        if key.startswith(f"{WARC_FOLDER}/")
    ]
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
