"""The archive's lock as every command that writes takes it, and "the archive is busy" said once."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from crawler.cli.exits import ExitCode
from crawler.from_settings import SettingsReader
from pipelines.archive.lock import ACCEPT_SETTING, ArchiveBusy, LockUnavailable, archive_lock
from pipelines.archive.storage import Store


@contextlib.contextmanager
def holding(
    store: Store,
    settings: SettingsReader,
    run: str,
    wait: bool,
    *,
    shared: str | None = None,
    spool_only_without: bool = False,
    wait_hint: bool = False,
) -> Iterator[bool]:
    """The archive's lock for the ``with`` block, tuned by ``ARCHIVE_LEASE_SECONDS`` and
    ``ARCHIVE_ACCEPT_UNCONDITIONAL_WRITES``; False, said on stderr, if another run has it or the
    store failed while it was taken (the command then exits :attr:`ExitCode.BUSY`; a crawl runs
    ``spool_only_without`` it instead). ``wait_hint``: the message names ``--wait``."""
    lock = contextlib.ExitStack()
    try:  # only the taking: what the ``with`` block raises is not "not started"
        lock.enter_context(
            archive_lock(
                store,
                run,
                wait,
                settings.getfloat("ARCHIVE_LEASE_SECONDS"),
                shared,
                spool_only_without=spool_only_without,
                accept_unconditional_writes=settings.getbool(ACCEPT_SETTING),
            )
        )
    except ArchiveBusy as busy:
        hint = "; --wait waits for it" if wait_hint else ""
        print(
            f"newsarchive: {store.uri} is held by {busy}; not started (exit {ExitCode.BUSY.value}{hint})",
            file=sys.stderr,
        )
        yield False
        return
    except LockUnavailable as unavailable:
        print(
            f"newsarchive: {store.uri}: {unavailable}; not started (exit {ExitCode.BUSY.value})",
            file=sys.stderr,
        )
        yield False
        return
    with lock:
        yield True
