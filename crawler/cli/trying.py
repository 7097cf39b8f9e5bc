"""``newsarchive try OUTLET``: an outlet's discovery and extraction tried, nothing archived.

Each discovery page's links are shown with the pattern they matched or why none did, then a few
article pages as the crawl would archive them. The crawl's own spider and extraction stage run
(:mod:`crawler.spiders.trial`, :mod:`pipelines.stages.page`), without the components that write:
no store, spool, lock, WARC or item pipeline. Scrapy is imported only when it runs.
"""

from __future__ import annotations

import argparse
import asyncio
import difflib
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crawler.cli.exits import ExitCode, UsageError
from crawler.cli.registry import registry_arguments
from crawler.from_settings import page_pool
from crawler.registry import Outlet, Registry, load_registry
from crawler.report import by_reason, nothing_found_because, under
from pipelines.article import Article
from pipelines.runtime.pool import TaskFailed
from pipelines.runtime.uri import mask_uri

if TYPE_CHECKING:
    from scrapy.settings import Settings

    from crawler.spiders.trial import TriedPage

DEFAULT_ARTICLES = 3
MAX_ARTICLES = 20
TEXT_LINES_SHOWN = 3  # the first lines of each article's text
LINE_CHARS = 160  # a line of text shown is cut here
# the components that write, or read the archive, left out: nothing is archived
TRIAL_SETTINGS: dict[str, Any] = {
    "ITEM_PIPELINES": {},
    "SPIDER_MIDDLEWARES": {"crawler.middlewares.KnownArticlesMiddleware": None},
    "EXTENSIONS": {"crawler.extensions.BugCounter": 5},
    "WARC_ENABLED": False,
    "TEMPLATE_LEARNING": False,
    "REDIS_URL": "",
}
_VERDICTS = {  # a link's verdict as the counts say it
    "article": "article",
    "listing": "listing page",
    "no_pattern": "matched no article_patterns",
    "offsite": "off-site",
    "not_http": "not http(s)",
    "sitemap": "sitemap",  # a sitemap index's
}


def add_commands(commands: argparse._SubParsersAction) -> None:
    trying = commands.add_parser(
        "try",
        help="try an outlet: its links, the patterns they match, a few articles extracted; archive nothing",
    )
    trying.set_defaults(command=try_command)
    trying.add_argument("outlet", metavar="OUTLET", help="the outlet's id (`newsarchive outlets` lists them)")
    trying.add_argument(
        "--limit",
        type=int,
        default=DEFAULT_ARTICLES,
        metavar="N",
        help=f"article pages fetched and extracted (default {DEFAULT_ARTICLES}, at most {MAX_ARTICLES})",
    )
    registry_arguments(trying)
    mirror = trying.add_mutually_exclusive_group()
    mirror.add_argument(
        "--mirror", action="store_true", help="try the offline mirror on loopback instead of the live site"
    )
    mirror.add_argument("--mirror-url", metavar="URL", help="try through an already running mirror")
    trying.add_argument(
        "--log-level", default="CRITICAL", help="Scrapy's log on stderr (default CRITICAL: none)"
    )


def try_command(args: argparse.Namespace) -> ExitCode:
    """Exit 0 when an article was found and extracted, 1 when none was (said why)."""
    from scrapy.crawler import CrawlerProcess

    from crawler.cli.crawl import MIRROR_NEEDS, MIRROR_POLITENESS, _not_started
    from crawler.spiders.trial import MAX_DISCOVERY_PAGES, TrialSpider

    if not 1 <= args.limit <= MAX_ARTICLES:
        raise UsageError(f"--limit must be 1 to {MAX_ARTICLES}, not {args.limit}")
    outlet_files = [str(Path(p).resolve()) for p in args.outlets_file]
    outlet = _outlet(load_registry(outlet_files), args.outlet)
    overrides: dict[str, Any] = {
        **TRIAL_SETTINGS,
        "NEWSARCHIVE_OUTLETS_FILES": outlet_files,
        "NEWSARCHIVE_OUTLETS": [outlet.id],
        "TRY_ARTICLES": args.limit,
        "LOG_LEVEL": args.log_level.upper(),
    }
    server = None
    if args.mirror:
        from crawler.mirror.server import MirrorServer

        server = MirrorServer().start()
        args.mirror_url = server.url
    if args.mirror_url:
        overrides.update(MIRROR_NEEDS, **MIRROR_POLITENESS, MIRROR_URL=args.mirror_url)
    settings = _settings(overrides)
    try:
        process = CrawlerProcess(settings)
        crawler = process.create_crawler(TrialSpider)
        process.crawl(crawler).addErrback(_not_started, crawler)
        process.start()
    finally:
        if server is not None:
            server.stop()
    stats = crawler.stats.get_stats()
    spider = crawler.spider
    bugs = under(stats, "bugs/")
    if bugs or not isinstance(spider, TrialSpider):
        print(
            f"newsarchive: our own code raised ({by_reason(bugs) or 'start'}): a bug, please report it",
            file=sys.stderr,
        )
        return ExitCode.BUG
    where = f" through the mirror at {mask_uri(args.mirror_url)}" if args.mirror_url else ""
    print(f"{outlet.id}: {outlet.name}, tried{where}; nothing is archived")
    for page in spider.pages.values():
        print("\n".join(_page_lines(page)))
    if spider.pages_not_read:
        print(f"{spider.pages_not_read} more discovery page(s) not read: a try reads {MAX_DISCOVERY_PAGES}")
    for url, reason in spider.not_fetched:
        print(f"article page not fetched ({reason}): {url}")
    try:
        analysed = asyncio.run(_analysed(settings, spider.fetched))
    except RuntimeError as exc:  # no worker process could start
        print(f"newsarchive: extraction could not start: {exc}", file=sys.stderr)
        return ExitCode.PROBLEMS
    for number, (item, result) in enumerate(zip(spider.fetched, analysed, strict=True), 1):
        print(f"\narticle {number} of {len(analysed)}: {item.url}")
        print("\n".join(_article_lines(result)))
    articles = [r for r in analysed if isinstance(r, Article) and not r.not_article]
    print()
    if not spider.fetched:
        print(f"PROBLEM {outlet.id}: no article page found{nothing_found_because(stats, outlet.id)}")
    elif not articles:
        verdicts = Counter(r.not_article if isinstance(r, Article) else "failed" for r in analysed)
        fetched = f"{len(analysed)} article page(s) fetched"
        print(f"PROBLEM {outlet.id}: {fetched}, none held an article ({by_reason(verdicts)})")
    else:
        print(f"{len(articles)} article(s) extracted of {len(analysed)} page(s) fetched; nothing archived")
    return ExitCode.OK if articles else ExitCode.PROBLEMS


