"""Compaction: the small files of a partition rewritten as one (or a few, by size), sorted by
``published_at``, with row groups sized for readers: ``newsarchive compact``.

Hourly runs add a file per outlet and month they touch; a year of them leaves tens of thousands
of small files, which every reader pays for in listings and footer reads. The steps, each safe
to interrupt, in this order:

1. the new files are published under keys no crawl uses (``part-<run>-compacted-<n>.parquet``),
   then the run's index delta (pointing the archive's index at them);
2. the run's manifest is published: it lists the new files and names the files they replace
   (``supersedes``). From that moment a reader that goes by manifests reads the new files and
   not the old; before it, the old and not the new: never both, never neither;
3. the replaced files are deleted.

A run first finishes what an interrupted one left: replaced files not yet deleted are deleted,
and new files whose manifest never came (with their index delta) are removed, so running it
again is always safe, and a second run over a compacted archive changes nothing. It must hold
the archive (no crawl at the same time): the caller takes the archive's lock.

No file is deleted on the word of one object. A manifest that cannot be read stops the run
before it deletes anything (the files it lists would look abandoned). A new file is abandoned
only when its run's manifest is absent from the listing. ``supersedes`` is honoured only from a
compaction's manifest, for parts of its files' partitions whose rows its files hold by what the
manifests state (:class:`pipelines.archive.catalog.Catalog` drops the rest); and a part is deleted only
when its rows are read and every one, whole, is in that compaction's files, which are there with
the size and sha256 its manifest gives: its manifest and files alone prove nothing, whoever
planted one wrote the others.
"""

from __future__ import annotations

import hashlib
import io
import math
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import groupby
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.archive.catalog import Catalog, discovery_in, read_verified, seal_checkpoint
from pipelines.archive.index import PART_MAX_BYTES, Damaged, part_entries, read_capped, write_index_file
from pipelines.archive.keys import compacted_key, delta_key, delta_keys, manifest_key, part_of, partition_key
from pipelines.archive.lock import ensure_held
from pipelines.archive.manifest import ArchivedFile, Manifest, languages_of
from pipelines.archive.rows import parquet_options, read_parquet
from pipelines.archive.schema import SCHEMA
from pipelines.archive.storage import Store, StoreError, write_atomically

TARGET_BYTES = 128 * 1024 * 1024  # files of at least this size are left alone; new ones stay below it
ROW_GROUP_BYTES = 128 * 1024 * 1024  # Arrow data per row group: what DuckDB, Spark and Polars read well
DIGEST_BATCH_ROWS = 1024  # rows decoded at a time when a replaced part's rows are compared


@dataclass
class CompactionReport:
    partitions: int = 0  # compacted by this run
    files_before: int = 0  # in those partitions
    files_after: int = 0
    rows: int = 0
    deleted: int = 0  # replaced files deleted, this run's or an interrupted one's
    abandoned: int = 0  # files of an interrupted compaction that never got its manifest, removed
    manifest: str | None = None
    problems: list[str] = field(default_factory=list)


