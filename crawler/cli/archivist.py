"""``newsarchive ls / verify / pull / compact / reindex / card / reextract``: the archive for
the people who read it (thin adapters over :mod:`pipelines.archive.catalog`, :mod:`pipelines.tools.verify`,
:mod:`pipelines.tools.pull`, :mod:`pipelines.tools.compact`, :mod:`pipelines.tools.reindex`,
:mod:`pipelines.tools.card` and :mod:`pipelines.tools.reextract`).

They import neither Scrapy nor Twisted: the settings they read (``ARCHIVE_S3_*``,
``ARCHIVE_LEASE_SECONDS``, ``ARCHIVE_ACCEPT_UNCONDITIONAL_WRITES``, ``ARCHIVE_SPOOL``, the page
workers' ``EXTRACT_*``) are :mod:`crawler.common_settings`'s, as a crawl reads them. Exit codes
(:class:`ExitCode`): OK; PROBLEMS, each named on a line; USAGE, bad arguments, no archive there
(no manifest: see :func:`_exists`) or a store that cannot be read;
BUSY (compact, reindex, reextract), a run holds the archive written to, or the store failed while
its lock was taken (they never run without it).
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import contextlib
import gc
import json
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Literal, TypeVar

from crawler.cli.exits import ExitCode, UsageError
from crawler.cli.locking import holding
from crawler.from_settings import (
    PlainSettings,
    extract_workers,
    page_pool,
    spool_from_settings,
    store_from_settings,
)
from crawler.registry import load_registry
from pipelines.archive.catalog import Catalog
from pipelines.archive.keys import CRAWL, MANIFESTS, UNKNOWN_MONTH, new_crawl_id
from pipelines.archive.manifest import ArchivedFile
from pipelines.archive.publish import Publisher
from pipelines.archive.storage import LocalStore, Store, StoreError, archive_identity
from pipelines.runtime.jsondata import one_line
from pipelines.runtime.uri import mask_uri
from pipelines.tools.card import OutletTerms, write_card
from pipelines.tools.compact import compact
from pipelines.tools.pull import FORMATS, STDOUT, PullError, Slice, destination_format, pull
from pipelines.tools.reextract import OutletHints, ReextractError, ReextractReport, reextract
from pipelines.tools.reindex import reindex
from pipelines.tools.verify import LAST, VERIFY_MARK, Since, verify, verify_since_last

Report = TypeVar("Report")

_RUNS_LISTED = 10  # runs ls lists as text: a year of hourly runs is 8,760
# strings of a manifest that ls shows as text, folded onto one line (see one_line) and cut
_TIME_CHARS = 32
_CODE_CHARS = 16
_NAME_CHARS = 64  # an outlet id, a month or a language code a filter names, as a refusal shows it
_HELD_LISTED = 20  # what a refusal lists of what the archive holds


def add_commands(commands: argparse._SubParsersAction) -> None:
    listing = commands.add_parser("ls", help="what the archive holds: runs, outlets, months, languages, rows")
    listing.set_defaults(command=ls_command)
    _archive_argument(listing)
    listing.add_argument("--json", action="store_true", help="the figures as JSON, for scripts")

    checking = commands.add_parser("verify", help="check every file against its manifest")
    checking.set_defaults(command=verify_command)
    _archive_argument(checking)
    checking.add_argument(
        "--since",
        type=_runs_since,
        metavar="RUN",
        help="read the files of only the runs since RUN: a crawl id, or a day (YYYY-MM-DD) or month "
        f"(YYYY-MM) they started on or after (UTC); {LAST}: the runs after the last clean pass of --since "
        f"{LAST} (its mark is kept in the archive's spool; none yet: every run). Every manifest is still "
        "read, and the archive listed: every file of every run must be there, none in no manifest",
    )
    checking.add_argument(
        "--quiet",
        action="store_true",
        help="print nothing when every file matches (for cron: mail only problems)",
    )

    taking = commands.add_parser(
        "pull", help="copy the rows you want out of the archive; run again, it adds the rows not pulled yet"
    )
    taking.set_defaults(command=pull_command)
    _archive_argument(taking)
    taking.add_argument(
        "dest",
        metavar="DEST",
        help="a folder or NAME.parquet (a Hive-partitioned Parquet dataset), NAME.jsonl or NAME.csv (one "
        f"file); {STDOUT}: standard output (JSON lines, or CSV with --format csv; no journal: not resumable)",
    )
    repeatable = {"action": "append", "default": []}
    taking.add_argument("--outlet", **repeatable, metavar="ID", help="this outlet (repeatable)")
    taking.add_argument(
        "--since",
        type=_day(last=False),
        metavar="DATE",
        help="published on or after this day (YYYY-MM-DD), or the first of this month (YYYY-MM); UTC",
    )
    taking.add_argument(
        "--until",
        type=_day(last=True),
        metavar="DATE",
        help="published on or before this day, or the last of this month; UTC",
    )
    taking.add_argument("--lang", **repeatable, metavar="CODE", help="this language (repeatable)")
    taking.add_argument(
        "--format", choices=FORMATS, help="for a DEST whose name does not say it (it may not contradict it)"
    )

    compacting = commands.add_parser("compact", help="rewrite each partition's small files as one, sorted")
    compacting.set_defaults(command=compact_command)
    _archive_argument(compacting)
    compacting.add_argument("--outlet", **repeatable, metavar="ID", help="this outlet (repeatable)")
    compacting.add_argument(
        "--month", **repeatable, type=_month, metavar="YYYY-MM", help="this month (repeatable)"
    )
    compacting.add_argument("--wait", action="store_true", help="if a run holds the archive, wait for it")

    reindexing = commands.add_parser(
        "reindex", help="rebuild the index from the parts; remove damaged templates (learned again)"
    )
    reindexing.set_defaults(command=reindex_command)
    _archive_argument(reindexing)
    reindexing.add_argument("--wait", action="store_true", help="if a run holds the archive, wait for it")

    carding = commands.add_parser("card", help="a dataset card: Markdown and one self-contained HTML page")
    carding.set_defaults(command=card_command)
    _archive_argument(carding)
    carding.add_argument(
        "--out", type=Path, default=Path("dataset-card"), help="folder (default: dataset-card)"
    )
    carding.add_argument("--title", help="the card's title (default: the archive's folder, or bucket/prefix)")
    carding.add_argument(
        "--outlets-file",
        **repeatable,
        metavar="PATH",
        help="extra registry file (the outlets' names, licences, crawl policies and time zones)",
    )

    rebuilding = commands.add_parser(
        "reextract", help="rebuild the rows from the archive's WARCs with today's extraction, offline"
    )
    rebuilding.set_defaults(command=reextract_command)
    _archive_argument(rebuilding)
    rebuilding.add_argument(
        "--to", required=True, metavar="ARCHIVE2", help="the new archive (a folder, file://... or s3://...)"
    )
    rebuilding.add_argument("--outlet", **repeatable, metavar="ID", help="this outlet (repeatable)")
    rebuilding.add_argument(
        "--outlets-file",
        **repeatable,
        metavar="PATH",
        help="extra registry file (the outlets' time zones and extraction hints, as a crawl reads it)",
    )
    rebuilding.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")


def _archive_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("archive", metavar="ARCHIVE", help="a folder, file://... or s3://bucket/prefix")


def _day(last: bool) -> Callable[[str], date]:
    """``--since`` and ``--until``: a day (YYYY-MM-DD), or a month (YYYY-MM, as the archive is
    partitioned), which stands for its first day, or its ``last``."""

    def parse(text: str) -> date:
        with contextlib.suppress(ValueError):
            return date.fromisoformat(text)
        try:
            month = datetime.strptime(text, "%Y-%m").date()
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a day (YYYY-MM-DD) or month (YYYY-MM): {text!r}") from None
        return month.replace(day=calendar.monthrange(month.year, month.month)[1]) if last else month

    return parse


def _runs_since(text: str) -> Since | str:
    """``verify --since``: ``last``, a crawl id, or a day or month as ``pull``'s, which stands for
    the crawl ids of the runs started since (they begin with their UTC start: 20261123T041500Z-...)."""
    if text == LAST:
        return text
    with contextlib.suppress(argparse.ArgumentTypeError):
        return Since(f"{_day(last=False)(text):%Y%m%d}")
    if CRAWL.fullmatch(text) and not set(text) <= set("0123456789-"):  # 2025-13 is a typo, not an id
        return Since(text)
    raise argparse.ArgumentTypeError(f"not a crawl id, a day, a month or {LAST}: {text!r}")


def _month(text: str) -> str:
    """``compact --month``: a month as the archive's partitions name it, YYYY-MM, or ``unknown``
    (the rows without a publication date)."""
    if text == UNKNOWN_MONTH:
        return text
    try:
        return f"{datetime.strptime(text, '%Y-%m'):%Y-%m}"
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a month (YYYY-MM, or {UNKNOWN_MONTH}): {text!r}") from None


def _settings(uri: str) -> PlainSettings:
    """A crawl's settings (``ARCHIVE_S3_*``, ``ARCHIVE_LEASE_SECONDS``) for the archive ``uri``."""
    return PlainSettings.of(ARCHIVE_URI=uri)


