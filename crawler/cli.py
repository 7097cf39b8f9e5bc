"""``newsarchive``: crawl outlets into the archive, extract saved pages, list the registry, serve mirrors.

Exit codes of ``crawl`` and ``flush``: 0 all well; 1 the run needs a look (errors logged, pages
that failed, an outlet where no article page was found, a spooled part set aside); 2 bad
arguments, registry or archive URI; 3 parts wait in the spool because the store failed (the next
run or ``flush`` publishes them); 4 stopped before its end (SIGTERM, SIGINT, a limit); 5 a bug of
ours (an exception in our code); 75 another run holds the archive (``--wait`` waits instead), or
(``flush``) the store failed while its lock was taken: try again later. A crawl that cannot take
the lock for a store error runs without it, and only spools (exit 3).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import shlex
import sys
import threading
from collections.abc import AsyncIterator, Iterator, Sequence
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from scrapy.crawler import Crawler, CrawlerProcess
from scrapy.settings import Settings
from twisted.python.failure import Failure

from crawler.archive_tools import add_commands
from crawler.extensions import spool_from_settings, store_from_settings
from crawler.redis_crawl import SecretUrl, crawl_scope
from crawler.registry import Registry, RegistryError, load_registry
from crawler.spiders.outlets import OutletsSpider, new_crawl_id, pages_found
from pipelines.archive.lock import ACCEPT_SETTING, BUSY_EXIT, ArchiveBusy, LockUnavailable, archive_lock
from pipelines.archive.publish import publish_spool, spool_for
from pipelines.archive.storage import LocalStore, Store, write_atomically
from pipelines.runtime.imports import unimportable
from pipelines.runtime.pool import StartedWorker, WorkerPool

PENDING_EXIT = 3  # the run went well, but parts wait in the spool for the store
STOPPED_EXIT = 4  # stopped before its end (SIGTERM, SIGINT, a CLOSESPIDER_* limit): the rest next run
BUG_EXIT = 5  # our own code raised (a bug to report), as opposed to the sites failing
MIRROR_SETTINGS = {
    "DOWNLOAD_HANDLERS": {
        "http": "crawler.mirror.handler.MirrorDownloadHandler",
        "https": "crawler.mirror.handler.MirrorDownloadHandler",
    },
    # a loopback server needs no politeness delays
    "AUTOTHROTTLE_ENABLED": False,
    "DOWNLOAD_DELAY": 0,
    "CONCURRENT_REQUESTS_PER_DOMAIN": 8,
}
_NOT_ARTICLE = ("empty", "too_short", "not_html")


def main(argv: Sequence[str] | None = None, started_workers: Sequence[StartedWorker] = ()) -> int:
    """The command ``argv`` names; ``started_workers`` (:mod:`crawler.__main__`) for a crawl."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.started_workers = list(started_workers)
    try:
        return args.command(args)
    except RegistryError as exc:
        print(f"newsarchive: registry error: {exc}", file=sys.stderr)
        return 2
    except (KeyError, ValueError) as exc:
        print(f"newsarchive: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsarchive", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    crawl = commands.add_parser("crawl", help="crawl the outlets and archive their articles")
    crawl.set_defaults(command=crawl_command)
    mirror = crawl.add_mutually_exclusive_group()
    mirror.add_argument(
        "--mirror",
        action="store_true",
        help="crawl the offline mirrors on loopback instead of the live sites",
    )
    mirror.add_argument(
        "--mirror-url",
        metavar="URL",
        help="crawl through an already running mirror (see `newsarchive mirror`)",
    )
    _archive_arguments(crawl)
    _registry_arguments(crawl)
    crawl.add_argument(
        "--outlet", action="append", default=[], metavar="ID", help="crawl only this outlet (repeatable)"
    )
    crawl.add_argument("--contact", metavar="URL", help="contact URL sent in the User-Agent")
    crawl.add_argument(
        "--redis",
        metavar="URL",
        default=os.environ.get("NEWSARCHIVE_REDIS_URL"),
        help="join the crawl of this archive and these outlets in Redis (redis://HOST:PORT/DB), or "
        "start one: any number of workers on any number of machines share its queue "
        "(default: $NEWSARCHIVE_REDIS_URL, which keeps a password off the command line)",
    )
    crawl.add_argument(
        "--refetch-after",
        type=float,
        metavar="DAYS",
        help="fetch known articles again when last fetched longer ago than this: a changed text is "
        "archived as the article's next version (default: never)",
    )
    crawl.add_argument(
        "--no-warc",
        action="store_true",
        help="keep no WARC of the exchanges, only the extracted text (rows get no warc_file)",
    )
    crawl.add_argument(
        "-s",
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a Scrapy setting (repeatable)",
    )
    crawl.add_argument("--log-level", default="WARNING", help="Scrapy log level (default WARNING)")
    crawl.add_argument(
        "--quiet", action="store_true", help="print the summary only when the run needs a look (for cron)"
    )
    crawl.add_argument(
        "--summary-json", metavar="FILE", help="also write the run's figures and exit code as JSON to FILE"
    )

    flush = commands.add_parser("flush", help="publish the parts and manifests waiting in the spool")
    flush.set_defaults(command=flush_command)
    _archive_arguments(flush)
    flush.add_argument("--quiet", action="store_true", help="print only when something is left")

    outlets = commands.add_parser("outlets", help="validate the registry and list its outlets")
    outlets.set_defaults(command=outlets_command)
    _registry_arguments(outlets)

    pages = commands.add_parser(
        "extract", help="print the text and metadata the crawl would archive of saved pages"
    )
    pages.set_defaults(command=extract_command)
    pages.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="page files, or folders searched for *.html, *.htm, *.shtml, *.xhtml, *.raw",
    )
    pages.add_argument(
        "--jsonl",
        action="store_true",
        help="one JSON object a line (default: indented, blank line between pages)",
    )
    addresses = pages.add_mutually_exclusive_group()
    addresses.add_argument("--url", help="the URL the pages were fetched from (default: their file: URI)")
    addresses.add_argument(
        "--urls-file",
        type=Path,
        metavar="MAP",
        help="lines PATH<TAB>URL: each page's address; the pages of one site are learned together",
    )
    pages.add_argument(
        "--timezone",
        default="UTC",
        help="zone of dates printed without an offset (default UTC; outlets set theirs)",
    )
    pages.add_argument("--jobs", type=int, default=None, help="worker processes (default: all cores)")

    add_commands(commands)  # ls, verify, pull

    serve = commands.add_parser("mirror", help="serve the offline mirrors until interrupted")
    serve.set_defaults(command=mirror_command)
    serve.add_argument("--port", type=int, default=8765)
    return parser


