"""The archive's lock as the commands take it: "busy" said once, and only for the taking."""

from __future__ import annotations

import pytest

from crawler.cli.locking import holding
from crawler.from_settings import PlainSettings
from pipelines.archive.lock import ArchiveBusy
from pipelines.archive.storage import LocalStore


def test_a_held_archive_is_not_started_and_said_so(tmp_path, capsys):
    store, settings = LocalStore(tmp_path), PlainSettings.of()
    with (
        holding(store, settings, "first", False) as first,
        holding(store, settings, "second", False) as second,
    ):
        assert (first, second) == (True, False)
    assert "is held by" in capsys.readouterr().err
    with holding(store, settings, "third", False) as third:  # let go: the next run takes it
        assert third


def test_what_the_block_raises_is_not_taken_for_a_busy_archive(tmp_path, capsys):
    store, settings = LocalStore(tmp_path), PlainSettings.of()
    with pytest.raises(ArchiveBusy, match="from the work"), holding(store, settings, "run", False):
        raise ArchiveBusy("from the work")
    assert "not started" not in capsys.readouterr().err
    with holding(store, settings, "next", False) as free:  # and the lock was let go
        assert free
