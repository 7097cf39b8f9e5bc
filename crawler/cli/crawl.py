"""``newsarchive crawl`` and ``flush``: the outlets crawled into the archive, the spool published.

Scrapy and Twisted are imported when a crawl or a flush runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.cli.exits import ExitCode
from crawler.cli.locking import holding
from crawler.cli.registry import registry_arguments
from crawler.from_settings import spool_from_settings, store_from_settings
from crawler.registry import load_registry
from crawler.report import pending_line, published_line, quarantined_line, run_verdict, summary
from pipelines.archive.keys import new_crawl_id
from pipelines.archive.publish import publish_spool
from pipelines.archive.spool import spool_for
from pipelines.archive.storage import Store, write_atomically
from pipelines.runtime.imports import unimportable

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import Settings
    from twisted.python.failure import Failure

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


def add_commands(commands: argparse._SubParsersAction) -> None:
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
    registry_arguments(crawl)
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
        help=f"if another run holds the archive, wait for it (default: exit {ExitCode.BUSY.value} at once)",
    )


def _settings(args: argparse.Namespace, overrides: dict[str, Any]) -> Settings:
    from scrapy.settings import Settings

    from crawler.shared.extension import SecretUrl

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


def _lock_run(settings: Settings) -> str:
    """Who holds the archive, as its lock records it: the crawl's id, or ``flush``."""
    return settings.get("NEWSARCHIVE_CRAWL_ID") or "flush"


def _lock_group(store: Store, settings: Settings) -> str | None:
    """The workers of one crawl in Redis share the archive: their group's name."""
    from crawler.shared.extension import crawl_scope

    if not settings.get("REDIS_URL"):
        return None
    return "redis crawl " + crawl_scope(store, settings.getlist("NEWSARCHIVE_OUTLETS"))


def crawl_command(args: argparse.Namespace) -> ExitCode:
    from scrapy.crawler import CrawlerProcess

    from crawler.spiders.outlets import OutletsSpider

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
        with holding(
            store,
            settings,
            _lock_run(settings),
            args.wait,
            shared=_lock_group(store, settings),
            spool_only_without=True,
            wait_hint=True,
        ) as free:
            if not free:
                return ExitCode.BUSY
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
    code = crawl_exit_code(stats, healthy)
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


def crawl_exit_code(stats: dict[str, Any], healthy: bool) -> ExitCode:
    """The most serious first: a bug of ours, uploads pending, stopped early, anything else."""
    if any(key.startswith("bugs/") for key in stats):
        return ExitCode.BUG
    if stats.get("publish/pending_crawls"):
        return ExitCode.PENDING
    if stats.get("finish_reason") not in ("finished", None):
        return ExitCode.STOPPED
    return ExitCode.OK if healthy else ExitCode.PROBLEMS


def flush_command(args: argparse.Namespace) -> ExitCode:
    settings = _settings(args, {})
    store = store_from_settings(settings)
    # the operator names the archive: an older version's spool, which records none, is its
    spool = spool_for(store, settings.get("ARCHIVE_SPOOL"), claim_unmarked=True)
    with holding(
        store, settings, _lock_run(settings), args.wait, shared=_lock_group(store, settings), wait_hint=True
    ) as free:
        if not free:
            return ExitCode.BUSY
        report = publish_spool(store, spool)
    lines = [
        published_line(
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
    code = ExitCode.PENDING if report.pending_crawls else ExitCode.OK if healthy else ExitCode.PROBLEMS
    lines += [f"PROBLEM {line}" for line in report.damaged]
    if spool.unclaimed:
        lines.append(f"PROBLEM {spool.unclaimed}")
    if report.quarantined:
        lines.append(
            "PROBLEM " + quarantined_line(len(report.quarantined), str(Path(report.quarantined[-1]).parent))
        )
    if report.pending_crawls:
        lines.append(
            "PROBLEM "
            + pending_line(
                report.pending_files,
                len(report.pending_crawls),
                str(spool.root),
                report.errors[-1] if report.errors else None,
            )
        )
    if not (args.quiet and healthy):
        print("\n".join(lines))
    return code