def _store(uri: str) -> Store:
    store = store_from_settings(_settings(uri))
    _exists(store, uri)
    return store


def _exists(store: Store, uri: str) -> None:
    """Refuse what is no archive before reading it or taking its lock: a mistyped path must not
    verify green, nor be left a lock file. An archive holds a manifest (every run that archived
    something sealed its files with one); a store that cannot be listed raises its StoreError."""
    if isinstance(store, LocalStore) and not store.root.is_dir():
        raise UsageError(f"no archive at {mask_uri(uri)}: not a folder")
    if not _lists_any(store, f"{MANIFESTS}/"):
        raise UsageError(f"no archive at {mask_uri(uri)}: no manifest under {MANIFESTS}/ (no run sealed any)")


def _lists_any(store: Store, prefix: str) -> bool:
    """Whether ``store`` holds a key under ``prefix``: its first page of keys, no more."""
    with contextlib.closing(store.object_keys(prefix)) as keys:
        return next(keys, None) is not None


def ls_command(args: argparse.Namespace) -> ExitCode:
    summary = Catalog.read(_store(args.archive), checkpoint=True, outlets=()).summary()  # figures only
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(_listing(mask_uri(args.archive), summary))
    return ExitCode.PROBLEMS if summary["problems"] else ExitCode.OK


