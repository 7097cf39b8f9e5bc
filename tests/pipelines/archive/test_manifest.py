"""The manifest, the archive's second contract: built from a crawl's record or a compaction,
written byte for byte as before, and parsed with every check and problem of the catalog's."""

from __future__ import annotations

import json
import shutil

import pytest

from pipelines.archive import manifest as manifest_module
from pipelines.archive.manifest import ArchivedFile, Manifest, listed_article_ids
from pipelines.archive.spool import SpooledCrawl
from tests.conftest import FIXTURES

MANIFESTS = FIXTURES / "manifest"  # crawl records (crawl.json, published.jsonl), and their manifests
CRAWLS = ["20261101T000000Z-abcdef", "20261102T000000Z-killed"]  # reextracted, finished; killed
COMPACTION = "20261103T000000Z-compaction"


@pytest.fixture(autouse=True)
def written_by_the_fixtures_version(monkeypatch):
    """The manifests under tests/fixtures/manifest were written by newsarchive 0.1.0."""
    monkeypatch.setattr(manifest_module, "version", lambda _: "0.1.0")


def crawl_manifest(tmp_path, crawl_id: str) -> Manifest:
    """The manifest of the crawl whose record the fixtures hold, built as publishing seals it."""
    shutil.copytree(MANIFESTS / crawl_id, tmp_path / crawl_id)
    crawl = SpooledCrawl(tmp_path / crawl_id, -1)
    info = crawl.info
    return Manifest.of_crawl(info, crawl.journal("reextracted_from" in info))


@pytest.mark.parametrize("crawl_id", CRAWLS)
def test_a_crawl_s_manifest_is_written_byte_for_byte_as_before(tmp_path, crawl_id):
    """The fixture manifests were written by the code before the manifest had an owner
    (publish._manifest): same fields, same order, same values (the index delta named
    ``.parquet-index`` since the data glob stopped matching it)."""
    built = crawl_manifest(tmp_path, crawl_id)
    assert built.key == f"_manifests/{crawl_id}.json"
    assert built.to_bytes() == (MANIFESTS / f"{crawl_id}.json").read_bytes()


def test_a_killed_crawl_s_manifest_says_interrupted_and_lists_each_file_once(tmp_path):
    built = crawl_manifest(tmp_path, "20261102T000000Z-killed")
    assert built.interrupted and built.finished_at is None
    assert [file.article_ids for file in built.files] == [("b1",)] and len(built.warcs) == 1


def compacted_file(
    key: str, rows: int, size: int, digit: str, languages: dict, ids: list[str]
) -> ArchivedFile:
    return ArchivedFile(key, COMPACTION, rows, size, digit * 64, languages, tuple(ids))


def test_a_compaction_s_manifest_is_written_byte_for_byte_as_before():
    """As compact._publish_manifest wrote it, over an archive whose newest manifest is the first
    crawl's (its discovery validators kept)."""
    files = [
        compacted_file(
            f"outlet=gmw-cq/published=2026-10/part-{COMPACTION}-compacted-00001.parquet",
            3,
            4000,
            "8",
            {"zh": 2, "en": 1},
            ["a3", "c1", "c2"],
        ),
        compacted_file(
            f"outlet=sxkjt/published=2026-11/part-{COMPACTION}-compacted-00002.parquet",
            2,
            2000,
            "9",
            {"zh": 2},
            ["a1", "a2"],
        ),
    ]
    replaced = [
        "outlet=gmw-cq/published=2026-10/part-20261101T000000Z-abcdef-00001.parquet",
        "outlet=gmw-cq/published=2026-10/part-20261030T000000Z-x-00001.parquet",
        "outlet=sxkjt/published=2026-11/part-20261101T000000Z-abcdef-00002.parquet",
    ]
    newest = json.loads((MANIFESTS / f"{CRAWLS[0]}.json").read_text())
    built = Manifest.of_compaction(
        COMPACTION, files, replaced, newest["discovery"], at="2026-11-03T04:05:06+00:00"
    )
    assert built.to_bytes() == (MANIFESTS / f"{COMPACTION}.json").read_bytes()


@pytest.mark.parametrize("crawl_id", [*CRAWLS, COMPACTION])
def test_a_manifest_written_here_reads_back_as_the_same_manifest(tmp_path, crawl_id):
    written = (MANIFESTS / f"{crawl_id}.json").read_bytes()
    problems: list[str] = []
    read = Manifest.read(f"_manifests/{crawl_id}.json", written, problems)
    assert problems == [] and read.to_bytes() == written
    if crawl_id != COMPACTION:
        assert read == crawl_manifest(tmp_path, crawl_id)
    assert listed_article_ids(read.key, written) == {file.key: list(file.article_ids) for file in read.files}


READS = json.loads((MANIFESTS / "reads.json").read_text())  # each catalog fixture as it read before


def test_every_catalog_fixture_has_its_reading_recorded():
    fixtures = {
        path.relative_to(FIXTURES).as_posix() for path in FIXTURES.glob("catalog/**/_manifests/*.json")
    }
    assert fixtures == set(READS)


@pytest.mark.parametrize("fixture", sorted(READS))
def test_every_catalog_fixture_round_trips_or_is_refused_as_before(fixture):
    """Read before the manifest had an owner (catalog.manifest_run), each fixture gave these
    problems, or was refused with this message; now the same, and what was taken writes and
    reads back as the same manifest, with no problem left."""
    key = f"_manifests/{fixture.rsplit('/', 1)[1]}"
    problems: list[str] = []
    try:
        read = Manifest.read(key, (FIXTURES / fixture).read_bytes(), problems)
    except ValueError as exc:  # BadManifest, BadKey, DamagedJSON
        assert READS[fixture] == {"refused": f"{type(exc).__name__}: {exc}"}
        return
    assert READS[fixture] == {"problems": problems}
    again: list[str] = []
    assert Manifest.read(key, read.to_bytes(), again) == read and again == []
