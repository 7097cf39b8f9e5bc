"""Issue 31, class 10 (spools), through the CLI: a local archive's spool is a folder of the
archive, so whoever can write to the archive can plant links, FIFOs, hard links and forged
records in it. None is ever followed, cut, appended to or published: each is set aside in
``<spool>/quarantine`` (or, if harmless, left) and named by a PROBLEM line, nothing outside the
archive changes, and every legitimate row is still there, or published.

(The spool unit by unit: tests/pipelines/archive/test_publish.py.)
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawler.mirror.server import MirrorServer
from crawler.mirror.sites import build_mirror
from pipelines.archive.keys import part_key, warc_key
from pipelines.archive.spool import QUARANTINE, spool_for
from pipelines.archive.storage import LocalStore
from pipelines.archive.warc import OPEN_SUFFIX
from tests.conftest import FIXTURES, run_cli
from tests.pipelines.archive.test_lock import plant
from tests.test_incremental import OUTLET, crawl, rows

pytestmark = pytest.mark.slow  # each case a flush or crawl in a subprocess

PLANTED_CRAWL = "20261101T000000Z-abcdef"  # a crawl someone left in the spool
GOOD_CRAWL = "20261101T000000Z-000001"  # a crawl that died after spooling a part: flush publishes it
PARTITION = f"outlet={OUTLET}/published=2026-11"
# what a spooled crawl's folder holds, and what each is planted as
FILES = [
    warc_key(PLANTED_CRAWL, 1) + OPEN_SUFFIX,
    warc_key(PLANTED_CRAWL, 1),
    part_key(PARTITION, PLANTED_CRAWL, 1),
    "published.jsonl",
    "notes.jsonl",
    "crawl.json",
    ".lock",
]
FILE_KINDS = ["symlink", "relative symlink", "hard link", "fifo"]
LINKS = ["symlink", "relative symlink"]


@pytest.fixture(scope="module")
def mirror():
    with MirrorServer(build_mirror()) as server:
        yield server


@pytest.fixture(scope="module")
def crawled(mirror, tmp_path_factory) -> Path:
    archive = tmp_path_factory.mktemp("crawled") / "archive"
    crawl(mirror, archive)
    return archive


@pytest.fixture
def archive(crawled, tmp_path) -> Path:
    copy = tmp_path / "archive"
    shutil.copytree(crawled, copy, symlinks=True)
    return copy


@pytest.fixture
def outside(tmp_path) -> Path:
    """A folder outside the archive, with what a planted link would lead newsarchive to: a file,
    a crawl's record and a WARC being written."""
    folder = tmp_path / "outside"
    (folder / "_warc").mkdir(parents=True)
    precious = b"the operator's data, outside the archive\n" * 100
    (folder / "precious.txt").write_bytes(precious)
    (folder / (warc_key(PLANTED_CRAWL, 1) + OPEN_SUFFIX)).write_bytes(precious)
    (folder / "crawl.json").write_text(json.dumps(_crawl_info(PLANTED_CRAWL)))
    return folder


def _crawl_info(crawl_id: object) -> dict:
    return {"crawl_id": crawl_id, "started_at": "2026-11-01T00:00:00+00:00", "outlets": [OUTLET]}


def state(folder: Path) -> dict[str, tuple[int, bytes | None]]:
    return {
        p.relative_to(folder).as_posix(): (p.lstat().st_mode, p.read_bytes() if p.is_file() else None)
        for p in sorted(folder.rglob("*"))
    }


def spool_good_crawl(archive: Path) -> list[str]:
    """Spool a crawl's part of new rows (an archived part's, under new ids), as a crawl killed
    before publishing leaves it; the ids flush must publish."""
    table = pq.read_table(next(archive.glob("outlet=*/published=*/*.parquet")))
    ids = [f"{i}-spooled" for i in table.column("article_id").to_pylist()]
    table = table.set_column(table.schema.get_field_index("article_id"), "article_id", pa.array(ids))
    crawl = spool_for(LocalStore(archive)).open_crawl(GOOD_CRAWL, [OUTLET])
    crawl.write_part(part_key(PARTITION, GOOD_CRAWL, 1), table)
    crawl.release()
    return ids