def _listing(uri: str, summary: dict) -> str:
    runs = summary["runs"]
    files, rows = summary["files"], summary["rows"]
    lines = [
        f"{uri}: {len(runs)} runs, {files:,} files, {rows:,} rows, {_size(summary['bytes'])}"
        + (f"; {summary['warcs']:,} WARCs, {_size(summary['warc_bytes'])}" if summary["warcs"] else ""),
        "",
        f"{'outlet':<24} {'months':<17} {'files':>6} {'rows':>9} {'size':>9}  languages",
    ]
    for name, outlet in summary["outlets"].items():
        months = sorted(outlet["months"])
        span = months[0] if len(months) == 1 else f"{months[0]}..{months[-1]}"
        languages = " ".join(
            f"{one_line(code, _CODE_CHARS)} {rows:,}" for code, rows in outlet["languages"].items()
        )
        figures = f"{outlet['files']:>6} {outlet['rows']:>9,} {_size(outlet['bytes']):>9}"
        lines.append(f"{name:<24} {span:<17} {figures}  {languages}")
    lines += ["", "rows per month: " + ", ".join(f"{m} {r:,}" for m, r in summary["months"].items())]
    lines += [
        "rows per language: "
        + ", ".join(f"{one_line(c, _CODE_CHARS)} {r:,}" for c, r in summary["languages"].items())
    ]
    if runs:
        lines += ["", f"{'run':<26} {'started':<26} {'files':>6} {'rows':>9}"]
        if len(runs) > _RUNS_LISTED:
            lines.append(f"... {len(runs) - _RUNS_LISTED} earlier runs (ls --json lists them all)")
        for run in runs[-_RUNS_LISTED:]:
            mark = "  interrupted" if run["interrupted"] else ""
            started = one_line(run["started_at"] or "", _TIME_CHARS)
            lines.append(f"{run['crawl_id']:<26} {started:<26} {run['files']:>6} {run['rows']:>9,}{mark}")
    lines += [f"PROBLEM {problem}" for problem in summary["problems"]]
    return "\n".join(lines)


