"""Rebuilding what the archive derives, from what it is made of: ``newsarchive reindex``.

The index (:mod:`pipelines.archive.index`) is derived from the parts, so it is rebuilt from them, not
repaired: every part the manifests list (the dataset, compactions applied) is read and checked
against its manifest's size and sha256, and its rows become one new base, which names every index
file there was (and the delta of every run) as replaced, and accounts for every manifest up to
the first it cannot read (its ``through``: a crawl lists only the manifests after it). Once it
is published, those files are deleted, each only if its key is an index file's. A part that fails
its check is left out and named (no crawl reads it: its run is covered). Index files of the former
name (``.parquet``, which the data glob reads) go the same way: the new base has the new name.

Visits (fetches of article pages that archived no row, with their outcome: see
:func:`pipelines.archive.index.visit_entries`) are in no part either: the new base keeps those
of the index files a crawl would read, picked and checked as a crawl does, so that the next crawl
does not fetch every such page again and no other page is held back; the keys of the files whose
visits could not be read are in the report.

Templates are learned from pages, which parts do not keep: a damaged one is deleted (its key
checked to be a template's), and the next crawl of its outlet learns it again. Manifests are
what everything is rebuilt from: they are checked and their problems named, never rewritten.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pyarrow as pa

from pipelines.archive.catalog import Catalog, read_verified
from pipelines.archive.index import (
    INDEX,
    Damaged,
    index_batches,
    live_index_files,
    manifest_files,
    merge_entries,
    read_part_entries,
    write_index_file,
)
from pipelines.archive.keys import TEMPLATE_FOLDER, base_key, checked, delta_keys, is_key, shown
from pipelines.archive.lock import ensure_held
from pipelines.archive.storage import Store, StoreError
from pipelines.archive.templates import read_template

# what visit_entries writes of a visit (pipelines/archive/index.py): all a new base keeps of one
VISIT_COLUMNS = ("url_key", "url", "outcome", "crawl_id", "first_fetched", "last_fetched")


@dataclass
class ReindexReport:
    parts: int = 0  # read into the new base
    entries: int = 0
    visits: int = 0  # kept from the index files replaced
    visits_lost: list[str] = field(default_factory=list)  # index files replaced that did not read
    base: str | None = None
    replaced: list[str] = field(default_factory=list)  # index files deleted
    templates_removed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def reindex(store: Store, workdir: Path, run_id: str) -> ReindexReport:
    """A new index base of ``store`` from its parts, published as the run ``run_id`` (the caller
    holds the archive's lock); then the index files it replaces and the damaged templates go.
    Raises :class:`StoreError` if the store cannot be listed or the base cannot be published."""
    catalog = Catalog.read(store)
    report = ReindexReport(problems=list(catalog.problems))
    unread = list(catalog.unreadable)
    for run in catalog.runs:
        try:
            manifest_files(store, run.key)
        except Damaged as exc:
            report.problems.append(f"{exc} (manifests are not rewritten; the new base covers its run)")
            unread.append(run.key)
    entries = []
    for file in catalog.files:
        data, problems = read_verified(store, file)
        if data is None:
            report.problems += [f"{problem}; its rows are not in the new base" for problem in problems]
            continue
        part = read_part_entries(data, file.key, file.crawl_id)
        if file.rows and not part:
            report.problems.append(
                f"{file.key}: not a part of the archive's schema; its rows are not in the new base"
            )
            continue
        entries += part
        report.parts += 1
    index_files = [key for key in store.object_keys(f"{INDEX}/") if is_key(key, "delta", "base")]
    entries += _visits(store, index_files, report)
    runs = [key for run in catalog.runs for key in delta_keys(run.crawl_id)]
    report.base = base_key(run_id)
    merged = merge_entries(entries)
    spooled = workdir / f".{Path(report.base).name}"
    # the manifests up to the first one not read: a crawl reads those after it, parts and all
    first_unread = min(unread, default=None)
    read = [run.key for run in catalog.runs if not first_unread or run.key < first_unread]
    through = max(read, default=None)
    write_index_file(spooled, merged, sorted(set(index_files) | set(runs)), through)
    ensure_held(store)
    store.publish(spooled, report.base)
    spooled.unlink()
    report.entries = len(merged)
    report.visits = sum(1 for entry in merged if entry.get("outcome") is not None)
    for key in index_files:
        ensure_held(store)
        store.delete(checked(key, "delta", "base"))
        report.replaced.append(key)
    _remove_damaged_templates(store, report)
    return report


def _visits(store: Store, keys: list[str], report: ReindexReport) -> list[dict]:
    """The visits of a URL key in the index files of ``keys`` a crawl reads (the same files, the
    same checks: :func:`live_index_files`), a batch of their columns at a time; a file that does
    not read is named in ``report.visits_lost`` (its pages are fetched again: visits are hints,
    not rows)."""
    import pyarrow.compute as pc  # the rebuild's alone: a crawl's start does without the import

    visits: list[dict] = []
    for key, data in live_index_files(store, keys):
        if isinstance(data, Damaged):
            report.visits_lost.append(key)
            continue
        found: list[dict] = []
        try:
            for batch in index_batches(data, set(), VISIT_COLUMNS):
                if "outcome" in batch.schema.names:  # a file of the former columns holds none
                    kept = pc.and_(pc.is_valid(batch.column("outcome")), pc.is_valid(batch.column("url_key")))
                    found += batch.filter(kept).to_pylist()
        except (
            Damaged,
            pa.ArrowException,
            OSError,
            ValueError,
        ):  # a column checking left out, or text not UTF-8
            report.visits_lost.append(key)
            continue
        visits += found
    return visits


def _remove_damaged_templates(store: Store, report: ReindexReport) -> None:
    for key in store.object_keys(f"{TEMPLATE_FOLDER}/"):
        if not is_key(key, "template"):
            report.problems.append(f"{shown(key)}: not a template's name; left alone")
            continue
        try:
            read_template(store, key)
        except ValueError:
            ensure_held(store)
            store.delete(checked(key, "template"))
            report.templates_removed.append(key)
        except StoreError as exc:
            report.problems.append(f"{key}: cannot be read ({exc}); left alone")
