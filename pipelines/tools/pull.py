"""Taking a slice of the archive: ``newsarchive pull``.

Only the files that can hold matching rows are read (the manifests give each file's outlet,
month and languages: partition pruning), each is checked against its manifest's size and
sha256 before a row of it is used, and its rows are filtered. The slice is written as

- ``parquet``: a Hive-partitioned dataset under DEST, one file per archived file that had
  matching rows, under the same key (each written whole or not at all);
- ``jsonl`` / ``csv``: one file DEST, or standard output (CSV holds list columns as JSON text).

The format follows DEST's name (:func:`destination_format`): ``.jsonl``, ``.csv``, ``.parquet`` or
a name without an extension (a folder); ``--format`` decides for other names, and may not
contradict the name.

A CSV file is opened by spreadsheets, which run a cell that starts like a formula: a string cell
that starts with ``=``, ``+``, ``-`` or ``@`` (or their full-width forms), after white space or
not, or with a tab or a line break, is written with a ``'`` in front, as OWASP advises ("CSV
injection"); numbers stay numbers. JSONL and Parquet are data formats, read by programs that do
not run what they hold: they carry every string exactly as archived.

Each article version once. A row is one version of one article: its ``article_id``, ``version``
and ``text_hash`` (:func:`_version_ids`). A pull into DEST notes, in its journal, each archived
file done and the versions it wrote; the next pull into DEST (resumed after a kill, or run again
after new crawls, refetches or a ``compact``) reads only the files not done and writes only the
versions not written. A compaction moves rows into new files and names the files they replace
(``supersedes``): a compacted file whose replaced files were all pulled is done without being
read; one that holds rows not pulled yet is read, and only those rows are written. The journal is
``DEST/.pull.jsonl`` for a folder, a hidden ``.<name>.pull.jsonl`` beside a file (standard
output has none: a pull there is not resumable); a pull with other filters into the same DEST is
refused rather than mixed, and a DEST that is gone starts a new journal.

Files of the same bytes. A file whose manifest states the size and sha256 of a file of the same
partition this pull read (and found as its own manifest states) holds the same rows, all written:
it is noted done without being read. A copy whose bytes differ from what its manifest states is
then not found by the pull (its rows would have been left out anyway); ``verify`` reads every
object. A file that did not check is no file read: its copies are read.
"""

from __future__ import annotations

import base64
import csv
import functools
import hashlib
import io
import json
import os
import unicodedata
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, BinaryIO, Protocol

import pyarrow as pa

from pipelines.archive.catalog import Catalog, read_verified
from pipelines.archive.keys import part_of, partition_key
from pipelines.archive.manifest import ArchivedFile
from pipelines.archive.rows import parquet_file, read_parquet
from pipelines.archive.storage import Store, StoreError, confined, write_atomically
from pipelines.runtime.jsondata import is_count, loads_bounded

FORMATS = ("parquet", "jsonl", "csv")
STDOUT = "-"  # the DEST that names standard output
_EXTENSIONS = {".parquet": "parquet", ".jsonl": "jsonl", ".csv": "csv"}
# what starts a string cell a spreadsheet would run as a formula: OWASP's list and its full-width forms,
# after any white space, control or format characters (a BOM, a zero-width space, a NUL), which a
# spreadsheet may drop or show as nothing; a tab, CR or line feed first, whatever follows
_FORMULA_CHARACTERS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
# A row version's id: 16 bytes of BLAKE2b (no two of a billion collide), noted in base64, at most
# this many to a journal line (116 KB), so that a line stays small whatever a file holds
_VERSION_COLUMNS = ("article_id", "version", "text_hash")
_ID_BYTES = 16
_IDS_PER_LINE = 4096
_JOURNAL_LINE_BYTES = 1 << 20  # a line of the journal: the filters, a key and a length, or ids
_JOURNAL = 2  # the journal's layout; 1 noted files only, and cannot tell which rows were written
_NO_PARQUET_STREAM = "parquet cannot go to standard output: name a folder, or use --format jsonl or csv"


class PullError(Exception):
    """The pull cannot go on: DEST holds another pull or is of the wrong kind, or the format
    cannot be told or cannot go there."""