def verify_command(args: argparse.Namespace) -> ExitCode:
    store = _store(args.archive)
    with _progress("verifying") as advance:
        if args.since == LAST:
            mark = spool_from_settings(_settings(args.archive), store).root / VERIFY_MARK
            result = verify_since_last(store, mark, advance)
        else:
            result = verify(store, advance, args.since)
    if args.quiet and not result.problems:
        return ExitCode.OK
    for line in result.problems + result.notes:
        print(line)
    count = len(result.problems)
    verdict = f"{count} problem{'s' * (count != 1)}" if count else "all files match their manifests"
    warcs = (
        f", {result.warcs:,} WARCs ({_size(result.warc_bytes)} with their indexes)" if result.warcs else ""
    )
    read = f"; the {result.runs_read} runs {result.since} read:" if result.since else ","
    print(
        f"{mask_uri(args.archive)}: {result.runs} manifests{read} {result.files:,} files, "
        f"{result.rows:,} rows, {_size(result.bytes)}{warcs}: {verdict}"
    )
    return ExitCode.PROBLEMS if result.problems else ExitCode.OK


def pull_command(args: argparse.Namespace) -> ExitCode:
    if not args.dest:
        raise UsageError("DEST is empty: name a folder, a file, or - for standard output")
    if args.since and args.until and args.until < args.since:
        raise UsageError(f"--until {args.until} is before --since {args.since}: no day is in both")
    to_stdout = args.dest == STDOUT
    said = sys.stderr if to_stdout else sys.stdout  # standard output may be the rows
    try:
        output = destination_format(args.dest, args.format)
        store = _store(args.archive)
        if not to_stdout:
            _refuse_overlap(store, Path(args.dest))
        catalog = Catalog.read(store, checkpoint=True, outlets=args.outlet or None)  # their files only
        _refuse_unheld(catalog, args.archive, "outlet", args.outlet)
        _refuse_unheld(catalog, args.archive, "language", args.lang)
        wanted = Slice(tuple(args.outlet), args.since, args.until, tuple(args.lang))
        dest = sys.stdout.buffer if to_stdout else Path(args.dest)
        with _progress("pulling") as advance, _frozen():
            report = pull(store, dest, wanted, output, advance, catalog)
    except PullError as exc:
        raise UsageError(str(exc)) from None
    for problem in report.problems:
        print(f"PROBLEM {problem}", file=said)
    before = [f"{report.files_skipped} done by an earlier pull"] if report.files_skipped else []
    before += [f"{report.rows_known:,} rows pulled before, left out"] if report.rows_known else []
    before += [f"{report.files_identical:,} the same as a file read"] if report.files_identical else []
    where = "standard output" if to_stdout else args.dest
    print(
        f"{report.rows:,} rows from {report.files_read} files"
        + (f" ({'; '.join(before)})" if before else "")
        + f" into {where}",
        file=said,
    )
    return ExitCode.PROBLEMS if report.problems else ExitCode.OK


@contextlib.contextmanager
def _frozen() -> Iterator[None]:
    """The objects made so far (the catalog: one per file and run) kept out of the collector's
    walks while the command runs, as they live as long as it (at 10,000 runs the walks took
    0.03-0.07 s of a pull's 0.2 s after its catalog). Given back after, to be collected as ever."""
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _refuse_overlap(store: Store, dest: Path) -> None:
    """A pull written into the archive it reads (or around it) would rewrite or add parts that no
    manifest names: refused."""
    if not isinstance(store, LocalStore):
        return
    archive, target = store.root.resolve(), dest.resolve()
    if target == archive or archive in target.parents or target in archive.parents:
        raise UsageError(f"DEST {dest} overlaps the archive {store.root}: pull into another place")