def _outlet(registry: Registry, outlet_id: str) -> Outlet:
    """The outlet of that id, or a usage error naming the ids close to it."""
    if outlet_id in registry:
        return registry[outlet_id]
    close = difflib.get_close_matches(outlet_id, list(registry), n=3, cutoff=0.6)
    hint = f"did you mean {' or '.join(close)}? " if close else ""
    raise UsageError(f"unknown outlet {outlet_id!r}; {hint}`newsarchive outlets` lists them")


def _settings(overrides: dict[str, Any]) -> Settings:
    from scrapy.settings import Settings

    settings = Settings()
    settings.setmodule("crawler.settings", priority="project")
    settings.setdict(overrides, priority="cmdline")
    return settings


def _page_lines(page: TriedPage) -> list[str]:
    """A discovery page: its links counted by verdict, the first of each shown with it."""
    if page.failure is not None:
        return [f"{page.kind} {page.url}: not read ({page.failure})"]
    total = sum(page.counts.values())
    counts = ", ".join(f"{n} {_VERDICTS[kind]}" for kind, n in page.counts.most_common())
    lines = [f"{page.kind} {page.url}: {total} link(s)" + (f": {counts}" if counts else "")]
    width = max((len(v.url) for v in page.shown), default=0)
    lines += [f"  {verdict.url:<{width}}  {verdict.why()}" for verdict in page.shown]
    if hidden := total - page.counts["sitemap"] - len(page.shown):  # (an index's sitemaps are not shown)
        lines.append(f"  ... {hidden} more link(s) not shown")
    return lines


async def _analysed(settings: Settings, items: Sequence[Article]) -> list[Article | TaskFailed]:
    """The pages through the crawl's worker pool and extraction stage, in order; a page the
    stage failed on is its :class:`TaskFailed`."""
    if not items:
        return []

    async def analysed(item: Article) -> Article | TaskFailed:
        try:
            return await pool.run(item)
        except TaskFailed as failure:
            return failure

    async with page_pool(settings, min(len(items), os.cpu_count() or 1)) as pool:
        return list(await asyncio.gather(*map(analysed, items)))


def _article_lines(result: Article | TaskFailed) -> list[str]:
    """An extracted page as ``try`` shows it: its metadata and the first lines of its text."""
    if isinstance(result, TaskFailed):
        return [f"  extraction failed ({result.reason}): {result.detail[:LINE_CHARS]}"]
    published = result.published_at.isoformat() if result.published_at else "none found"
    script = f", {result.language_script}" if result.language_script else ""
    lines = [
        f"  title      {result.title}",
        f"  published  {published}",
        f"  language   {result.language}{script}",
    ]
    if result.authors:
        lines.append(f"  authors    {', '.join(result.authors)}")
    text = result.text or ""
    lines.append(f"  text       {len(text)} characters")
    shown = [line for line in text.splitlines() if line.strip()][:TEXT_LINES_SHOWN]
    lines += [f"    {line[:LINE_CHARS]}" for line in shown]
    if result.not_article:
        lines.append(f"  not an article ({result.not_article}): the crawl would not archive it")
    return lines