def destination_format(dest: str, chosen: str | None) -> str:
    """The format a pull into ``dest`` writes: the one its extension names (``-``, standard
    output: jsonl), or ``chosen`` (``--format``) where the name says none; a name without an
    extension is a folder (parquet). PullError for a contradiction or a name that says nothing."""
    if dest == STDOUT:
        if chosen == "parquet":
            raise PullError(_NO_PARQUET_STREAM)
        return chosen or "jsonl"
    suffix = Path(dest).suffix
    named = _EXTENSIONS.get(suffix.lower())
    if chosen and named and chosen != named:
        raise PullError(f"--format {chosen} contradicts {dest}, which names {named}: give one of them")
    if chosen or named:
        return chosen or named
    if suffix and not Path(dest).is_dir():
        raise PullError(
            f"cannot tell a format from {dest}: name it .jsonl, .csv or .parquet (a folder), or give --format"
        )
    return "parquet"


@dataclass(frozen=True)
class Slice:
    """Which rows: ``since`` and ``until`` are days, both included (UTC, on ``published_at``)."""

    outlets: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None
    languages: tuple[str, ...] = ()

    def may_match(self, file: ArchivedFile) -> bool:
        """False when the file's key or manifest rules out every row of the slice."""
        return file.may_hold(set(self.outlets), self.since, self.until, set(self.languages))

    def files(self, catalog: Catalog) -> list[ArchivedFile]:
        """The files that may hold matching rows, in key order (a partition's files together)."""
        return sorted(filter(self.may_match, catalog.files), key=lambda file: file.key)

    def rows(self, table: pa.Table) -> pa.Table:
        # imported here, not with the module: the CLI's parser needs FORMATS, and pyarrow.compute
        # took 24 ms of every crawl's start
        import pyarrow.compute as pc

        published = table["published_at"]
        conditions = []
        if self.outlets:
            conditions.append(pc.is_in(table["outlet_id"], pa.array(self.outlets)))
        if self.since:
            start = datetime.combine(self.since, time(), UTC)
            conditions.append(pc.greater_equal(published, pa.scalar(start, published.type)))
        if self.until:
            end = datetime.combine(self.until + timedelta(days=1), time(), UTC)
            conditions.append(pc.less(published, pa.scalar(end, published.type)))
        if self.languages:
            conditions.append(pc.is_in(table["language"], pa.array(self.languages)))
        return table.filter(functools.reduce(pc.and_kleene, conditions)) if conditions else table

    def to_json(self) -> dict[str, Any]:
        return {
            "outlets": list(self.outlets),
            "since": self.since and self.since.isoformat(),
            "until": self.until and self.until.isoformat(),
            "languages": list(self.languages),
        }


@dataclass
class PullReport:
    files_read: int = 0
    files_skipped: int = 0  # whose rows an earlier pull wrote: done by it, or compacted since
    files_identical: int = 0  # by their manifests, the same bytes as a file of theirs this pull read
    rows: int = 0
    rows_known: int = 0  # of the files read, left out: versions written before (or twice in the archive)
    problems: list[str] = field(default_factory=list)


def pull(
    store: Store,
    dest: Path | BinaryIO,
    wanted: Slice,
    output: str = "parquet",
    read: Callable[[ArchivedFile, int], None] | None = None,
    catalog: Catalog | None = None,
) -> PullReport:
    """Write the rows of ``wanted`` to ``dest`` (a path, or a stream: no journal) in ``output``
    format, each version once across every pull into the same path; ``read`` is called after each
    file (a progress bar), ``catalog`` is the store's when the caller read it already (through its
    checkpoint, with the files of the slice's outlets: see :mod:`pipelines.archive.catalog`). A file whose
    bytes differ from its manifest's is left out and named in the report's problems (a later
    pull tries it again), unless a file of its partition that its manifest gives the same size
    and sha256 was read: then it is done unread (see the module)."""
    if output not in FORMATS:
        raise PullError(f"unknown format {output!r}: one of {', '.join(FORMATS)}")
    catalog = catalog or Catalog.read(store, checkpoint=True, outlets=wanted.outlets or None)
    files = wanted.files(catalog)
    journal = _Journal.of(dest, output)
    header = {"journal": _JOURNAL, "slice": wanted.to_json(), "format": output}
    done = journal.open(header) if journal else set()
    pulled_before = _pulled_before(catalog, wanted, done)
    partitions = {file.key: partition_key(file.outlet, file.month) for file in files}
    known = journal.ids({partitions[f.key] for f in files if f.key not in pulled_before}) if journal else {}
    report = PullReport(problems=list(catalog.problems))
    writer = _writer(dest, output, journal.length if journal else None)
    seen: tuple[str, set[bytes]] = ("", set())  # the partition being pulled, its versions written
    read_whole: set[tuple[int, str]] = set()  # the files of that partition read: size and sha256
    try:
        for file in files:
            if file.key in pulled_before:
                report.files_skipped += 1
                if journal and file.key not in done:  # compacted from files done: done too
                    journal.done(file.key, [], writer.length)
            else:
                partition = partitions[file.key]
                if seen[0] != partition:  # key order: a partition's files come together
                    seen = (partition, _unpacked(known.pop(partition, b"")))
                    read_whole = set()
                if (file.bytes, file.sha256) in read_whole:
                    report.files_identical += 1
                    if journal:
                        journal.done(file.key, [], writer.length)
                elif _pull_file(store, file, wanted, writer, journal, seen[1], report):
                    read_whole.add((file.bytes, file.sha256))
            if read:
                read(file, len(files))
    finally:
        writer.close()
        if journal:
            journal.flush()
    return report