def spool_planted_crawl(archive: Path) -> Path:
    crawl = spool_for(LocalStore(archive)).open_crawl(PLANTED_CRAWL, [OUTLET])
    crawl.release()
    return crawl.folder


def manifests_of(archive: Path) -> list[str]:
    return sorted(p.name for p in (archive / "_manifests").iterdir())


def flush_with_forged(archive: Path, name: str, text: str):
    """A good spooled crawl and a planted one whose ``name`` holds ``text``, then ``flush``: the
    good one is published, the planted one set aside whole with no manifest of it."""
    before = [r["article_id"] for r in rows(archive)]
    manifests = manifests_of(archive)
    spooled = spool_good_crawl(archive)
    (spool_planted_crawl(archive) / name).write_text(text)
    run = flush(archive)
    assert_read_around(run, archive, before, spooled)
    assert manifests_of(archive) == sorted([*manifests, f"{GOOD_CRAWL}.json"])
    assert (archive / ".spool" / QUARANTINE / f"{PLANTED_CRAWL}.refused" / name).read_text() == text
    return run


def flush(archive: Path):
    run = run_cli("flush", "--archive", str(archive))
    assert "Traceback" not in run.stderr, run.stderr
    return run


def assert_read_around(run, archive: Path, before: list[str], spooled: list[str]) -> None:
    """The run named what it refused; the rows archived before and the good crawl's are there."""
    assert run.returncode in (1, 3) and "PROBLEM" in run.stdout, run.stdout + run.stderr
    assert sorted(r["article_id"] for r in rows(archive)) == sorted(before + spooled)


@pytest.mark.parametrize("kind", FILE_KINDS)
@pytest.mark.parametrize("name", FILES)
def test_a_planted_file_in_a_spooled_crawl_is_never_followed_cut_or_published(archive, outside, name, kind):
    before = [r["article_id"] for r in rows(archive)]
    spooled = spool_good_crawl(archive)
    planted = spool_planted_crawl(archive) / name
    planted.parent.mkdir(parents=True, exist_ok=True)
    planted.unlink(missing_ok=True)
    plant(kind, planted, outside / "precious.txt")
    outside_before = state(outside)
    run = flush(archive)
    assert state(outside) == outside_before
    if (name, kind) == (".lock", "hard link"):  # only locked (flock), never written: harmless
        assert run.returncode == 0, run.stdout + run.stderr
        assert sorted(r["article_id"] for r in rows(archive)) == sorted(before + spooled)
    else:
        assert_read_around(run, archive, before, spooled)


@pytest.mark.parametrize("kind", LINKS)
@pytest.mark.parametrize("name", ["_warc", "outlet=sxkjt", PLANTED_CRAWL])
def test_a_planted_folder_link_in_the_spool_is_never_followed(archive, outside, name, kind):
    """The crawl's ``_warc`` or a partition's folder, or the crawl's folder itself, a link out."""
    before = [r["article_id"] for r in rows(archive)]
    spooled = spool_good_crawl(archive)
    folder = spool_planted_crawl(archive)
    planted = folder.parent / name if name == PLANTED_CRAWL else folder / name
    shutil.rmtree(planted, ignore_errors=True)
    plant(kind, planted, outside if name == PLANTED_CRAWL else outside / "_warc")
    outside_before = state(outside)
    run = flush(archive)
    assert state(outside) == outside_before
    assert_read_around(run, archive, before, spooled)
    assert (archive / ".spool" / QUARANTINE).is_dir()


def test_a_crawl_finds_the_reviewers_open_warc_link_and_leaves_its_target_whole(archive, outside, mirror):
    """The first review's attack: a crawl (not flush) meets the planted WARC."""
    before = [r["article_id"] for r in rows(archive)]
    folder = spool_planted_crawl(archive)
    (folder / "_warc").mkdir()
    plant("symlink", folder / (warc_key(PLANTED_CRAWL, 1) + OPEN_SUFFIX), outside / "precious.txt")
    outside_before = state(outside)
    run = run_cli("crawl", "--mirror-url", mirror.url, "--archive", str(archive), "--outlet", OUTLET)
    assert "Traceback" not in run.stderr
    assert state(outside) == outside_before
    assert_read_around(run, archive, before, [])


