"""``newsarchive crawl`` and ``flush``: the outlets crawled into the archive, the spool published.

Scrapy and Twisted are imported when a crawl or a flush runs, not when the parser is built.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import io
import json
import logging
import math
import os
import re
import sys
import traceback
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.cli.exits import ExitCode, UsageError
from crawler.cli.locking import holding
from crawler.cli.registry import registry_arguments
from crawler.from_settings import extract_workers, spool_from_settings, store_from_settings
from crawler.registry import Registry, RegistryError, load_registry
from crawler.report import pending_line, published_line, quarantined_line, run_verdict, summary
from pipelines.archive.keys import new_crawl_id
from pipelines.archive.lock import LockRefused
from pipelines.archive.publish import publish_spool
from pipelines.archive.spool import spool_for
from pipelines.archive.storage import Store, StoreError, write_atomically
from pipelines.runtime.imports import unimportable
from pipelines.runtime.pool import TASK_RECORDS

if TYPE_CHECKING:
    from scrapy.crawler import Crawler
    from scrapy.settings import Settings
    from twisted.python.failure import Failure

# what --mirror and --mirror-url need: refused in -s with them
MIRROR_NEEDS = {
    "DOWNLOAD_HANDLERS": {
        "http": "crawler.mirror.handler.MirrorDownloadHandler",
        "https": "crawler.mirror.handler.MirrorDownloadHandler",
    },
}
# a loopback server needs no politeness delays; an explicit -s of these wins
MIRROR_POLITENESS = {"AUTOTHROTTLE_ENABLED": False, "DOWNLOAD_DELAY": 0, "CONCURRENT_REQUESTS_PER_DOMAIN": 8}
# -s of a component's list, or of a class by its import path (TWISTED_DNS_RESOLVER=pkg.Resolver):
# the components it adds may read settings no one here knows, so with one of these on the command
# line an unknown -s NAME is let through
COMPONENT_SETTINGS = (
    "ADDONS",
    "DOWNLOAD_HANDLERS",
    "DOWNLOADER_MIDDLEWARES",
    "EXTENSIONS",
    "ITEM_PIPELINES",
    "SPIDER_MIDDLEWARES",
)
# pages a library logged about while the workers extracted them (their outcome, not the run's errors)
LIBRARY_LOGGED = "extract/library_logged"
_CLASS_PATH = re.compile(r"[A-Za-z_][\w.]*\.[A-Z]\w*")
_DURATION = re.compile(r"(\d+(?:\.\d*)?)([smh]?)")
_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600}


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
        metavar="DAYS",
        help="fetch known articles again when last fetched longer ago than this: a changed text is "
        "archived as the article's next version (default: never); also the pages whose last fetch "
        "archived no row, when this is shorter than REVISIT_AFTER_DAYS (30)",
    )
    crawl.add_argument(
        "--max-runtime",
        metavar="DURATION",
        help="stop the crawl after this long (90s, 30m, 2h, or seconds) as an interrupted run, exit "
        f"{ExitCode.STOPPED.value}: what it fetched is archived, the next run fetches the rest",
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
        help="override a setting of Scrapy, newsarchive or scrapy-redis (repeatable); an unknown NAME "
        "is refused, unless the same command line adds components (EXTENSIONS, ITEM_PIPELINES, ..., "
        "or a class by its import path), whose settings cannot be known",
    )
    crawl.add_argument("--log-level", default="WARNING", help="Scrapy log level (default WARNING)")
    crawl.add_argument(
        "--quiet",
        action="store_true",
        help="print only when the run needs a look (for cron): nothing on exit 0, nor on exit "
        f"{ExitCode.BUSY.value} (the previous run still going)",
    )
    crawl.add_argument(
        "--summary-json",
        metavar="FILE",
        help="also write the run's figures, exit code and reason as JSON to FILE, on every exit once "
        "the command line is read (-: to stdout, and the summary to stderr)",
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
    """A crawl run; its ``--summary-json`` written whatever the exit, so an alert never reads the
    last run's verdict as this one's."""
    crawl_id, started_at = new_crawl_id(), datetime.now(UTC)

    def record(
        code: ExitCode, reason: str, outlet_ids: Iterable[str] = (), stats: dict[str, Any] | None = None
    ) -> ExitCode:
        """``stats`` None: no crawl ran, the verdict has the same shape, every figure nought."""
        if args.summary_json and _writable_file(args.summary_json):
            stats = stats or {"start_time": started_at, "finish_time": datetime.now(UTC)}
            try:
                _write_verdict(args.summary_json, run_verdict(outlet_ids, stats, crawl_id, code, reason))
            except OSError as exc:  # said, the run's own exit code kept
                said = f"newsarchive: --summary-json {args.summary_json}: {exc.strerror or exc}"
                print(said, file=sys.stderr)
        return code

    def bug(exc: Exception) -> ExitCode:  # said with its traceback, as the crawl says a bug of ours
        traceback.print_exc()
        return record(ExitCode.BUG, f"our own code raised ({type(exc).__name__}: {exc}); please report it")

    with contextlib.ExitStack() as mirror:
        try:
            registry, settings, store = _prepared(args, crawl_id, mirror)
        except (ValueError, KeyError, StoreError) as exc:  # main() says it on one line, exit 2
            record(ExitCode.USAGE, _usage_reason(exc))
            raise
        except Exception as exc:
            return bug(exc)
        try:
            return _crawl(args, registry, settings, store, started_at, record)
        except LockRefused as exc:  # a lock that cannot be trusted: configuration, exit 2
            record(ExitCode.USAGE, _usage_reason(exc))
            raise
        except Exception as exc:
            return bug(exc)


def _prepared(
    args: argparse.Namespace, crawl_id: str, mirror: contextlib.ExitStack
) -> tuple[Registry, Settings, Store]:
    """The outlets, settings and store of the run: what the command line says, refused (exit 2)
    before anything runs when it is wrong; the mirror server started (stopped with ``mirror``)."""
    outlet_files = [str(Path(p).resolve()) for p in args.outlets_file]
    registry = load_registry(outlet_files)
    if args.outlet:
        registry = registry.select(args.outlet)
    overrides: dict[str, Any] = {
        "NEWSARCHIVE_OUTLETS_FILES": outlet_files,
        "NEWSARCHIVE_OUTLETS": list(registry),
        "NEWSARCHIVE_CRAWL_ID": crawl_id,
        "LOG_LEVEL": args.log_level.upper(),
    }
    if args.contact:
        overrides["CONTACT_URL"] = args.contact
    if args.no_warc:
        overrides["WARC_ENABLED"] = False
    if args.refetch_after is not None:
        overrides["REFETCH_AFTER_DAYS"] = _days(args.refetch_after)
    if args.redis:
        overrides["REDIS_URL"] = args.redis
    if sys.stderr.isatty() and not args.quiet:
        overrides["PROGRESS"] = True
    if args.started_workers:
        overrides["EXTRACT_STARTED_WORKERS"] = args.started_workers
    assigned = _assignments(args.set)
    for name in ("REFETCH_AFTER_DAYS", "REVISIT_AFTER_DAYS"):
        if name in assigned:
            assigned[name] = _days(assigned[name], f"-s {name}")
    if args.max_runtime is not None:
        if "CLOSESPIDER_TIMEOUT" in assigned:
            raise UsageError("--max-runtime and -s CLOSESPIDER_TIMEOUT: give one of them")
        overrides["CLOSESPIDER_TIMEOUT"] = duration_seconds(args.max_runtime)
    mirrored = args.mirror or args.mirror_url
    if mirrored and (needed := sorted({*MIRROR_NEEDS, "MIRROR_URL"} & set(assigned))):
        raise UsageError(f"-s {', '.join(needed)}: --mirror and --mirror-url set it themselves")
    if args.mirror:
        from crawler.mirror.server import MirrorServer

        args.mirror_url = mirror.enter_context(MirrorServer()).url
    if mirrored:
        overrides.update(MIRROR_NEEDS, **MIRROR_POLITENESS, MIRROR_URL=args.mirror_url)
    overrides.update(assigned)
    settings = _settings(args, overrides)
    extract_workers(settings)  # fewer than one page worker would wait for ever
    if not _writable_file(args.summary_json):
        raise UsageError(f"--summary-json {args.summary_json}: not a file in an existing folder")
    store = store_from_settings(settings)  # an unusable destination fails before any request (no client yet)
    spool_from_settings(settings, store)  # a spool of another archive's crawls, too
    return registry, settings, store


def _crawl(
    args: argparse.Namespace,
    registry: Registry,
    settings: Settings,
    store: Store,
    started_at: datetime,
    record: Callable[..., ExitCode],
) -> ExitCode:
    from scrapy.crawler import CrawlerProcess

    from crawler.spiders.outlets import OutletsSpider

    crawl_id = settings["NEWSARCHIVE_CRAWL_ID"]
    output = sys.stderr if args.summary_json == "-" else sys.stdout
    with contextlib.ExitStack() as running:
        busy_said = io.StringIO()  # "held by ...": not said under --quiet, where 75 is routine
        with contextlib.nullcontext() if args.wait else contextlib.redirect_stderr(busy_said):
            free = running.enter_context(
                holding(
                    store,
                    settings,
                    _lock_run(settings),
                    args.wait,
                    shared=_lock_group(store, settings),
                    spool_only_without=True,
                    wait_hint=True,
                )
            )
        said = busy_said.getvalue()
        if not free:
            if not args.quiet:
                sys.stderr.write(said)
            return record(ExitCode.BUSY, said.strip().removeprefix("newsarchive: "))
        sys.stderr.write(said)  # the lock let the crawl run, and may have said how (spooling only)
        process = CrawlerProcess(settings)
        crawler = process.create_crawler(OutletsSpider)
        library_logged = _LibraryLogged(crawler)
        logging.getLogger().addHandler(library_logged)
        running.callback(logging.getLogger().removeHandler, library_logged)
        process.crawl(crawler).addErrback(_not_started, crawler)
        # pyarrow imports pandas, when installed, the first time it converts Python objects
        # (every part the crawl writes) only to ask whether they are pandas objects: 48 MB
        # of the crawl's memory and 0.1 s, for a library no stage uses.
        with unimportable("pandas"):
            process.start()
    # a crawl that could not start has no times of its own
    stats = {"start_time": started_at, "finish_time": datetime.now(UTC), **crawler.stats.get_stats()}
    report, healthy = summary(registry, stats, store)
    report = f"crawl {crawl_id}\n{report}"
    if not (args.quiet and healthy):
        print(report, file=output)
    code = crawl_exit_code(stats, healthy)
    problems = [line.removeprefix("PROBLEM ") for line in report.splitlines() if line.startswith("PROBLEM ")]
    return record(code, "; ".join(problems) or "all well", registry, stats)


class _LibraryLogged(logging.Handler):
    """Counts the pages a library logged about while a worker extracted them
    (:data:`pipelines.runtime.pool.TASK_RECORDS`): that page's outcome, at INFO, not an error of the run."""

    def __init__(self, crawler: Crawler):
        super().__init__(logging.INFO)
        self.crawler = crawler  # its stats are there once the crawl starts, before any page

    def emit(self, record: logging.LogRecord) -> None:
        if hasattr(record, TASK_RECORDS):
            self.crawler.stats.inc_value(LIBRARY_LOGGED)


