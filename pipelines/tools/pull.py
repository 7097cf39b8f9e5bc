"""Taking a slice of the archive: ``newsarchive pull``.

Only the files that can hold matching rows are read (the manifests give each file's outlet,
month and languages: partition pruning), each is checked against its manifest's size and
sha256 before a row of it is used, and its rows are filtered. The slice is written as

- ``parquet``: a Hive-partitioned dataset under DEST, one file per archived file that had
  matching rows, under the same key (each written whole or not at all);
- ``jsonl`` / ``csv``: one file DEST (CSV holds list columns as JSON text).

A CSV file is opened by spreadsheets, which run a cell that starts like a formula: a string cell
that starts with ``=``, ``+``, ``-`` or ``@`` (or their full-width forms), after white space or
not, or with a tab or a line break, is written with a ``'`` in front, as OWASP advises ("CSV
injection"); numbers stay numbers. JSONL and Parquet are data formats, read by programs that do
not run what they hold: they carry every string exactly as archived.

A pull resumes where it stopped: ``<DEST>.pull.jsonl`` (beside a file DEST) or
``DEST/.pull.jsonl`` notes the filters and each archived file done (and, for one file, its
length after it); a pull with other filters into the same DEST is refused rather than mixed.
"""

from __future__ import annotations

import csv
import functools
import io
import json
import os
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any, Protocol

import pyarrow as pa

from pipelines.archive.catalog import Catalog, read_verified
from pipelines.archive.manifest import ArchivedFile
from pipelines.archive.rows import parquet_file, read_parquet
from pipelines.archive.storage import Store, StoreError, confined, write_atomically
from pipelines.runtime.jsondata import is_count, loads_bounded

FORMATS = ("parquet", "jsonl", "csv")
# what starts a string cell a spreadsheet would run as a formula: OWASP's list and its full-width forms,
# after any white space, control or format characters (a BOM, a zero-width space, a NUL), which a
# spreadsheet may drop or show as nothing; a tab, CR or line feed first, whatever follows
_FORMULA_CHARACTERS = frozenset("=+-@\uff1d\uff0b\uff0d\uff20")
_INVISIBLE_CATEGORIES = frozenset({"Cc", "Cf", "Zs", "Zl", "Zp"})
_JOURNAL_LINE_BYTES = 1 << 20  # a line of the pull's journal: a key and a length, or the filters


class PullError(Exception):
    """The pull cannot go on: DEST holds another pull, or a format this code does not write."""


@dataclass(frozen=True)
class Slice:
    """Which rows: ``since`` and ``until`` are days, both included (UTC, on ``published_at``)."""

    outlets: tuple[str, ...] = ()
    since: date | None = None
    until: date | None = None
    languages: tuple[str, ...] = ()

    def files(self, catalog: Catalog) -> list[ArchivedFile]:
        """The files that may hold matching rows, in key order."""
        return sorted(
            (
                file
                for file in catalog.files
                if file.may_hold(set(self.outlets), self.since, self.until, set(self.languages))
            ),
            key=lambda file: file.key,
        )

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
    files_skipped: int = 0  # done by an earlier, interrupted pull
    rows: int = 0
    problems: list[str] = field(default_factory=list)


def pull(
    store: Store,
    dest: Path,
    wanted: Slice,
    output: str = "parquet",
    read: Callable[[ArchivedFile, int], None] | None = None,
) -> PullReport:
    """Write the rows of ``wanted`` to ``dest`` in ``output`` format; ``read`` is called after
    each file (a progress bar). A file whose bytes differ from its manifest's is left out and
    named in the report's problems (a later pull tries it again)."""
    if output not in FORMATS:
        raise PullError(f"unknown format {output!r}: one of {', '.join(FORMATS)}")
    catalog = Catalog.read(store)
    files = wanted.files(catalog)
    one_file = output != "parquet"
    journal = _Journal(dest.with_name(dest.name + ".pull.jsonl") if one_file else dest / ".pull.jsonl")
    done = journal.open({"slice": wanted.to_json(), "format": output})
    report = PullReport(problems=list(catalog.problems))
    writer = _DatasetWriter(dest) if output == "parquet" else _FileWriter(dest, output, journal.length)
    try:
        for file in files:
            if file.key in done:
                report.files_skipped += 1
            else:
                _pull_file(store, file, wanted, writer, journal, report)
            if read:
                read(file, len(files))
    finally:
        writer.close()
    return report