def _archive_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--archive",
        metavar="URI",
        default=None,
        help="archive destination: a folder or s3://bucket/prefix (default: ARCHIVE_URI, i.e. output/)",
    )
    parser.add_argument(
        "--spool", metavar="DIR", default=None, help="where parts wait for the store (default: ARCHIVE_SPOOL)"
    )
    parser.add_argument(
        "--wait",
        action="store_true",
        help=f"if another run holds the archive, wait for it (default: exit {BUSY_EXIT} at once)",
    )


def _settings(args: argparse.Namespace, overrides: dict[str, Any]) -> Settings:
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    if args.archive:
        overrides["ARCHIVE_URI"] = args.archive
    if args.spool:
        overrides["ARCHIVE_SPOOL"] = args.spool
    settings.setdict(overrides, priority="cmdline")
    if settings.get("REDIS_URL"):  # Scrapy logs the settings: no password in the log
        settings.set(
            "REDIS_URL", SecretUrl(settings["REDIS_URL"]), priority=settings.getpriority("REDIS_URL")
        )
    return settings


def _registry_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--outlets-file",
        action="append",
        default=[],
        metavar="PATH",
        help="extra registry file; its outlets add to or replace the shipped ones",
    )


def crawl_command(args: argparse.Namespace) -> int:
    outlet_files = [str(Path(p).resolve()) for p in args.outlets_file]
    registry = load_registry(outlet_files)
    if args.outlet:
        registry = registry.select(args.outlet)
    overrides: dict[str, Any] = {
        "NEWSARCHIVE_OUTLETS_FILES": outlet_files,
        "NEWSARCHIVE_OUTLETS": list(registry),
        "NEWSARCHIVE_CRAWL_ID": new_crawl_id(),
        "LOG_LEVEL": args.log_level.upper(),
    }
    if args.contact:
        overrides["CONTACT_URL"] = args.contact
    if args.no_warc:
        overrides["WARC_ENABLED"] = False
    if args.refetch_after is not None:
        overrides["REFETCH_AFTER_DAYS"] = args.refetch_after
    if args.redis:
        overrides["REDIS_URL"] = args.redis
    if sys.stderr.isatty() and not args.quiet:
        overrides["PROGRESS"] = True
    if args.started_workers:
        overrides["EXTRACT_STARTED_WORKERS"] = args.started_workers
    for assignment in args.set:
        name, _, value = assignment.partition("=")
        overrides[name] = value
    server = None
    if args.mirror:
        from crawler.mirror.server import MirrorServer

        server = MirrorServer().start()
        args.mirror_url = server.url
    if args.mirror_url:
        overrides.update(MIRROR_SETTINGS, MIRROR_URL=args.mirror_url)
    settings = _settings(args, overrides)
    store = store_from_settings(settings)  # an unusable destination fails before any request (no client yet)
    spool_from_settings(settings, store)  # a spool of another archive's crawls, too
    try:
        with _holding(store, settings, args.wait, spool_only_without=True) as free:
            if not free:
                return BUSY_EXIT
            process = CrawlerProcess(settings)
            crawler = process.create_crawler(OutletsSpider)
            process.crawl(crawler).addErrback(_not_started, crawler)
            # pyarrow imports pandas, when installed, the first time it converts Python objects
            # (every part the crawl writes) only to ask whether they are pandas objects: 48 MB
            # of the crawl's memory and 0.1 s, for a library no stage uses.
            with unimportable("pandas"):
                process.start()
    finally:
        if server is not None:
            server.stop()
    stats = crawler.stats.get_stats()
    report, healthy = summary(registry, stats, store)
    report = f"crawl {settings['NEWSARCHIVE_CRAWL_ID']}\n{report}"
    if not (args.quiet and healthy):
        print(report)
    code = _exit_code(stats, healthy)
    if args.summary_json:
        verdict = run_verdict(registry, stats, settings["NEWSARCHIVE_CRAWL_ID"], code)
        write_atomically(Path(args.summary_json), lambda f: f.write(json.dumps(verdict, indent=1).encode()))
    return code


