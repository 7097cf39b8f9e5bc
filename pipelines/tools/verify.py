"""Checking the archive against its manifests: ``newsarchive verify``.

Every file a manifest lists must be there, with the size and sha256 the manifest gives, be
readable Parquet with the rows the manifest counts, and carry a schema version this code
reads; a manifest must be readable and of a known schema version; and no Parquet file of the
dataset may be in no manifest (a reader that goes by manifests would never see it; one that
globs the folders would, unchecked). Files a compaction replaced are out of the dataset; their
being still there is noted, not a problem. Each WARC a manifest lists, and its CDXJ index, must
be there with its size and sha256 and read back as whole records with matching digests and
the manifest's count (bodies never decoded: a WARC may be a gigabyte, a record a gzip bomb),
and no file under ``_warc/`` may be in no manifest. Derived objects are checked too: every
index file and template must be named as one, within its cap and readable, every manifest
readable as the index reads it, and the catalog as ``ls`` and ``pull`` read it through its
checkpoint must say what every manifest read says (:func:`checkpoint_problems`; the catalog
itself is read from every manifest, never through a checkpoint). Each problem is one line that
names the object.

Every object hashed is read as a stream, a megabyte at a time, never past the size its
manifest gives (and one byte more, to tell a longer one): a part's sha256 is computed as it
passes and only its last :data:`FOOTER_MAX_BYTES` are kept, where Parquet keeps its footer
(schema, row groups, row count, our schema version): that is all the rows check reads. So a
verify holds a chunk and a footer per object, whatever the objects' sizes.

``since`` (``verify --since``) reads the objects of only the runs whose crawl id sorts at or
after a given one (crawl ids begin with their UTC start, ``20261123T041500Z-1a2b3c``: a day or
a month is the runs started since). What stays archive-wide is what costs no object read: every
manifest is read and checked (the catalog's own checks need them all: second listings,
supersedes), the archive is listed once, and from that listing every file of every run must be
there and nothing unlisted may be under ``outlet=*/`` or ``_warc/``. Skipped for the older
runs: the size, sha256 and content of their parts, WARCs and CDXJ indexes, the index files,
templates and catalog checkpoint named by their crawl ids, and the index's reading of their
manifests.

``--since last`` is :func:`verify_since_last`: the runs after the mark the last clean pass left
in a local file (in the archive's spool, never in the archive, where an object planted there
could move it); the first pass, or one whose mark cannot be read, checks everything. The mark
moves only on a clean pass, so a damaged object is named again each pass until it is mended. A
manifest sealed later under an earlier crawl id (``flush`` of a crawl killed before a newer run)
changes the count of manifests up to the mark, and that pass checks every run.
"""

from __future__ import annotations

import hashlib
import io
import json
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.archive.catalog import Catalog, digest_mismatch
from pipelines.archive.index import (
    INDEX,
    Damaged,
    index_crawl,
    manifest_files,
    read_index_file,
)
from pipelines.archive.keys import (
    CATALOG,
    COMPACTED,
    CRAWL,
    MANIFESTS,
    TEMPLATE_FOLDER,
    WARC_FOLDER,
    checkpoint_through,
    former_index_name,
    is_key,
    manifest_key,
    shown,
)
from pipelines.archive.manifest import ArchivedFile, ArchivedWarc
from pipelines.archive.schema import SCHEMA_VERSIONS, VERSION_KEY
from pipelines.archive.storage import Store, StoreError, read_up_to, write_atomically
from pipelines.archive.templates import read_template
from pipelines.archive.warc import records
from pipelines.runtime.jsondata import loads_bounded, one_line

_CHUNK = 1 << 20  # bytes read from a store at a time
# a part's footer, kept from the end of its stream: ~13 KB for our parts (one row group, 40
# columns' statistics); past this a part's rows are not read, and that is said
FOOTER_MAX_BYTES = 8 << 20
_PARQUET_MAGIC = b"PAR1"
_VERSION_CHARS = 32  # of a part's schema version, as a problem shows it
LAST = "last"  # verify --since last: the runs after the last clean pass
VERIFY_MARK = "verified.json"  # in the spool: where the last clean pass of ``verify --since last`` ended
_MARK_MAX_BYTES = 4096


