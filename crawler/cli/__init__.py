"""``newsarchive``: crawl outlets into the archive, extract saved pages, list the registry, serve mirrors.

One module per command group, each adding its commands to the parser: :mod:`.crawl` (crawl,
flush), :mod:`.registry` (outlets), :mod:`.pages` (extract), :mod:`.archivist` (ls, verify, pull,
compact, reindex, card, reextract), :mod:`.mirror` (mirror). Exit codes: :class:`ExitCode`.
Building the parser imports neither Scrapy nor Twisted; the commands that run Scrapy import it.
"""

from __future__ import annotations

import argparse
import gc
import sys
from collections.abc import Sequence

from crawler.cli import archivist, crawl, mirror, pages, registry
from crawler.cli.exits import ExitCode, UsageError
from crawler.registry import RegistryError
from pipelines.runtime.pool import StartedWorker

__all__ = ["ExitCode", "UsageError", "main", "run"]


def main(argv: Sequence[str] | None = None, started_workers: Sequence[StartedWorker] = ()) -> int:
    """The command ``argv`` names; ``started_workers`` (:mod:`crawler.__main__`) for a crawl."""
    parser = _parser()
    args = parser.parse_args(argv)
    args.started_workers = list(started_workers)
    try:
        return args.command(args)
    except RegistryError as exc:
        print(f"newsarchive: registry error: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except (KeyError, ValueError) as exc:  # UsageError; a URI, an outlet id or a setting refused
        print(f"newsarchive: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return ExitCode.USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsarchive", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in (crawl, registry, pages, archivist, mirror):  # the order --help lists them in
        group.add_commands(commands)
    return parser


def run(argv: Sequence[str] | None = None, started_workers: Sequence[StartedWorker] = ()) -> None:
    """The ``newsarchive`` program, once :mod:`crawler.__main__` has started what it starts first."""
    code = main(argv, started_workers)
    # on the way out the collector would walk every object the command left, several times
    # (0.2 s after a crawl of 400 pages); none of them is garbage worth collecting now
    gc.freeze()
    sys.exit(code)