def _version_ids(table: pa.Table) -> list[bytes]:
    """Each row's version, as :data:`_ID_BYTES` bytes: its article, version number and text hash
    (the number alone is null in files of schema 1; a text that comes back after a correction is
    the next number)."""
    columns = [
        table.column(name).to_pylist() if name in table.column_names else [None] * table.num_rows
        for name in _VERSION_COLUMNS
    ]
    rows = zip(*columns, strict=True)
    return [hashlib.blake2b(repr(values).encode(), digest_size=_ID_BYTES).digest() for values in rows]


def _pull_file(
    store: Store,
    file: ArchivedFile,
    wanted: Slice,
    writer: _Writer,
    journal: _Journal | None,
    written: set[bytes],
    report: PullReport,
) -> bool:
    """The rows of ``file`` in the slice whose versions are not in ``written`` (the versions of its
    partition written so far, into DEST), then noted as written; False when the file did not
    read as its manifest says, or its rows could not be written."""
    data, problems = read_verified(store, file)
    if data is None:
        report.problems += problems
        return False
    table = wanted.rows(read_parquet(data))
    new: dict[bytes, int] = {}  # each version not written yet: its first row
    for row, version in enumerate(_version_ids(table)):
        if version not in written:
            new.setdefault(version, row)
    rows = table if len(new) == table.num_rows else table.take(pa.array(list(new.values()), pa.int64()))
    try:
        writer.write(file, rows)
    except StoreError as exc:  # a key that would lead out of DEST
        report.problems.append(f"{file.key}: not written ({exc})")
        return False
    written.update(new)
    if journal:
        journal.done(file.key, list(new), writer.length)
    report.files_read += 1
    report.rows += rows.num_rows
    report.rows_known += table.num_rows - rows.num_rows
    return True


def _pulled_before(catalog: Catalog, wanted: Slice, done: set[str]) -> set[str]:
    """The files done (by the journal), and the compacted files whose every row an earlier pull
    wrote: in each partition a compaction wrote, every file it replaces was done (or could hold
    no row of the slice), and its files hold as many rows as those, by the manifests. Compactions
    in the order they ran: a file compacted twice counts through the first."""
    listed = {file.key: file for run in catalog.runs for file in run.files}
    settled = set(done)
    for run in catalog.runs:
        replaced: dict[str, list[str]] = defaultdict(list)
        for key in run.supersedes:
            replaced[_partition(key)].append(key)
        for partition, keys in replaced.items():
            if not all(key in listed for key in keys):
                continue  # rows no manifest states: the compacted files may hold more
            files = [file for file in run.files if _partition(file.key) == partition]
            pulled = all(key in settled or not wanted.may_match(listed[key]) for key in keys)
            if pulled and sum(listed[key].rows for key in keys) == sum(file.rows for file in files):
                settled.update(file.key for file in files)
    return settled


def _partition(key: str) -> str:
    """A part's partition (``outlet=.../published=...``); "" for a key that is no part's."""
    part = part_of(key)
    return part.partition if part else ""


def _unpacked(ids: bytes) -> set[bytes]:
    return {ids[start : start + _ID_BYTES] for start in range(0, len(ids), _ID_BYTES)}