@dataclass(frozen=True)
class Since:
    """The runs whose objects a pass reads: crawl ids at or after ``crawl_id``, or (a mark)
    after it while the ``manifests`` up to it are all the manifests up to it."""

    crawl_id: str
    after: bool = False  # the mark of the last clean pass: that run was read then
    manifests: int | None = None  # the mark's count of manifests up to ``crawl_id``

    def covers(self, crawl_id: str) -> bool:
        return crawl_id > self.crawl_id if self.after else crawl_id >= self.crawl_id

    def __str__(self) -> str:
        return f"after {self.crawl_id} (the last clean pass)" if self.after else f"since {self.crawl_id}"


@dataclass
class Verification:
    runs: int = 0  # manifests read
    files: int = 0  # below: what was read, all of it without ``since``
    rows: int = 0
    bytes: int = 0
    warcs: int = 0
    warc_bytes: int = 0  # WARCs and their indexes
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # worth saying, not wrong
    since: Since | None = None  # the runs whose objects were read; None: every run
    runs_read: int = 0
    newest: str | None = None  # the newest crawl id of a manifest read


def _parquet_problems(footer: bytes | bytearray, file: ArchivedFile) -> list[str]:
    """The end of ``file`` (its last bytes, or all of them) as Parquet's footer: readable, its
    rows, its schema version."""
    length = struct.unpack("<I", footer[-8:-4])[0] if len(footer) >= 12 else 0
    if footer[-4:] != _PARQUET_MAGIC or length == 0:
        return [f"{file.key}: not readable as Parquet (no footer at its end)"]
    if length > len(footer) - 8:
        if len(footer) < FOOTER_MAX_BYTES:  # the whole file was kept
            return [f"{file.key}: not readable as Parquet (a footer of {length:,} bytes, longer than it)"]
        return [f"{file.key}: a Parquet footer of {length:,} bytes, over the {FOOTER_MAX_BYTES:,} read"]
    try:  # the footer alone, framed as a file: nothing else of the part is needed
        metadata = pq.ParquetFile(io.BytesIO(_PARQUET_MAGIC + footer[-length - 8 :])).metadata
    except (pa.ArrowException, OSError) as exc:
        return [f"{file.key}: not readable as Parquet ({exc})"]
    problems = []
    if metadata.num_rows != file.rows:
        problems.append(f"{file.key}: {metadata.num_rows} rows, the manifest says {file.rows}")
    version = (metadata.metadata or {}).get(VERSION_KEY.encode(), b"").decode(errors="replace")
    if version not in SCHEMA_VERSIONS:
        stated = one_line(version, _VERSION_CHARS) or "missing"
        problems.append(f"{file.key}: schema version {stated}, not one this newsarchive reads")
    return problems


class _Hashing:
    """A stream read through once, hashed as it passes, never past ``size`` bytes and one more;
    the bytes from ``keep_from`` on are kept (a part's footer). warcio reads a WARC through it."""

    def __init__(self, stream: BinaryIO, size: int, keep_from: int | None = None):
        self.stream, self.size, self.keep_from = stream, size, keep_from
        self.digest, self.seen, self.kept = hashlib.sha256(), 0, bytearray()

    def read(self, size: int = _CHUNK) -> bytes:
        wanted = min(size if size >= 0 else _CHUNK, _CHUNK, self.size + 1 - self.seen)
        if wanted <= 0:
            return b""
        chunk = self.stream.read(wanted)
        self.digest.update(chunk)
        if self.keep_from is not None and self.seen + len(chunk) > self.keep_from:
            self.kept += chunk[max(0, self.keep_from - self.seen) :]
        self.seen += len(chunk)
        return chunk

    def read_through(self) -> None:
        while self.read():
            pass

    def problems(self, key: str, sha256: str) -> list[str]:
        """Its size and sha256 against the manifest's."""
        if self.seen > self.size:
            return [f"{key}: over the {self.size} bytes the manifest says; not read past them"]
        return digest_mismatch(key, self.seen, self.size, self.digest.hexdigest(), sha256)


def _part_problems(store: Store, file: ArchivedFile) -> list[str]:
    """A part's size and sha256 against its manifest's, then its footer as Parquet: one pass."""
    with store.stream(file.key) as handle:
        hashing = _Hashing(handle, file.bytes, keep_from=max(0, file.bytes - FOOTER_MAX_BYTES))
        hashing.read_through()
    return hashing.problems(file.key, file.sha256) or _parquet_problems(hashing.kept, file)


def _hashed_problems(store: Store, key: str, size: int, sha256: str) -> list[str]:
    """A file's size and sha256 against its manifest's (a WARC's CDXJ index)."""
    with store.stream(key) as handle:
        hashing = _Hashing(handle, size)
        hashing.read_through()
    return hashing.problems(key, sha256)


