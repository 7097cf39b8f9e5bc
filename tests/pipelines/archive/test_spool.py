"""The spool: one per archive, each crawl's journal read back as it was written."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from pipelines.archive.index import visit_entries
from pipelines.archive.spool import SPOOL_ARCHIVE, Spool, SpoolMismatch, SpoolRefused, spool_for
from pipelines.archive.storage import LocalStore, S3Store
from tests.conftest import FIXTURES
from tests.pipelines.archive.test_publish import KEY, table


@pytest.fixture
def spool(tmp_path):
    return Spool(tmp_path / "spool")


def test_a_torn_journal_line_is_not_an_entry(spool):
    crawl = spool.open_crawl("c1", ["xx"])
    (crawl.folder / "published.jsonl").write_text('{"key": "outlet=xx/publ')  # killed mid-line
    crawl.record({"key": KEY, "rows": 1, "bytes": 1, "sha256": "0", "article_ids": ["a"]})
    assert list(crawl.journal()) == [KEY]


def test_visits_are_noted_and_read_back_with_their_outcome(spool):
    crawl = spool.open_crawl("c1", ["xx"])
    fetched = datetime(2026, 12, 1, tzinfo=UTC)
    crawl.note(visit_entries("https://x.example/b", "https://x.example/a", "noarchive", fetched, "c1"))
    notes = crawl.notes()
    assert [(n["url"], n["outcome"], n["last_fetched"]) for n in notes] == [
        ("https://x.example/b", "noarchive", fetched),
        ("https://x.example/a", "noarchive", fetched),
    ]
    assert all(n.get("article_id") is n.get("file") is None for n in notes)


@pytest.mark.parametrize("line", (FIXTURES / "spool" / "visits.jsonl").read_text().splitlines())
def test_a_forged_visit_is_refused(spool, line):
    """A visit holds back its URL for weeks: one under another URL's key, of no outcome a crawl
    writes, naming an article or a part, or of other fields or types is no visit of ours."""
    crawl = spool.open_crawl("c1", ["xx"])
    (crawl.folder / "notes.jsonl").write_text(line + "\n")
    with pytest.raises(SpoolRefused):
        crawl.notes()


def test_an_outcome_among_a_parts_own_entries_is_refused(spool):
    crawl = spool.open_crawl("c1", ["xx"])
    entry = {"url_key": "k", "url": "https://x.example/a", "article_id": "a", "file": KEY}
    entry["outcome"] = "failed"
    crawl.record({"key": KEY, "rows": 1, "bytes": 1, "sha256": "0", "article_ids": ["a"], "index": [entry]})
    with pytest.raises(SpoolRefused, match="an outcome in a part's entries"):
        crawl.journal()


# -- one spool per archive ----------------------------------------------------------------------


def test_a_spool_records_its_archive_and_refuses_any_other(tmp_path):
    folder = str(tmp_path / "spool")
    first, other = LocalStore(tmp_path / "a"), LocalStore(tmp_path / "b")
    spool = spool_for(first, folder)
    crawl = spool.open_crawl("c1", ["xx"])
    crawl.write_part(KEY, table("a"))
    crawl.release()
    assert json.loads((tmp_path / "spool" / SPOOL_ARCHIVE).read_text()) == {
        "archive": str(first.root.resolve())
    }
    with pytest.raises(SpoolMismatch, match=r"holds the crawls of the archive '.*/a', not of .*/b"):
        spool_for(other, folder)
    with pytest.raises(SpoolMismatch):  # flush too: an archive a spool records is never claimed
        spool_for(other, folder, claim_unmarked=True)
    (tmp_path / "spool" / SPOOL_ARCHIVE).write_text('{"archive": 5}')  # damaged: no archive's
    with pytest.raises(SpoolMismatch, match="names no archive"):
        spool_for(first, folder)
    assert not other.root.exists()


def test_each_bucket_gets_a_spool_of_its_own_by_default(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "key")
    roots = {uri: spool_for(S3Store(uri)).root for uri in ("s3://a/news", "s3://b/news", "s3://a/other")}
    assert len(set(roots.values())) == 3
    assert all(root.parent == Path("output/.spools") for root in roots.values())
    assert [spool_for(S3Store(uri)).root for uri in roots] == list(roots.values())  # stable
    assert spool_for(LocalStore(tmp_path / "x")).root == tmp_path / "x" / ".spool"


def test_an_older_spool_that_records_no_archive_is_claimed_only_when_safe(tmp_path, monkeypatch):
    """Older versions spooled every bucket's crawls to output/.spool, recording none."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "key")
    legacy = Spool(tmp_path / "output" / ".spool")
    legacy.open_crawl("c0", ["xx"]).release()
    bucket = S3Store("s3://a/news")
    with pytest.raises(SpoolMismatch, match=r"older newsarchive.*newsarchive flush --archive s3://a/news"):
        spool_for(bucket, str(legacy.root))  # a crawl: never
    note = spool_for(bucket).unclaimed  # its own spool, with a word about the old one
    assert "output/.spool holds 1 crawl(s)" in note and "--spool output/.spool" in note
    assert spool_for(bucket, str(legacy.root), claim_unmarked=True).archive() == "s3://a/news"  # flush
    assert spool_for(bucket).unclaimed is None
    local = LocalStore(tmp_path / "local")
    Spool(local.root / ".spool").open_crawl("c1", ["xx"]).release()
    assert spool_for(local).archive() == str(local.root.resolve())  # inside the archive: its own


def test_a_moved_folder_keeps_its_spool(tmp_path):
    spool_for(LocalStore(tmp_path / "a")).open_crawl("c1", ["xx"]).release()
    (tmp_path / "a").rename(tmp_path / "b")
    moved = LocalStore(tmp_path / "b")
    assert spool_for(moved).crawl_ids() == ["c1"]
    assert spool_for(moved).archive() == str(moved.root.resolve())