def _refuse_unheld(
    catalog: Catalog, uri: str, kind: Literal["outlet", "month", "language"], wanted: list[str]
) -> None:
    """A filter that names an outlet, month or language the archive holds no row of is a typo,
    refused with what it holds (a bounded list); where that is not known, nothing is refused."""
    held = catalog.held(kind)
    missing = [name for name in wanted if name not in held] if held is not None else []
    if held is None or not missing:
        return
    listed = ", ".join(one_line(name, _NAME_CHARS) for name in held[:_HELD_LISTED]) or "no rows"
    more = f" and {len(held) - _HELD_LISTED} more (see newsarchive ls)" if len(held) > _HELD_LISTED else ""
    name = one_line(missing[0], _NAME_CHARS)
    raise UsageError(f"no {kind} '{name}' in {mask_uri(uri)}; it holds: {listed}{more}")


def compact_command(args: argparse.Namespace) -> ExitCode:
    if args.outlet or args.month:
        catalog = Catalog.read(_store(args.archive))
        _refuse_unheld(catalog, args.archive, "outlet", args.outlet)
        _refuse_unheld(catalog, args.archive, "month", args.month)
    report = _run_holding(args, "compaction", lambda *run: compact(*run, set(args.outlet), set(args.month)))
    if isinstance(report, ExitCode):
        return report
    for problem in report.problems:
        print(f"PROBLEM {problem}")
    if report.abandoned:
        print(f"removed {report.abandoned} files of a compaction that was interrupted before its manifest")
    if report.manifest:
        print(
            f"compacted {report.partitions} partitions: {report.files_before} files into "
            f"{report.files_after} ({report.rows:,} rows), sealed by {report.manifest}"
        )
    else:
        print("nothing to compact: no partition holds two or more small files")
    if report.deleted:
        print(f"deleted {report.deleted} files replaced by compaction")
    return ExitCode.PROBLEMS if report.problems else ExitCode.OK


def reindex_command(args: argparse.Namespace) -> ExitCode:
    report = _run_holding(args, "the index rebuild", reindex)
    if isinstance(report, ExitCode):
        return report
    for problem in report.problems:
        print(f"PROBLEM {problem}")
    print(
        f"index rebuilt from {report.parts:,} parts: {report.entries:,} entries in {report.base}, "
        f"replacing {len(report.replaced)} index files"
    )
    if report.visits:
        print(f"kept {report.visits:,} visits (pages that archived no row) of the index files replaced")
    for key in report.visits_lost:
        print(f"the visits of {key} could not be read: the next crawl fetches those pages again")
    for key in report.templates_removed:
        print(f"removed the damaged template {key} (the next crawl learns it again)")
    return ExitCode.PROBLEMS if report.problems else ExitCode.OK


def card_command(args: argparse.Namespace) -> ExitCode:
    store = _store(args.archive)
    catalog = Catalog.read(store)
    registry = load_registry([str(Path(p).resolve()) for p in args.outlets_file])
    terms = {o.id: OutletTerms(o.name, o.timezone, o.licence, o.crawl_policy) for o in registry.values()}
    for path in write_card(catalog, mask_uri(archive_identity(store)), args.out, args.title, terms):
        print(path)
    for problem in catalog.problems:
        print(f"PROBLEM {problem}")
    return ExitCode.PROBLEMS if catalog.problems else ExitCode.OK