def _warc_problems(store: Store, warc: ArchivedWarc) -> list[str]:
    """A WARC's size and sha256 against its manifest's, and its records read through once,
    digests checked and counted, in the same pass."""
    with store.stream(warc.key) as handle:
        hashing = _Hashing(handle, warc.bytes)
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
        hashing.read_through()
    return hashing.problems(warc.key, warc.sha256) or found


def _template_crawl(key: str) -> str:
    return key.rsplit("/", 1)[-1].removesuffix(".json")


# the derived objects: where they are, what they are called, what mends them, and for each kind
# of key there its reader (None: its name is all anything reads, as of an open marker) and the
# crawl it is named by
_DERIVED = (
    (
        f"{INDEX}/",
        "index file",
        "newsarchive reindex rebuilds the index",
        {"delta": (read_index_file, index_crawl), "base": (read_index_file, index_crawl), "marker": None},
    ),
    (
        f"{TEMPLATE_FOLDER}/",
        "template",
        "newsarchive reindex removes it; the next crawl learns it again",
        {"template": (read_template, _template_crawl)},
    ),
    (f"{CATALOG}/", "catalog checkpoint", "", {"checkpoint": None}),  # read by checkpoint_problems
)


def _every_run(crawl_id: str) -> bool:
    return True


def derived_problems(
    store: Store, keys: set[str], catalog: Catalog, reads: Callable[[str], bool] = _every_run
) -> list[str]:
    """What is wrong with the archive's index files, templates, and manifests as the index reads
    them: one line each, naming the object. Only those of the crawls ``reads`` takes are read;
    every name is checked."""
    problems = []
    for folder, name, mend, kinds in _DERIVED:
        for key in sorted(k for k in keys if k.startswith(folder)):
            kind = next((kind for kind in kinds if is_key(key, kind)), None)
            if kind is None:
                problems.append(f"{shown(key)}: no {name}'s name; nothing reads it")
                continue
            if kinds[kind] is None:
                continue
            read, crawl_of = kinds[kind]
            if not reads(crawl_of(key)):
                continue
            try:
                read(store, key)
            except ValueError as exc:
                problems.append(f"{exc} ({mend})")
            except StoreError as exc:
                problems.append(f"{key}: cannot be read ({exc})")
    for run in catalog.runs:
        if not reads(run.crawl_id):
            continue
        try:
            manifest_files(store, run.key)
        except Damaged as exc:
            problems.append(str(exc))
        except StoreError as exc:
            problems.append(f"{run.key}: cannot be read ({exc})")
    return problems


def checkpoint_problems(
    store: Store, keys: set[str], catalog: Catalog, reads: Callable[[str], bool] = _every_run
) -> list[str]:
    """The catalog as ``ls`` and ``pull`` read it (the newest checkpoint that reads, and the
    manifests after it) against ``catalog``, every manifest read: a checkpoint read around, or
    one that says other than the manifests, is named; only if the newest is of a crawl ``reads``
    takes. A checkpoint is derived: deleted, it is written again by a crawl once enough runs are
    newer than the newest left."""
    checkpoints = sorted(key for key in keys if is_key(key, "checkpoint"))
    if not checkpoints or not reads(_manifest_crawl(checkpoint_through(checkpoints[-1]))):
        return []
    checkpointed = Catalog.read(store, checkpoint=True)
    problems = [problem for problem in checkpointed.problems if problem.startswith(f"{CATALOG}/")]
    if _as_listed(checkpointed) != _as_listed(catalog):
        problems.append(
            f"{checkpoints[-1]}: the runs and files of this catalog checkpoint (what ls and pull "
            "read) differ from the manifests' (delete it; a later crawl writes another)"
        )
    return problems


def _as_listed(catalog: Catalog) -> tuple[dict, list[tuple]]:
    """What a catalog says: its figures, and every file of the dataset as listed."""
    figures = {name: value for name, value in catalog.summary().items() if name != "problems"}
    files = sorted((f.key, f.crawl_id, f.rows, f.bytes, f.sha256, f.languages) for f in catalog.files)
    return figures, files


def _manifest_crawl(key: str) -> str:
    """The crawl a manifest's key names."""
    return key.removeprefix(f"{MANIFESTS}/").removesuffix(".json")


def _manifest_ids(catalog: Catalog) -> list[str]:
    """The crawl id of every manifest listed, read or not."""
    return [run.crawl_id for run in catalog.runs] + [_manifest_crawl(key) for key in catalog.unreadable]