def _not_started(failure: Failure, crawler: Crawler) -> None:
    """The crawl could not start (a component raised while Scrapy built it: a bug of ours, or a
    setting naming a wrong class): said with its traceback, counted as a bug, not left to look
    like sites that gave no page."""
    crawler.stats.inc_value("bugs/start")
    print(f"newsarchive: the crawl could not start:\n{failure.getTraceback()}", file=sys.stderr)


def _outlet_count(stats: dict[str, Any], outlet_id: str, key: str) -> int:
    return int(stats.get(f"outlet/{outlet_id}/{key}", 0))


def _exit_code(stats: dict[str, Any], healthy: bool) -> int:
    """The most serious first: a bug of ours, uploads pending, stopped early, anything else."""
    if any(key.startswith("bugs/") for key in stats):
        return BUG_EXIT
    if stats.get("publish/pending_crawls"):
        return PENDING_EXIT
    if stats.get("finish_reason") not in ("finished", None):
        return STOPPED_EXIT
    return 0 if healthy else 1


def _under(stats: dict[str, Any], prefix: str) -> dict[str, Any]:
    """The stats named ``prefix<what>``, by what."""
    return {key.removeprefix(prefix): value for key, value in stats.items() if key.startswith(prefix)}


def _by_reason(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items()))


def run_verdict(registry: Registry, stats: dict[str, Any], crawl_id: str, code: int) -> dict[str, Any]:
    """The run as ``--summary-json`` writes it, for scripts and alerting."""

    def count(outlet_id: str, key: str) -> int:
        return _outlet_count(stats, outlet_id, key)

    outlets = {}
    for outlet_id in registry:
        prefix = f"outlet/{outlet_id}/failed/"
        first, last = (
            stats.get(f"outlet/{outlet_id}/first_page_at"),
            stats.get(f"outlet/{outlet_id}/last_page_at"),
        )
        outlets[outlet_id] = {
            "discovered": count(outlet_id, "known") + count(outlet_id, "article_pages"),
            "fetched": count(outlet_id, "article_pages"),
            "skipped_known": count(outlet_id, "known"),
            "archived": count(outlet_id, "archived"),
            "copies": count(outlet_id, "copies"),
            "changed": count(outlet_id, "changed"),
            "unchanged": count(outlet_id, "dropped/unchanged"),
            "not_article": sum(count(outlet_id, f"dropped/{r}") for r in _NOT_ARTICLE),
            "noarchive": count(outlet_id, "dropped/noarchive"),
            "duplicates": count(outlet_id, "dropped/duplicate_url"),
            "failed": _under(stats, prefix),
            "refused": _under(stats, f"outlet/{outlet_id}/refused/"),
            "seconds": round(last - first, 3) if first is not None and last is not None else 0.0,
        }
    totals: dict[str, Any] = {}
    for figures in outlets.values():
        for name, value in figures.items():
            if isinstance(value, dict):
                failed = totals.setdefault(name, {})
                for reason, n in value.items():
                    failed[reason] = failed.get(reason, 0) + n
            else:
                totals[name] = totals.get(name, 0) + value
    totals["seconds"] = round((stats["finish_time"] - stats["start_time"]).total_seconds(), 3)
    return {
        "crawl_id": crawl_id,
        "started_at": stats["start_time"].isoformat(),
        "finished_at": stats["finish_time"].isoformat(),
        "outlets": outlets,
        "totals": totals,
        "pending_uploads": int(stats.get("publish/pending_files", 0)),
        "exit_code": code,
    }