def compact(
    store: Store,
    workdir: Path,
    run_id: str,
    outlets: set[str] | None = None,
    months: set[str] | None = None,
    target_bytes: int = TARGET_BYTES,
) -> CompactionReport:
    """Compact the partitions of ``outlets`` and ``months`` (all by default) that hold two or more
    files smaller than ``target_bytes``; ``workdir`` holds the new files until the store does."""
    report = CompactionReport()
    catalog = Catalog.read(store)
    report.problems += catalog.problems
    if catalog.unreadable:
        report.problems.append(
            f"compaction not started, nothing deleted: {len(catalog.unreadable)} manifests could not be "
            "read, and the files they list would look abandoned (run again once they read)"
        )
        return report
    present = set(store.object_keys())
    _remove_abandoned(store, catalog, present, report)
    for run in catalog.runs:
        leftovers = sorted(set(run.supersedes) & present)
        if leftovers:
            _delete(store, _rows_held(store, run, leftovers, present, report), report)
    partitions: dict[tuple[str, str], list[ArchivedFile]] = defaultdict(list)
    for file in catalog.files:
        chosen = (not outlets or file.outlet in outlets) and (not months or file.month in months)
        if chosen and file.bytes < target_bytes:
            partitions[file.outlet, file.month].append(file)
    written: list[ArchivedFile] = []
    entries: list[dict] = []
    replaced: list[str] = []
    for (outlet, month), files in sorted(partitions.items()):
        if len(files) < 2:
            continue
        table = _read(store, files, report)
        if table is None:
            continue  # a file that differs from its manifest stays as it is, named in the problems
        chunks = max(1, math.ceil(sum(f.bytes for f in files) / target_bytes))
        step = math.ceil(table.num_rows / chunks)
        for start in range(0, table.num_rows, step):
            key = compacted_key(partition_key(outlet, month), run_id, len(written) + 1)
            chunk = table.slice(start, step)
            written.append(_publish(store, workdir, key, chunk, run_id))
            entries += part_entries(chunk, key, run_id)
        replaced += [f.key for f in files]
        report.partitions += 1
        report.files_before += len(files)
        report.rows += table.num_rows
    report.files_after = len(written)
    if not written:
        return report
    spooled = workdir / f".{Path(delta_key(run_id)).name}"
    write_index_file(spooled, entries)
    ensure_held(store)
    store.publish(spooled, delta_key(run_id))
    spooled.unlink()
    report.manifest = _publish_manifest(store, workdir, run_id, written, replaced, catalog, report.problems)
    _delete(store, replaced, report)
    try:  # its supersedes would have every reader read every manifest until the next checkpoint
        seal_checkpoint(store, workdir, every=1)
    except StoreError as exc:
        report.problems.append(f"catalog checkpoint not written ({exc}); ls and pull read every manifest")
    return report


def _read(store: Store, files: list[ArchivedFile], report: CompactionReport) -> pa.Table | None:
    """The files' rows in the current schema, sorted by publication time (undated last)."""
    tables = []
    for file in files:
        data, problems = read_verified(store, file)
        if data is None:
            report.problems += problems
            return None
        tables.append(_in_schema(read_parquet(data)))
    table = pa.concat_tables(tables)
    keys = [("published_at", "ascending", "at_end"), ("article_id", "ascending", "at_end")]
    return table.sort_by(keys)


def _in_schema(table: pa.Table) -> pa.Table:
    """A file of an older schema as the current one: the columns it lacks are null."""
    rows = table.num_rows
    columns = [
        table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(rows, f.type)
        for f in SCHEMA
    ]
    return pa.Table.from_arrays(columns, schema=SCHEMA)


def _publish(store: Store, workdir: Path, key: str, table: pa.Table, run_id: str) -> ArchivedFile:
    """Write and publish one new file of the run ``run_id``; its manifest entry."""
    rows_per_group = max(1, int(ROW_GROUP_BYTES * table.num_rows / max(table.nbytes, 1)))
    spooled = workdir / f".{Path(key).name}.unpublished"  # not read by the data glob in a local archive
    write_atomically(
        spooled,
        lambda handle: pq.write_table(
            table, handle, row_group_size=rows_per_group, **parquet_options(table.schema)
        ),
    )
    ensure_held(store)
    sha256 = store.publish(spooled, key)
    entry = ArchivedFile(
        key=key,
        crawl_id=run_id,
        rows=table.num_rows,
        bytes=spooled.stat().st_size,
        sha256=sha256,
        languages=languages_of(table),
        article_ids=tuple(table.column("article_id").to_pylist()),
    )
    spooled.unlink()
    return entry


def _publish_manifest(
    store: Store,
    workdir: Path,
    run_id: str,
    files: list[ArchivedFile],
    replaced: list[str],
    catalog: Catalog,
    problems: list[str],
) -> str:
    """The step that makes the new files the dataset: their manifest, naming what they replace.
    It keeps the newest crawl's discovery validators, which the next crawl reads from the newest
    manifest."""
    now = datetime.now(UTC).isoformat(timespec="seconds")
    newest = max((run.key for run in catalog.runs), default=None)
    discovery = discovery_in(store, newest, problems) if newest else {}
    manifest = Manifest.of_compaction(run_id, files, replaced, discovery, at=now)
    spooled = workdir / f".{run_id}.json"
    write_atomically(spooled, lambda handle: handle.write(manifest.to_bytes()))
    ensure_held(store)
    store.publish(spooled, manifest.key)
    spooled.unlink()
    return manifest.key


