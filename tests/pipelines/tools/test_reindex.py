"""``reindex``: a new base from the parts, replacing every index file there was, of either name."""

from __future__ import annotations

import shutil
import struct
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from pipelines.archive.index import (
    ArchiveIndex,
    read_index_file,
    visit_entries,
    write_index_file,
    write_index_table,
)
from pipelines.archive.keys import (
    FORMER_INDEX_SUFFIX,
    INDEX_SUFFIX,
    base_key,
    delta_key,
    delta_keys,
    index_crawl,
    is_key,
)
from pipelines.archive.schema import INDEX_SCHEMA
from pipelines.archive.storage import LocalStore
from pipelines.tools.reindex import reindex
from tests.conftest import ARCHIVED


def test_index_files_of_either_name_are_replaced_by_one_base_of_the_new_name(mirror_crawl, tmp_path):
    archive = tmp_path / "archive"
    shutil.copytree(mirror_crawl.archive, archive, ignore=shutil.ignore_patterns(".*"))
    store = LocalStore(archive)
    (delta,) = store.object_keys("_index/")
    former = delta.removesuffix(INDEX_SUFFIX) + FORMER_INDEX_SUFFIX
    shutil.copyfile(archive / delta, archive / former)  # as a run of an older newsarchive left it
    stray = "_index/notes.parquet"  # no index file's name: never deleted on the grammar's word
    (archive / stray).write_bytes(b"kept")
    workdir = tmp_path / "work"
    workdir.mkdir()

    report = reindex(store, workdir, "r1")

    assert sorted(report.replaced) == sorted([delta, former])
    assert sorted(store.object_keys("_index/")) == sorted([base_key("r1"), stray])
    assert report.base == base_key("r1") and report.base.endswith(INDEX_SUFFIX)
    merged = read_index_file(store, report.base).merged
    assert set(delta_keys(index_crawl(delta))) <= set(
        merged
    )  # the run's delta, by either name, is covered by the base
    assert all(is_key(key, "delta", "base") for key in merged)
    assert not list(workdir.iterdir())
    index = ArchiveIndex()
    index.refresh(store)
    assert all(index.known_url(article.url) for article in ARCHIVED)


def visits_of(store: LocalStore, key: str) -> set[tuple]:
    entries = read_index_file(store, key).entries.to_pylist()
    return {(e["url"], e["outcome"], e["first_fetched"], e["last_fetched"]) for e in entries if e["outcome"]}


def crawls_view(store: LocalStore, visits: set[tuple]) -> dict:
    """What a crawl's index says of the URLs of ``visits``: when to fetch each again."""
    index = ArchiveIndex()
    index.refresh(store)
    return {url: index.visit(url) for url, *_ in visits}


def test_the_visits_of_the_index_files_replaced_are_kept_and_those_that_do_not_read_named(
    mirror_crawl, tmp_path
):
    """Pages that archived no row are in no part: the new base takes them from the index files
    it replaces, so the next crawl does not fetch them again; a file that does not read is named."""
    archive = tmp_path / "archive"
    shutil.copytree(mirror_crawl.archive, archive, ignore=shutil.ignore_patterns(".*"))
    store = LocalStore(archive)
    (delta,) = store.object_keys("_index/")
    visits = visits_of(store, delta)
    assert len(visits) >= 2  # the mirror has pages refused and pages that are no article
    workdir = tmp_path / "work"
    workdir.mkdir()
    before = crawls_view(store, visits)
    assert any(visit is not None for visit in before.values())  # some the next crawl does not fetch

    report = reindex(store, workdir, "r1")

    assert (report.visits, report.visits_lost) == (len(visits), [])
    assert visits_of(store, report.base) == visits
    assert crawls_view(store, visits) == before

    (archive / report.base).write_bytes(b"damaged")
    again = reindex(store, workdir, "r2")
    assert (again.visits, again.visits_lost, again.problems) == (0, [report.base], [])
    assert not visits_of(store, again.base)


def planted_visit(archive, key: str, url: str, merged: list[str] | None = None) -> None:
    """An index file at ``key`` holding one visit, ``refused`` now (the next crawl would not
    fetch ``url`` for days), replacing ``merged``."""
    entries = visit_entries(url, None, "refused", datetime.now(UTC), "20250101T000000Z-planted")
    write_index_file(archive / key, entries, merged)


@pytest.mark.parametrize("planted", ["a base dated ahead", "a delta a live base replaced"])
def test_reindex_keeps_no_visit_a_crawl_would_not_read(mirror_crawl, tmp_path, planted):
    """The same files as a crawl, the same checks: a base that says it comes from a crawl dated
    ahead is read around (named), a delta a live base replaces is not read at all."""
    archive = tmp_path / "archive"
    shutil.copytree(mirror_crawl.archive, archive, ignore=shutil.ignore_patterns(".*"))
    store = LocalStore(archive)
    url = "https://news.example.cn/a/planted.html"
    if planted == "a base dated ahead":
        planted_key = base_key("29991231T000000Z-ahead1")
        planted_visit(archive, planted_key, url)
    else:
        planted_key = delta_key("20250101T000000Z-old001")
        planted_visit(archive, planted_key, url)
        write_index_file(archive / base_key("20250102T000000Z-base01"), [], [planted_key])
    before = crawls_view(store, {(url,)})
    workdir = tmp_path / "work"
    workdir.mkdir()

    report = reindex(store, workdir, "r1")

    assert before == crawls_view(store, {(url,)}) == {url: None}
    assert report.visits_lost == ([planted_key] if planted == "a base dated ahead" else [])
    assert planted_key in report.replaced


def test_an_index_file_whose_text_is_not_utf8_loses_its_visits_and_stops_nothing(mirror_crawl, tmp_path):
    """Parquet does not check UTF-8, and a crawl reads no URL text: reindex names the file."""
    archive = tmp_path / "archive"
    shutil.copytree(mirror_crawl.archive, archive, ignore=shutil.ignore_patterns(".*"))
    entries = visit_entries("https://news.example.cn/a/x.html", None, "refused", datetime.now(UTC), "r0")
    table = pa.Table.from_pylist(entries, schema=INDEX_SCHEMA)
    text = b"https://news.example.cn/a/\xff\xfe.html"
    url = pa.StringArray.from_buffers(1, pa.py_buffer(struct.pack("<2i", 0, len(text))), pa.py_buffer(text))
    key = delta_key("20250101T000000Z-bytes1")
    write_index_table(archive / key, table.set_column(table.schema.get_field_index("url"), "url", url))
    workdir = tmp_path / "work"
    workdir.mkdir()

    report = reindex(LocalStore(archive), workdir, "r1")

    assert report.visits_lost == [key] and report.parts > 0 and key in report.replaced