def _write_verdict(destination: str, verdict: dict[str, Any]) -> None:
    """``--summary-json``: written whole or not at all (a new file renamed over the old), or to stdout."""
    text = json.dumps(verdict, indent=1)
    if destination == "-":
        print(text)
    else:
        write_atomically(Path(destination), lambda f: f.write(text.encode()))


def _writable_file(summary_json: str | None) -> bool:
    """``--summary-json`` can be written: none asked, ``-``, or a file in an existing folder."""
    if summary_json in (None, "-"):
        return True
    path = Path(summary_json)
    return not path.is_dir() and path.parent.is_dir()


def _usage_reason(exc: Exception) -> str:
    """The one line :func:`crawler.cli.main` prints for what it exits 2 on."""
    said = exc.args[0] if exc.args else exc
    if isinstance(exc, RegistryError):
        return f"registry error: {said}"
    return f"the archive cannot be read: {said}" if isinstance(exc, StoreError) else str(said)


def duration_seconds(text: str) -> float:
    """``--max-runtime``'s DURATION: ``90s``, ``30m``, ``2h`` or plain seconds, more than none."""
    matched = _DURATION.fullmatch(text.strip().lower())
    seconds = float(matched[1]) * _SECONDS[matched[2]] if matched else 0.0
    if not seconds:
        raise UsageError(f"--max-runtime {text}: not a duration (90s, 30m, 2h, or seconds, more than 0)")
    return seconds