@pytest.mark.parametrize("line", (FIXTURES / "spool" / "crawl_json.jsonl").read_text().splitlines())
def test_a_forged_crawl_record_is_set_aside_not_published(archive, line):
    """The reviewer's ``"crawl_id": "../../../../tmp/review/EVIL"`` and its variants: the id
    must be its folder's (it names the manifest), the fields of the form a crawl writes."""
    flush_with_forged(archive, "crawl.json", line)
    for manifest in (archive / "_manifests").iterdir():
        assert json.loads(manifest.read_text())["crawl_id"] == manifest.stem
    assert run_cli("compact", str(archive)).returncode == 0  # the reviewer's forged id blocked it


@pytest.mark.parametrize("line", (FIXTURES / "spool" / "journal.jsonl").read_text().splitlines())
def test_a_forged_journal_line_is_set_aside_not_published(archive, line):
    flush_with_forged(archive, "published.jsonl", line + "\n")


def test_a_journal_naming_another_crawls_published_files_is_set_aside(archive):
    """The second review's attack: a journal listing every file of an archived crawl, each entry
    as that crawl's manifest has it (right sha256, rows and ids), would publish them again under
    the planted crawl's manifest; the dataset would double."""
    archived = json.loads((archive / "_manifests" / manifests_of(archive)[0]).read_text())
    entries = [*archived["files"], *({"kind": "warc"} | warc for warc in archived["warcs"])]
    assert entries
    flush_with_forged(archive, "published.jsonl", "".join(json.dumps(entry) + "\n" for entry in entries))
    assert run_cli("compact", str(archive)).returncode == 0


@pytest.mark.parametrize("line", (FIXTURES / "spool" / "notes.jsonl").read_text().splitlines())
def test_a_forged_notes_line_is_set_aside_not_published(archive, line):
    """The second review's attack: an index entry a crawl notes for an unchanged article, of
    another shape or types, used to stop every flush and crawl (exit 5) with a traceback."""
    flush_with_forged(archive, "notes.jsonl", line + "\n")
    assert flush(archive).returncode == 0  # nothing left to stop the next run


def test_a_folder_in_the_spool_named_by_no_crawl_id_is_set_aside(archive, outside):
    before = [r["article_id"] for r in rows(archive)]
    spooled = spool_good_crawl(archive)
    for name in ("..x", "a b", "x\u202e", "-leading-dash"):
        (archive / ".spool" / name).mkdir()
        (archive / ".spool" / name / "crawl.json").write_text(json.dumps(_crawl_info(name)))
    run = flush(archive)
    assert_read_around(run, archive, before, spooled)
    assert sorted(p.name for p in (archive / ".spool" / QUARANTINE).iterdir()) == sorted(
        ["..x", "a b", "x\u202e", "-leading-dash"]
    )


@pytest.mark.parametrize("planted", ["symlink", "relative symlink", "file"])
@pytest.mark.parametrize("where", ["own", "named"])
def test_a_spool_that_is_a_link_is_refused(archive, outside, mirror, tmp_path, planted, where):
    """The archive's ``.spool``, or the folder ``--spool`` names: a link (or a file) is never
    written through; crawl and flush stop (exit 2) and say why."""
    before = [r["article_id"] for r in rows(archive)]
    spool = archive / ".spool" if where == "own" else tmp_path / "named-spool"
    shutil.rmtree(spool, ignore_errors=True)
    if planted == "file":
        spool.write_bytes((outside / "precious.txt").read_bytes())
    else:
        plant(planted, spool, outside)
    outside_before = state(outside)
    named = [] if where == "own" else ["--spool", str(spool)]
    for run in (
        run_cli("crawl", "--mirror-url", mirror.url, "--archive", str(archive), "--outlet", OUTLET, *named),
        run_cli("flush", "--archive", str(archive), *named),
    ):
        assert run.returncode == 2, run.stdout + run.stderr
        assert f"spool {spool} is" in run.stderr and "not used" in run.stderr
        assert "Traceback" not in run.stderr
    assert state(outside) == outside_before
    assert sorted(r["article_id"] for r in rows(archive)) == sorted(before)