class _Journal:
    """What the pulls into one DEST did: their filters and format, then for each archived file
    done the ids of the versions written from it (lines of ``rows``, in base64), then the line
    that says it done, with the output's length after it (for one file)."""

    def __init__(self, path: Path, output: Path | None):
        self.path = path
        self.output = output  # the file the journal is about; None for a folder (it is inside)
        self.length: int | None = None  # the output's length after the last file done
        self.unsynced: list[dict] = []  # lines of files done that wrote no row, not written yet

    @classmethod
    def of(cls, dest: Path | BinaryIO, output: str) -> _Journal | None:
        """The journal of a pull into ``dest``; None for a stream. PullError for a DEST of the
        wrong kind (a folder for a file, a file for a folder)."""
        if not isinstance(dest, Path):
            if output == "parquet":
                raise PullError(_NO_PARQUET_STREAM)
            return None
        if output == "parquet":
            if dest.exists() and not dest.is_dir():
                raise PullError(f"{dest} is a file: a parquet pull writes a folder there")
            return cls(dest / ".pull.jsonl", None)
        if dest.is_dir():
            raise PullError(f"{dest} is a folder: a {output} pull writes a file there")
        return cls(dest.with_name(f".{dest.name}.pull.jsonl"), dest)

    def open(self, header: dict) -> set[str]:
        """The keys done by earlier pulls with the same ``header``; a new journal when there is
        none, or when the file it is about is gone. What a kill cut short is cut off."""
        done: set[str] = set()
        end = 0  # of the last line that counts: the header, or a file's done
        if self.path.exists() and (self.output is None or self.output.exists()):
            for number, (entry, line_end) in enumerate(self._lines()):
                if number == 0:
                    if entry != header:
                        raise PullError(self._other_pull(entry))
                    self.length = 0
                elif "length" in entry:
                    done.add(entry["key"])
                    self.length = entry["length"]
                else:
                    continue
                end = line_end
        if not end:  # no journal, one cut short before its header was whole, or DEST removed
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.unlink(missing_ok=True)
            self._append([header])
            self.length = None
            return set()
        with self.path.open("r+b") as handle:  # rows of a file not done, or a line cut short
            handle.truncate(end)
        if self.output is not None and self.length is not None and self.output.stat().st_size < self.length:
            raise PullError(f"{self.output} is shorter than the pull into it wrote: remove it to pull again")
        return done

    def ids(self, partitions: set[str]) -> dict[str, bytes]:
        """The versions written from the files done of ``partitions``, by partition, packed."""
        pending: dict[str, list[bytes]] = defaultdict(list)
        ids: dict[str, bytearray] = defaultdict(bytearray)
        for number, (entry, _) in enumerate(self._lines()):
            if not number or _partition(entry["key"]) not in partitions:
                continue
            if "rows" in entry:
                pending[entry["key"]].append(base64.b64decode(entry["rows"]))
            else:
                ids[_partition(entry["key"])] += b"".join(pending.pop(entry["key"], []))
        return {partition: bytes(packed) for partition, packed in ids.items()}

    def done(self, key: str, ids: list[bytes], length: int | None) -> None:
        """Note ``key`` done, with the ids of the versions written from it. A file that wrote no
        row is noted with the next one that did (or at :meth:`flush`): lost to a kill, it is
        read again and writes nothing, so one sync serves a run of them."""
        self.unsynced += [
            {"key": key, "rows": base64.b64encode(b"".join(ids[start : start + _IDS_PER_LINE])).decode()}
            for start in range(0, len(ids), _IDS_PER_LINE)
        ]
        self.unsynced.append({"key": key, "length": length})
        if ids:
            self.flush()

    def flush(self) -> None:
        """Write the lines held. Taken first: a write that fails part-way is not tried again after
        its cut line (the next :meth:`open` cuts a last line short; one in the middle would make
        the journal unreadable), and its files are read again next time."""
        lines, self.unsynced = self.unsynced, []
        if lines:
            self._append(lines)

    def _lines(self) -> Iterator[tuple[dict, int]]:
        """Each whole line (the header, then entries :func:`_is_entry` takes) and where it ends;
        a last line without its line feed (a kill cut it short) is not read."""
        with self.path.open("rb") as handle:
            header = True
            while True:
                line = handle.readline(_JOURNAL_LINE_BYTES + 1)
                if not line.endswith(b"\n"):
                    if len(line) > _JOURNAL_LINE_BYTES:
                        raise PullError(f"{self.path} is no journal of a pull; pull elsewhere")
                    return
                try:
                    entry = loads_bounded(line, _JOURNAL_LINE_BYTES, str(self.path))
                except ValueError:
                    raise PullError(f"{self.path} is no journal of a pull; pull elsewhere") from None
                if not header and not _is_entry(entry):
                    raise PullError(f"{self.path} is no journal of a pull; pull elsewhere")
                header = False
                yield entry, handle.tell()

    def _other_pull(self, header: object) -> str:
        if isinstance(header, dict) and "slice" in header and "journal" not in header:
            return f"{self.path} is the journal of a pull by an older newsarchive; pull into a new place"
        return f"{self.path} notes a pull of another slice or format there; pull elsewhere"

    def _append(self, entries: list[dict]) -> None:
        with self.path.open("ab") as handle:
            handle.write(b"".join(_line(entry) for entry in entries))
            handle.flush()
            os.fsync(handle.fileno())