def _still(since: Since | None, catalog: Catalog, notes: list[str]) -> Since | None:
    """``since``, unless it is a mark that manifests sealed since under earlier crawl ids (or
    gone) have made wrong: then every run is read."""
    if since is None or since.manifests is None:
        return since
    up_to = sum(1 for crawl_id in _manifest_ids(catalog) if crawl_id <= since.crawl_id)
    if up_to == since.manifests:
        return since
    notes.append(
        f"{up_to} manifests up to {since.crawl_id}, the last clean pass counted {since.manifests} "
        "(one sealed late, or gone): every run checked"
    )
    return None


def verify(
    store: Store, checked: Callable[[ArchivedFile, int], None] | None = None, since: Since | None = None
) -> Verification:
    """Every check of the module on the archive in ``store``, objects read for the runs
    ``since`` covers (every run: None); ``checked`` is called after each file (a progress bar)."""
    catalog = Catalog.read(store)  # every manifest: never through a checkpoint, which is checked
    result = Verification(runs=len(catalog.runs), problems=list(catalog.problems))
    result.newest = max((run.crawl_id for run in catalog.runs), default=None)
    result.since = _still(since, catalog, result.notes)
    reads = result.since.covers if result.since else _every_run
    result.runs_read = sum(1 for run in catalog.runs if reads(run.crawl_id))
    present = set(store.object_keys())
    for run in catalog.runs:
        if run.schema_version not in SCHEMA_VERSIONS:
            version = run.schema_version
            result.problems.append(f"{run.key}: schema version {version!r} unknown to this newsarchive")
    files = catalog.files
    for file in files:
        if file.key not in present:
            result.problems.append(f"{file.key}: missing (listed in {manifest_key(file.crawl_id)})")
    read = [file for file in files if reads(file.crawl_id)]
    for file in read:
        result.files += 1
        result.rows += file.rows
        result.bytes += file.bytes
        if file.key in present:
            try:
                result.problems += _part_problems(store, file)
            except StoreError as exc:
                result.problems.append(f"{file.key}: cannot be read ({exc})")
        if checked:
            checked(file, len(read))
    warc_keys = set()
    for warc in catalog.warcs:
        for key, size in ((warc.key, warc.bytes), (warc.cdxj.key, warc.cdxj.bytes)):
            warc_keys.add(key)
            if key not in present:
                result.problems.append(f"{key}: missing (listed in {manifest_key(warc.crawl_id)})")
                continue
            if not reads(warc.crawl_id):
                continue
            result.warc_bytes += size
            try:
                if key == warc.key:
                    result.problems += _warc_problems(store, warc)
                else:
                    result.problems += _hashed_problems(store, key, size, warc.cdxj.sha256)
            except StoreError as exc:
                result.problems.append(f"{key}: cannot be read ({exc})")
        result.warcs += reads(warc.crawl_id)
    result.problems += derived_problems(store, present, catalog, reads)
    result.problems += checkpoint_problems(store, present, catalog, reads)
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


def verify_since_last(
    store: Store, mark: Path, checked: Callable[[ArchivedFile, int], None] | None = None
) -> Verification:
    """``verify --since last``: the runs after the ``mark`` the last clean pass left (every run
    if there is none, or it cannot be read); a clean pass moves it to the newest run read."""
    notes: list[str] = []
    result = verify(store, checked, _read_mark(mark, notes))
    result.notes[:0] = notes
    if not result.problems and result.newest is not None:
        through = {"through": result.newest, "manifests": result.runs, "at": datetime.now(UTC).isoformat()}
        write_atomically(mark, lambda handle: handle.write(json.dumps(through).encode()))
    return result


def _read_mark(mark: Path, notes: list[str]) -> Since | None:
    """The last clean pass's mark; None (and a note, if it is there but unusable): every run."""
    try:
        with mark.open("rb") as handle:
            stated = loads_bounded(read_up_to(handle, _MARK_MAX_BYTES), _MARK_MAX_BYTES, str(mark))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        notes.append(f"{mark}: the last pass's mark cannot be read ({exc}); every run checked")
        return None
    through = stated.get("through") if isinstance(stated, dict) else None
    manifests = stated.get("manifests") if isinstance(stated, dict) else None
    if not (isinstance(through, str) and CRAWL.fullmatch(through)) or type(manifests) is not int:
        notes.append(f"{mark}: the last pass's mark names no crawl id and count; every run checked")
        return None
    return Since(through, after=True, manifests=manifests)