def reextract_command(args: argparse.Namespace) -> ExitCode:
    source = _store(args.archive)
    if args.outlet:  # before the new archive is touched: a typo must not seal an empty one
        _refuse_unheld(Catalog.read(source), args.archive, "outlet", args.outlet)
    settings = _settings(args.to)
    extract_workers(settings, args.jobs)  # refused before the new archive is touched
    target = store_from_settings(settings)
    _lists_any(target, f"{MANIFESTS}/")  # an unreachable store is said before any work starts
    registry = load_registry([str(Path(p).resolve()) for p in args.outlets_file])
    hints = {
        outlet.id: OutletHints(outlet.timezone, outlet.extraction.drop, outlet.extraction.body)
        for outlet in registry.values()
    }
    run_id = new_crawl_id()
    try:
        with holding(target, settings, run_id, False) as free:
            if not free:
                return ExitCode.BUSY
            with _counter() as seen:
                archive = Publisher(target, spool_from_settings(settings, target))
                pool = page_pool(settings, args.jobs)  # the crawl's worker pool, as the crawl configures it

                async def in_pool() -> ReextractReport:
                    async with pool:
                        return await reextract(source, archive, pool, run_id, hints, set(args.outlet), seen)

                report = asyncio.run(in_pool())
    except ReextractError as exc:
        raise UsageError(str(exc)) from None
    for line in report.problems + report.failed:
        print(f"PROBLEM {line}")
    dropped = ", ".join(f"{reason} {count}" for reason, count in report.dropped.most_common())
    print(
        f"{report.rows:,} rows into {mask_uri(args.to)}: {report.reextracted:,} extracted again from their "
        f"WARC records ({report.text_changed:,} with another text), {report.copied:,} without a capture "
        f"copied as they were, {len(report.failed)} failed and copied as they were"
        + (f"; no article any more: {dropped}" if dropped else "")
    )
    manifests = ", ".join(report.published.manifests) or "no manifest (the store failed: run flush)"
    print(f"{report.warcs} WARCs copied; sealed by {manifests}")
    problems = report.problems or report.failed or not report.published.manifests
    return ExitCode.PROBLEMS if problems else ExitCode.OK


def _run_holding(
    args: argparse.Namespace, what: str, work: Callable[[Store, Path, str], Report]
) -> Report | ExitCode:
    """``work(store, workdir, run_id)`` on ``args.archive``, holding its lock; the exit code when
    it could not start, or when the store failed or the lease was lost (``what`` stopped: what
    it did is whole, and the next run goes on)."""
    settings = _settings(args.archive)
    store = store_from_settings(settings)
    _exists(store, args.archive)
    run_id = new_crawl_id()
    try:
        with holding(store, settings, run_id, args.wait) as free:
            if not free:
                return ExitCode.BUSY
            with _workdir(store, run_id) as workdir:
                return work(store, workdir, run_id)
    except StoreError as exc:
        print(f"PROBLEM {what} stopped: {exc}; nothing is lost, run it again")
        return ExitCode.PROBLEMS


@contextlib.contextmanager
def _counter() -> Iterator[Callable[[int], None] | None]:
    """A running count of rows on a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task("re-extracting rows", total=None)
        yield lambda rows: progress.update(task, completed=rows)


@contextlib.contextmanager
def _workdir(store: Store, run_id: str) -> Iterator[Path]:
    """Where new files wait for the store: inside a local archive (then they are linked into
    place, not copied), else a temporary folder."""
    if isinstance(store, LocalStore):
        folder = store.root / f".compact-{run_id}"
        folder.mkdir()
        try:
            yield folder
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    else:
        with tempfile.TemporaryDirectory(prefix="newsarchive-compact-") as folder:
            yield Path(folder)


@contextlib.contextmanager
def _progress(what: str) -> Iterator[Callable[[ArchivedFile, int], None] | None]:
    """A progress bar over the archive's files on a terminal; nothing otherwise."""
    if not sys.stderr.isatty():
        yield None
        return
    from rich.progress import Progress

    with Progress(transient=True) as progress:
        task = progress.add_task(what, total=None)
        yield lambda file, total: progress.update(task, advance=1, total=total, description=file.key)


def _size(count: float) -> str:
    unit = "B"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if count < 1000 or unit == "TB":
            break
        count /= 1000
    return f"{count:.0f} B" if unit == "B" else f"{count:.1f} {unit}"