def summary(registry: Registry, stats: dict[str, Any], store: Store) -> tuple[str, bool]:
    """The run's per-outlet table from the crawl stats, and whether the run was healthy."""
    header = (
        "outlet",
        "known",
        "pages",
        "archived",
        "copies",
        "changed",
        "unchanged",
        "not articles",
        "duplicates",
        "failed",
    )
    rows, problems = [], []
    for outlet_id in registry:

        def count(key: str, outlet_id: str = outlet_id) -> int:
            return _outlet_count(stats, outlet_id, key)

        pages, known = count("article_pages"), count("known")
        rows.append(
            (
                outlet_id,
                known,
                pages,
                count("archived"),
                count("copies"),
                count("changed"),
                count("dropped/unchanged"),
                sum(count(f"dropped/{r}") for r in _NOT_ARTICLE),
                count("dropped/duplicate_url"),
                count("failed"),
            )
        )
        found = pages_found(stats, outlet_id)
        if "redis/last_worker" in stats:  # a shared crawl: judged on all its workers, by the last
            found = stats.get(f"redis/crawl_found/{outlet_id}", 0) if stats["redis/last_worker"] else 1
        if found == 0:
            problems.append(f"{outlet_id}: no article page found (discovery broken or site down?)")
    totals = ("total", *(sum(r[i] for r in rows) for i in range(1, len(header))))
    widths = [max(len(str(r[i])) for r in [header, *rows, totals]) for i in range(len(header))]

    def line(row: Sequence[object]) -> str:
        return "  ".join(
            str(v).ljust(w) if i == 0 else str(v).rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )

    if stats.get("finish_reason") not in ("finished", None):
        problems.append(
            f"the crawl was stopped before its end ({stats['finish_reason']}): what it fetched is archived, "
            "its manifest says interrupted, the next run fetches the rest"
        )
    if bugs := _under(stats, "bugs/"):
        problems.append(
            f"our own code raised ({_by_reason(bugs)}): a bug, with its traceback in the log; "
            "please report it"
        )
    if dropped := _under(stats, "redis/dropped/"):
        problems.append(
            f"{sum(dropped.values())} item(s) of the Redis queue dropped unread, no request of this crawl "
            f"({_by_reason(dropped)}): does something else write to this Redis database?"
        )
    if failures := _under(stats, "extract/failed/"):
        problems.append(
            f"{sum(failures.values())} page(s) failed in extraction ({_by_reason(failures)}); not archived, "
            "the next run fetches them again"
        )
    errors = int(stats.get("log_count/ERROR", 0))
    if errors:
        problems.append(f"{errors} error(s) logged; rerun with --log-level INFO for details")
    http_errors = {
        k.rsplit("/", 1)[-1]: v
        for k, v in stats.items()
        if k.startswith("httperror/response_ignored_status_count/")
    }
    lines = [line(header), *(line(r) for r in rows), line(totals), ""]
    lines.append(
        _published(
            *(stats.get(f"publish/{name}", 0) for name in ("files", "bytes", "manifests")),
            store.uri,
            *(stats.get(f"publish/{name}", 0) for name in ("duplicate_rows", "warc_files", "warc_bytes")),
        )
    )
    if stats.get("publish/pending_crawls"):
        problems.append(
            _pending(
                stats["publish/pending_files"],
                stats["publish/pending_crawls"],
                stats.get("publish/spool", "the spool"),
                stats.get("publish/error"),
            )
        )
    if stats.get("publish/quarantined"):
        problems.append(_quarantined(stats["publish/quarantined"], stats["publish/quarantine"]))
    problems += stats.get("archive/damaged", [])
    if http_errors:
        lines.append("HTTP errors: " + ", ".join(f"{code}: {n}" for code, n in sorted(http_errors.items())))
    if stats.get("discovery/not_modified") or stats.get("discovery/sitemap_unchanged"):
        lines.append(
            "unchanged since the last run, not read again: "
            f"{stats.get('discovery/not_modified', 0)} discovery page(s) (304), "
            f"{stats.get('discovery/sitemap_unchanged', 0)} sitemap(s) (lastmod)"
        )
    if refused := _under(stats, "refused/"):
        lines.append(f"article pages not fetched, by reason: {_by_reason(refused)}")
    over = {k.split("/")[1]: v for k, v in stats.items() if k.endswith("/links_over_budget")}
    if over:
        lines.append(
            "over max_article_links, left for the next run: "
            + ", ".join(f"{outlet}: {n}" for outlet, n in sorted(over.items()))
        )
    cut = {k.split("/")[1]: v for k, v in stats.items() if k.endswith("/links_cut")}
    if cut:
        lines.append(
            "pages of over max_links_per_page links, the rest not read: "
            + ", ".join(f"{outlet}: {n}" for outlet, n in sorted(cut.items()))
        )
    if stats.get("discovery/sitemap_cut"):
        lines.append(f"sitemaps cut at max_sitemap_urls, the rest not read: {stats['discovery/sitemap_cut']}")
    if stats.get("extract/dropped/noarchive"):
        lines.append(f"not archived, the page says noarchive: {stats['extract/dropped/noarchive']}")
    if stats.get("robotstxt/forbidden"):
        lines.append(f"not fetched, forbidden by robots.txt: {stats['robotstxt/forbidden']}")
    if isinstance(store, LocalStore):
        lines.append("query it with DuckDB: " + duckdb_command(store.uri))
    lines += [f"PROBLEM {p}" for p in problems]
    return "\n".join(lines), not problems


