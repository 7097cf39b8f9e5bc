"""The exit codes of ``newsarchive``, all of them: one :class:`ExitCode`, for every command."""

from __future__ import annotations

from enum import IntEnum


class ExitCode(IntEnum):
    """What a command's exit code says; a crawl gives the most serious that applies, in the
    order BUG, PENDING, STOPPED, PROBLEMS (see :func:`crawler.cli.crawl.crawl_exit_code`)."""

    OK = 0  # all well
    # the run needs a look: errors logged, pages that failed, an outlet where no article page was
    # found, a spooled part set aside; an archivist command's problems, each named on a line
    PROBLEMS = 1
    # bad arguments, registry or archive URI (UsageError); no archive there, or a store that cannot
    # be read (unreachable endpoint, credentials refused, no such bucket): each said on one line
    USAGE = 2
    PENDING = 3  # the run went well, but parts wait in the spool for the store (the next run or flush)
    STOPPED = 4  # stopped before its end (SIGTERM, SIGINT, a CLOSESPIDER_* limit): the rest next run
    BUG = 5  # our own code raised (a bug to report), as opposed to the sites failing
    # EX_TEMPFAIL (sysexits.h), try again later: another run holds the archive (``--wait`` waits
    # instead), or the store failed while its lock was taken. A crawl that cannot take the lock
    # for a store error runs without it, and only spools (PENDING); the others never run without.
    BUSY = 75
    # 128 + SIGPIPE, what the shell shows for any program a closed pipe stopped (``ls A | head -1``):
    # said nowhere, as ``cat`` says nothing; not OK, since what the command wrote was not all read
    CLOSED_PIPE = 141


class UsageError(ValueError):
    """Bad arguments: said on one line, ``newsarchive: <why>``, exit :attr:`ExitCode.USAGE`."""
