"""``newsarchive extract``: saved pages through the crawl's worker pool, their records printed."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from crawler.cli.exits import ExitCode, UsageError
from crawler.from_settings import PlainSettings, page_pool
from pipelines.runtime.pool import WorkerPool


def add_commands(commands: argparse._SubParsersAction) -> None:
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


def extract_command(args: argparse.Namespace) -> ExitCode:
    """Exit 1 when a page could not be read or extracted; its record says why, the others print."""
    from pipelines.tools.saved_pages import extract_pages, page_paths, read_urls_file

    missing = [str(path) for path in args.paths if not path.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    try:
        ZoneInfo(args.timezone)
    except (ValueError, ZoneInfoNotFoundError):
        raise UsageError(f"unknown time zone: {args.timezone}") from None
    urls = read_urls_file(args.urls_file) if args.urls_file else None
    pool = page_pool(PlainSettings.of(), args.jobs)
    records = extract_pages(page_paths(args.paths), pool, args.url, args.timezone, urls)
    failed = asyncio.run(_print_records(records, pool, args.jsonl))
    if failed:
        print(f"newsarchive: {failed} page(s) could not be read or extracted", file=sys.stderr)
    return ExitCode.PROBLEMS if failed else ExitCode.OK


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