def _published(
    files: int, size: int, manifests: int, uri: str, duplicate_rows: int, warc_files: int, warc_bytes: int
) -> str:
    warcs = f", {warc_files} WARC(s) with their indexes, {warc_bytes} bytes" if warc_files else ""
    return f"published: {files} file(s), {size} bytes{warcs}, {manifests} manifest(s) to {uri}" + (
        f"; {duplicate_rows} row(s) were in the archive already, not published again"
        if duplicate_rows
        else ""
    )


def _quarantined(parts: int, where: str) -> str:
    return (
        f"{parts} spooled file(s) or crawl(s) set aside in {where} (unreadable, links, or not what a crawl "
        "writes; kept for a look); the rest was published"
    )


def _pending(files: int, crawls: int, spool: str, error: str | None) -> str:
    return (
        f"{files} part file(s) of {crawls} crawl(s) wait in {spool}"
        + (f" ({error})" if error else "")
        + "; the next crawl or `newsarchive flush` publishes them"
    )


@contextlib.contextmanager
def _holding(
    store: Store, settings: Settings, wait: bool, spool_only_without: bool = False
) -> Iterator[bool]:
    """The archive's lock for the ``with`` block; False (and a message) if another run has it,
    or the store failed while it was taken (a crawl then runs ``spool_only_without`` it)."""
    run = settings.get("NEWSARCHIVE_CRAWL_ID") or "flush"
    shared = None
    if settings.get("REDIS_URL"):  # the workers of one crawl in Redis share the archive
        shared = "redis crawl " + crawl_scope(store, settings.getlist("NEWSARCHIVE_OUTLETS"))
    try:
        with archive_lock(
            store,
            run,
            wait,
            settings.getfloat("ARCHIVE_LEASE_SECONDS"),
            shared,
            spool_only_without=spool_only_without,
            accept_unconditional_writes=settings.getbool(ACCEPT_SETTING),
        ):
            yield True
    except ArchiveBusy as busy:
        print(
            f"newsarchive: {store.uri} is held by {busy}; not started (exit {BUSY_EXIT}; "
            "--wait waits for it)",
            file=sys.stderr,
        )
        yield False
    except LockUnavailable as unavailable:
        print(f"newsarchive: {store.uri}: {unavailable}; not started (exit {BUSY_EXIT})", file=sys.stderr)
        yield False


