"""``newsarchive``: crawl outlets into the archive, extract saved pages, list the registry, serve mirrors.

One module per command group, each adding its commands to the parser: :mod:`.crawl` (crawl,
flush), :mod:`.registry` (outlets), :mod:`.trying` (try), :mod:`.pages` (extract),
:mod:`.archivist` (ls, verify, pull, compact, reindex, card, reextract), :mod:`.mirror` (mirror).
Exit codes: :class:`ExitCode`; expected failures (bad arguments, no archive, a store that cannot
be read, a path that cannot be written) are one line each, never a traceback.
Building the parser imports neither Scrapy nor Twisted; the commands that run Scrapy import it.
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import select
import sys
from collections.abc import Sequence
from importlib.metadata import PackageNotFoundError, version

from crawler.cli import archivist, crawl, mirror, pages, registry, trying
from crawler.cli.exits import ExitCode, UsageError
from crawler.registry import RegistryError
from pipelines.archive.storage import StoreError
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
    except StoreError as exc:  # unreachable, credentials refused, no such bucket: no secret in it
        print(f"newsarchive: the archive cannot be read: {exc}", file=sys.stderr)
        return ExitCode.USAGE
    except BrokenPipeError:
        raise  # our output's reader left: run() ends quietly
    except OSError as exc:  # a path given that cannot be read or written: --out, --to, DEST, a port
        where = f"{exc.filename}: " if exc.filename else ""
        print(f"newsarchive: {where}{exc.strerror or exc}", file=sys.stderr)
        return ExitCode.USAGE


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="newsarchive", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action=_Version, help="newsarchive's version and its libraries'")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for group in (crawl, registry, trying, pages, archivist, mirror):  # the order --help lists them in
        group.add_commands(commands)
    return parser


# what decides a row besides newsarchive's own rules: extraction, language, Parquet, fetching
ROW_LIBRARIES = ("trafilatura", "readability-lxml", "langdetect", "py3langid", "pyarrow", "scrapy")


def versions() -> str:
    """One line for a bug report: newsarchive's version and its rules' digest (what a row's
    ``extractor_version`` names), and the versions of :data:`ROW_LIBRARIES`, read from the
    installed packages' metadata: ``--version`` imports none of them."""
    from pipelines.stages.extraction.provenance import newsarchive_version  # hashes the rules' files

    def of(package: str) -> str:
        try:
            return version(package)
        except PackageNotFoundError:
            return "not installed"

    libraries = ", ".join(f"{package} {of(package)}" for package in ROW_LIBRARIES)
    return f"{newsarchive_version()} ({libraries}; Python {platform.python_version()})"


class _Version(argparse.Action):
    """``--version``: :func:`versions`' line, looked up only when asked (argparse's own action
    would look it up for every command, and wrap it)."""

    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> None:
        print(versions())
        parser.exit()


def run(argv: Sequence[str] | None = None, started_workers: Sequence[StartedWorker] = ()) -> None:
    """The ``newsarchive`` program, once :mod:`crawler.__main__` has started what it starts first."""
    try:
        try:
            code = main(argv, started_workers)
        finally:  # after --help and --version too: a closed pipe shows here, not at the interpreter's exit
            sys.stdout.flush()
    except BrokenPipeError as closed:
        hidden = closed.__context__
        if not _reader_left() or (isinstance(hidden, Exception) and not isinstance(hidden, BrokenPipeError)):
            raise  # another pipe than our output's, or the command raised: a bug
        # ``newsarchive ls A | head -1``: the reader has what it wanted; what is left goes nowhere
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = ExitCode.CLOSED_PIPE
    # on the way out the collector would walk every object the command left, several times
    # (0.2 s after a crawl of 400 pages); none of them is garbage worth collecting now
    gc.freeze()
    sys.exit(code)


def _reader_left() -> bool:
    """Whether standard output is a pipe (or socket) whose reader has closed it."""
    poller = select.poll()
    poller.register(sys.stdout.fileno(), select.POLLOUT)
    return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