def _remove_abandoned(store: Store, catalog: Catalog, present: set[str], report: CompactionReport) -> None:
    """Files of a compaction that died before its manifest, and its index delta: in no manifest,
    part of no dataset, safe to remove (the partition is compacted again). Only a file whose
    run's manifest is absent from the listing is abandoned, never one whose manifest is there."""
    runs = set()
    for key in sorted(present - catalog.listed):
        part = part_of(key)
        if part and part.compacted and manifest_key(part.crawl_id) not in present:
            runs.add(part.crawl_id)
            _delete(store, [key], report, count=False)
            report.abandoned += 1
    deltas = [key for run in sorted(runs) for key in delta_keys(run) if key in present]
    _delete(store, deltas, report, count=False)


def _rows_held(
    store: Store, run: Manifest, keys: list[str], present: set[str], report: CompactionReport
) -> list[str]:
    """Of the parts ``keys`` the compaction ``run`` replaced, those whose every row, whole, is in
    its files of their partition, which are there with the size and sha256 its manifest gives:
    only those may go. Its manifest and files prove nothing alone (whoever planted one wrote the
    others), so the rows are read and compared; the parts kept are named in the problems."""
    held = []
    for partition, parts in groupby(keys, key=lambda key: part_of(key).partition):
        unclaimed: Counter[bytes] | None = Counter()
        for file in (file for file in run.files if part_of(file.key).partition == partition):
            data, problems = read_verified(store, file) if file.key in present else (None, ["missing"])
            rows = _row_digests(data, exact=True) if data is not None else None
            if rows is None:
                report.problems.append(
                    f"{run.key}: the files it replaces are kept: {file.key}: "
                    + "; ".join(problems or ["not Parquet of the archive's schema"])
                )
                unclaimed = None
                break
            unclaimed += rows
        for key in parts if unclaimed is not None else ():
            try:
                rows = _row_digests(read_capped(store, key, PART_MAX_BYTES))
                why = "not Parquet of the archive's schema"
            except (StoreError, Damaged) as exc:
                rows, why = None, f"cannot be read ({exc})"
            if rows is not None and rows <= unclaimed:
                unclaimed -= rows
                held.append(key)
                continue
            if rows is not None:
                why = f"its files lack {(rows - unclaimed).total()} of its {rows.total()} rows"
            report.problems.append(f"{key}: kept, though {run.key} replaces it: {why}")
    return held


def _row_digests(parquet: bytes, exact: bool = False) -> Counter[bytes] | None:
    """A digest of each row's values over the schema's columns, in the current schema as
    compaction writes it (equal rows, equal digests; sorting aside, compaction changes no value),
    decoded a batch at a time; None when ``parquet`` is not a file of the archive's schema, or,
    ``exact`` (a compaction's file, which replaces parts), when its columns are not the schema's
    names, types and nullability as compaction writes them: values cast to the schema compare
    equal, but a file of other types is not the dataset the replaced parts were."""
    digests: Counter[bytes] = Counter()
    try:
        file = pq.ParquetFile(io.BytesIO(parquet))
        if exact and not file.schema_arrow.equals(SCHEMA):
            return None
        for batch in file.iter_batches(batch_size=DIGEST_BATCH_ROWS):
            table = _in_schema(pa.Table.from_batches([batch]))
            hashes = [hashlib.blake2b(digest_size=16) for _ in range(table.num_rows)]
            for column in table.columns:
                for hashed, value in zip(hashes, column.to_pylist(), strict=True):
                    hashed.update(repr(value).encode() + b"\0")  # a repr holds no NUL: values stay apart
            digests.update(hashed.digest() for hashed in hashes)
    except pa.ArrowException:
        return None
    return digests


def _delete(store: Store, keys: list[str], report: CompactionReport, count: bool = True) -> None:
    for key in keys:
        ensure_held(store)  # a lost lease stops the run (LeaseLost): the next one deletes what is left
        try:
            store.delete(key)
        except StoreError as exc:
            report.problems.append(
                f"{key}: cannot be deleted ({exc}); readers that go by manifests skip it, readers that "
                "glob the folders read its rows twice: compaction needs delete permission"
            )
            return
        report.deleted += count