def _line(entry: dict) -> bytes:
    """``entry`` as a line of JSON; a file's done line (one per file, 20,000 in a pull of 10,000
    runs) written without a JSON encoder made for it, as ``json.dumps`` makes one per dict."""
    if entry.keys() == {"key", "length"}:
        length = b"null" if entry["length"] is None else b"%d" % entry["length"]
        return b'{"key": %s, "length": %s}\n' % (json.dumps(entry["key"]).encode(), length)
    return json.dumps(entry).encode() + b"\n"


def _is_entry(entry: object) -> bool:
    """A line :meth:`_Journal.done` wrote: an archived file's key with the ids of versions
    written from it, or with the output's length after it."""
    if not isinstance(entry, dict) or not isinstance(entry.get("key"), str):
        return False
    if set(entry) == {"key", "rows"}:
        return isinstance(entry["rows"], str) and _is_ids(entry["rows"])
    return set(entry) == {"key", "length"} and (entry["length"] is None or is_count(entry["length"]))


def _is_ids(text: str) -> bool:
    try:
        ids = base64.b64decode(text, validate=True)
    except ValueError:
        return False
    return len(ids) % _ID_BYTES == 0


class _Writer(Protocol):
    length: int | None  # the output's length so far, for one file

    def write(self, file: ArchivedFile, table: pa.Table) -> None:
        """Write the rows pulled from ``file``."""

    def close(self) -> None: ...


def _writer(dest: Path | BinaryIO, output: str, length: int | None) -> _Writer:
    if output == "parquet":
        assert isinstance(dest, Path)  # _Journal.of refused a stream
        return _DatasetWriter(dest)
    if isinstance(dest, Path):
        dest.parent.mkdir(parents=True, exist_ok=True)
        handle = dest.open("r+b" if dest.exists() and length is not None else "wb")
        handle.truncate(length or 0)
        handle.seek(length or 0)
        return _FileWriter(handle, output, header=not length, owned=True)
    return _FileWriter(dest, output, header=True, owned=False)


class _DatasetWriter:
    """The archive's own layout under DEST: each file written whole, under its own key (one that
    stays inside DEST, or none)."""

    length = None

    def __init__(self, dest: Path):
        self.dest = dest

    def write(self, file: ArchivedFile, table: pa.Table) -> None:
        if table.num_rows:  # a file of no matching rows is only noted in the journal
            target = confined(self.dest, file.key)
            write_atomically(target, lambda handle: handle.write(parquet_file(table)))

    def close(self) -> None:
        pass


class _FileWriter:
    """One JSONL or CSV file (``owned``: synced to disk after each archived file, for the
    journal) or stream (standard output: flushed, a closed pipe raised to the caller)."""

    def __init__(self, handle: BinaryIO, output: str, header: bool, owned: bool):
        self.handle = handle
        self.output = output
        self.header = header  # CSV's header line still to write
        self.owned = owned

    @property
    def length(self) -> int | None:
        return self.handle.tell() if self.owned else None

    def write(self, file: ArchivedFile, table: pa.Table) -> None:
        if not table.num_rows:
            return
        text = io.StringIO()
        if self.output == "jsonl":
            for row in _rows(table):
                text.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            writer = csv.DictWriter(text, fieldnames=table.column_names)
            if self.header:
                writer.writeheader()
                self.header = False
            writer.writerows({k: _cell(v) for k, v in row.items()} for row in _rows(table))
        self.handle.write(text.getvalue().encode("utf-8"))
        self.handle.flush()
        if self.owned:
            os.fsync(self.handle.fileno())

    def close(self) -> None:
        if self.owned:
            self.handle.close()


def _rows(table: pa.Table) -> Iterator[dict[str, Any]]:
    for row in table.to_pylist():
        yield {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def _cell(value: Any) -> Any:
    """A CSV cell: lists and structs as JSON text; a string that would start a formula neutralised."""
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False)
    return "'" + value if isinstance(value, str) and _starts_formula(value) else value


def _starts_formula(text: str) -> bool:
    if text[:1] in ("\t", "\r", "\n"):
        return True
    for character in text:
        if character in _FORMULA_CHARACTERS:
            return True
        if not (character.isspace() or unicodedata.category(character) in _INVISIBLE_CATEGORIES):
            return False
    return False