def _days(text: str, said: str = "--refetch-after") -> float:
    """``--refetch-after``'s DAYS (or a setting's, ``said`` so): a number, 0 or more (0: every
    known article, every run)."""
    try:
        days = float(text)
    except ValueError:
        days = math.nan
    if not (math.isfinite(days) and days >= 0):
        raise UsageError(f"{said} {text}: not a number of days (0 or more)")
    return days


def _assignments(texts: list[str]) -> dict[str, str]:
    """``-s NAME=VALUE``s, each a setting someone declares (see :data:`COMPONENT_SETTINGS`)."""
    assigned = {}
    for text in texts:
        name, equals, value = text.partition("=")
        if not (equals and name):
            raise UsageError(f"-s {text}: not NAME=VALUE")
        assigned[name] = value
    adds_components = any(
        name in COMPONENT_SETTINGS or _CLASS_PATH.fullmatch(value) for name, value in assigned.items()
    )
    if not adds_components:
        for name in assigned:
            _check_setting_name(name)
    return assigned


def _check_setting_name(name: str) -> None:
    """Refuses a name that is no setting of Scrapy, of newsarchive or of scrapy-redis (a typo
    would otherwise change nothing, silently), naming the closest ones."""
    import scrapy.settings.default_settings

    import crawler.settings

    known = {*_names(scrapy.settings.default_settings), *_names(crawler.settings), "MIRROR_URL"}
    if name in known:
        return
    # scrapy-redis imports redis: only for a name that is neither Scrapy's nor ours
    import scrapy_redis.connection
    import scrapy_redis.defaults

    known |= {*_names(scrapy_redis.defaults), *scrapy_redis.connection.SETTINGS_PARAMS_MAP}
    if name in known:
        return
    close = difflib.get_close_matches(name, sorted(known), n=3)
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    raise UsageError(f"-s {name}: no setting of Scrapy, newsarchive or scrapy-redis has this name{hint}")


def _names(module: object) -> set[str]:
    return {name for name in vars(module) if name.isupper() and not name.startswith("_")}


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