def _pull_file(
    store: Store, file: ArchivedFile, wanted: Slice, writer: _Writer, journal: _Journal, report: PullReport
) -> None:
    data, problems = read_verified(store, file)
    if data is None:
        report.problems += problems
        return
    table = wanted.rows(read_parquet(data))
    try:
        length = writer.write(file, table)
    except StoreError as exc:  # a key that would lead out of DEST
        report.problems.append(f"{file.key}: not written ({exc})")
        return
    report.files_read += 1
    report.rows += table.num_rows
    journal.done(file.key, length)


class _Journal:
    """What a pull into one DEST has done: its filters, then one line per archived file."""

    def __init__(self, path: Path):
        self.path = path
        self.length: int | None = None  # the output's length after the last file done

    def open(self, header: dict) -> set[str]:
        """The keys done by an earlier pull with the same ``header``; a new journal otherwise."""
        if not self.path.exists():
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._append(header)
            return set()
        lines = []
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                lines.append(loads_bounded(line, _JOURNAL_LINE_BYTES, str(self.path)))
            except ValueError:  # a line cut short by a kill: that file was not done
                break
        if not lines or lines[0] != header:
            raise PullError(f"{self.path} notes a pull of another slice or format there; pull elsewhere")
        if not all(_is_done(entry) for entry in lines[1:]):
            raise PullError(f"{self.path} is no journal of a pull; pull elsewhere")
        done = {entry["key"] for entry in lines[1:]}
        self.length = lines[-1].get("length") if len(lines) > 1 else 0
        return done

    def done(self, key: str, length: int | None) -> None:
        self._append({"key": key, "length": length})

    def _append(self, entry: dict) -> None:
        with self.path.open("ab") as handle:
            handle.write(json.dumps(entry).encode() + b"\n")
            handle.flush()
            os.fsync(handle.fileno())


def _is_done(entry: object) -> bool:
    """A journal line :meth:`_Journal.done` wrote: an archived file's key, the output's length."""
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("key"), str)
        and (entry.get("length") is None or is_count(entry["length"]))
    )


class _Writer(Protocol):
    def write(self, file: ArchivedFile, table: pa.Table) -> int | None:
        """Write the rows pulled from ``file``; the output's length after them, for one file."""

    def close(self) -> None: ...


class _DatasetWriter:
    """The archive's own layout under DEST: each file written whole, under its own key (one that
    stays inside DEST, or none)."""

    def __init__(self, dest: Path):
        self.dest = dest

    def write(self, file: ArchivedFile, table: pa.Table) -> None:
        if table.num_rows:  # a file of no matching rows is only noted in the journal
            target = confined(self.dest, file.key)
            write_atomically(target, lambda handle: handle.write(parquet_file(table)))

    def close(self) -> None:
        pass


class _FileWriter:
    """One JSONL or CSV file, cut back to the length the journal last noted when resumed."""

    def __init__(self, dest: Path, output: str, length: int | None):
        dest.parent.mkdir(parents=True, exist_ok=True)
        self.output = output
        self.handle = dest.open("r+b" if dest.exists() and length is not None else "wb")
        self.handle.truncate(length or 0)
        self.handle.seek(length or 0)
        self.header = not length

    def write(self, file: ArchivedFile, table: pa.Table) -> int:
        if table.num_rows:
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
            os.fsync(self.handle.fileno())
        return self.handle.tell()

    def close(self) -> None:
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