def flush_command(args: argparse.Namespace) -> int:
    settings = _settings(args, {})
    store = store_from_settings(settings)
    # the operator names the archive: an older version's spool, which records none, is its
    spool = spool_for(store, settings.get("ARCHIVE_SPOOL"), claim_unmarked=True)
    with _holding(store, settings, args.wait) as free:
        if not free:
            return BUSY_EXIT
        report = publish_spool(store, spool)
    lines = [
        _published(
            report.files,
            report.bytes,
            len(report.manifests),
            store.uri,
            report.duplicate_rows,
            report.warc_files,
            report.warc_bytes,
        )
    ]
    lines += [f"  {key}" for key in report.manifests]
    if report.busy_crawls:
        lines.append(f"in use by a running crawl, left alone: {', '.join(report.busy_crawls)}")
    healthy = not (report.pending_crawls or report.quarantined or report.damaged or spool.unclaimed)
    code = PENDING_EXIT if report.pending_crawls else 0 if healthy else 1
    lines += [f"PROBLEM {line}" for line in report.damaged]
    if spool.unclaimed:
        lines.append(f"PROBLEM {spool.unclaimed}")
    if report.quarantined:
        lines.append(
            "PROBLEM " + _quarantined(len(report.quarantined), str(Path(report.quarantined[-1]).parent))
        )
    if report.pending_crawls:
        lines.append(
            "PROBLEM "
            + _pending(
                report.pending_files,
                len(report.pending_crawls),
                str(spool.root),
                report.errors[-1] if report.errors else None,
            )
        )
    if not (args.quiet and healthy):
        print("\n".join(lines))
    return code


def duckdb_command(archive: str) -> str:
    """A shell command that shows the archive's articles per outlet and language."""
    files = f"{archive.rstrip('/')}/outlet=*/published=*/*.parquet"  # not the spool's parts
    sql = (
        "SELECT outlet_id, language, language_script, count(*) AS articles "
        f"FROM read_parquet('{files}', hive_partitioning = true) "
        "GROUP BY ALL ORDER BY ALL"
    )
    program = f"import duckdb; duckdb.sql({sql!r}).show()"
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(program)}"


def outlets_command(args: argparse.Namespace) -> int:
    registry = load_registry(args.outlets_file)
    for outlet in registry.values():
        starts = len(outlet.sitemaps) + len(outlet.feeds) + len(outlet.listings)
        print(
            f"{outlet.id:<18} {outlet.region:<6} {','.join(outlet.languages):<4} "
            f"{starts} start point(s)  {outlet.name}"
        )
    return 0


def extract_command(args: argparse.Namespace) -> int:
    """Exit 1 when a page could not be read or extracted; its record says why, the others print."""
    from crawler.pipelines import page_pool
    from pipelines.tools.saved_pages import extract_pages, page_paths, read_urls_file

    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        raise ValueError(f"no such file or folder: {', '.join(missing)}")
    try:
        ZoneInfo(args.timezone)
    except (ValueError, ZoneInfoNotFoundError):
        raise ValueError(f"unknown time zone: {args.timezone}") from None
    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    urls = read_urls_file(args.urls_file) if args.urls_file else None
    pool = page_pool(settings, args.jobs)
    records = extract_pages(page_paths(args.paths), pool, args.url, args.timezone, urls)
    failed = asyncio.run(_print_records(records, pool, args.jsonl))
    if failed:
        print(f"newsarchive: {failed} page(s) could not be read or extracted", file=sys.stderr)
    return 1 if failed else 0


async def _print_records(records: AsyncIterator[dict[str, Any]], pool: WorkerPool, jsonl: bool) -> int:
    """Print each record as it comes; the number that failed."""
    failed = 0
    async with pool:
        async for record in records:
            failed += "error" in record
            if jsonl:
                print(json.dumps(record, ensure_ascii=False))
            else:
                print(json.dumps(record, ensure_ascii=False, indent=2), end="\n\n")
    return failed


def mirror_command(args: argparse.Namespace) -> int:
    from crawler.mirror.server import MirrorServer

    with MirrorServer(port=args.port) as server:
        print(f"mirrors at {server.url}/<host>/<path>, e.g. {server.url}/difang.gmw.cn/cq/ (Ctrl-C to stop)")
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    return 0


def run(argv: Sequence[str] | None = None, started_workers: Sequence[StartedWorker] = ()) -> None:
    """The ``newsarchive`` program, once :mod:`crawler.__main__` has started what it starts first."""
    code = main(argv, started_workers)
    # on the way out the collector would walk every object the command left, several times
    # (0.2 s after a crawl of 400 pages); none of them is garbage worth collecting now
    gc.freeze()
    sys.exit(code)
