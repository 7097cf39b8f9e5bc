"""``newsarchive verify --since`` through its command line, in process: the files of the runs since
a crawl id, a day or ``last`` are read, older runs' only listed (their damage skipped, their
absence still named), locally and in a bucket; the mark ``--since last`` keeps, and how it moves."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path

import pytest

from crawler.cli import main
from crawler.cli.exits import ExitCode
from pipelines.archive.catalog import Catalog, seal_checkpoint
from pipelines.archive.storage import LocalStore
from pipelines.tools.verify import VERIFY_MARK
from tests.archives import hourly_runs

DIFFERS = "sha256 differs from the manifest's (the file changed since it was published)"


@pytest.fixture
def hourly(mirror_crawl, tmp_path) -> Path:
    """The mirror crawl's rows as 30 hourly runs left them, one part each (20250101T000100Z-hourly...)."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
    return hourly_runs(mirror_crawl.archive, tmp_path / "hourly")


def verified(capsys, *argv: str) -> tuple[int, list[str]]:
    """``newsarchive verify ARGV``: its exit code and the lines it printed."""
    code = main(["verify", *argv])
    out, err = capsys.readouterr()
    assert err == ""
    return code, out.splitlines()


def runs(archive: Path) -> list[tuple[str, str]]:
    """Each run's crawl id and its part's key, oldest first."""
    manifests = [json.loads(path.read_bytes()) for path in sorted((archive / "_manifests").glob("*.json"))]
    return [(manifest["crawl_id"], manifest["files"][0]["key"]) for manifest in manifests]


def flipped(archive: Path, key: str) -> None:
    """A byte in the middle of ``key`` changed: what a failing disk leaves."""
    data = bytearray((archive / key).read_bytes())
    data[len(data) // 2] ^= 0xFF
    (archive / key).write_bytes(bytes(data))


def sealed(archive: Path, crawl_id: str, data: bytes) -> str:
    """A run ``crawl_id`` added as a crawl would seal it: one part holding ``data`` (a part's
    bytes), and its manifest; the part's key."""
    (template,) = [
        json.loads(path.read_bytes()) for path in sorted((archive / "_manifests").glob("*.json"))[:1]
    ]
    entry = template["files"][0]
    key = str(Path(entry["key"]).with_name(f"part-{crawl_id}-00001.parquet"))
    (archive / key).write_bytes(data)
    entry = {**entry, "key": key, "sha256": hashlib.sha256(data).hexdigest()}
    manifest = {**template, "crawl_id": crawl_id, "files": [entry], "warcs": []}
    (archive / "_manifests" / f"{crawl_id}.json").write_text(json.dumps(manifest), encoding="utf-8")
    return key


def test_since_reads_the_runs_since_and_only_lists_the_older(hourly, capsys):
    every = runs(hourly)
    (_, old), (gone_id, gone), (cut, _), (_, new) = every[2], every[3], every[-5], every[-3]
    flipped(hourly, old)
    flipped(hourly, new)
    (hourly / gone).unlink()

    code, lines = verified(capsys, str(hourly), "--since", cut)
    assert code == ExitCode.PROBLEMS
    assert sorted(lines[:-1]) == sorted(
        [f"{gone}: missing (listed in _manifests/{gone_id}.json)", f"{new}: {DIFFERS}"]
    )
    assert lines[-1].startswith(f"{hourly}: 30 manifests; the 5 runs since {cut} read: 5 files, 5 rows")

    code, lines = verified(capsys, str(hourly))  # every run: the older damage too
    assert code == ExitCode.PROBLEMS and f"{old}: {DIFFERS}" in lines and f"{new}: {DIFFERS}" in lines
    assert lines[-1].startswith(f"{hourly}: 30 manifests, 30 files, 30 rows")

    # a day, or a month: the runs started on or after it (UTC); their crawl ids begin with it
    code, lines = verified(capsys, str(hourly), "--since", "2025-01-01")
    assert code == ExitCode.PROBLEMS and f"{old}: {DIFFERS}" in lines and f"{new}: {DIFFERS}" in lines
    code, lines = verified(capsys, str(hourly), "--since", "2025-02")
    assert code == ExitCode.PROBLEMS and lines[:-1] == [
        f"{gone}: missing (listed in _manifests/{gone_id}.json)"
    ]
    assert "the 0 runs since 20250201 read: 0 files" in lines[-1]


@pytest.mark.parametrize("since", ["2025-13", "last week", "../x", ""])
def test_since_that_names_no_run_is_refused(hourly, capsys, since):
    with pytest.raises(SystemExit) as refused:
        main(["verify", str(hourly), "--since", since])
    assert refused.value.code == ExitCode.USAGE
    assert "argument --since: not a crawl id, a day, a month or last" in capsys.readouterr().err


@pytest.mark.slow  # seven passes of verify
def test_since_last_reads_what_came_after_the_last_clean_pass(hourly, capsys):
    every, mark = runs(hourly), hourly / ".spool" / VERIFY_MARK
    newest = every[-1][0]

    code, lines = verified(capsys, str(hourly), "--since", "last")  # no mark yet: every run
    assert code == ExitCode.OK and lines[-1].startswith(f"{hourly}: 30 manifests, 30 files")
    assert {k: v for k, v in json.loads(mark.read_bytes()).items() if k != "at"} == {
        "through": newest,
        "manifests": 30,
    }

    flipped(hourly, every[5][1])  # an older run's damage: not read again
    assert verified(capsys, str(hourly), "--since", "last", "--quiet") == (ExitCode.OK, [])
    code, lines = verified(capsys, str(hourly), "--since", "last")
    assert code == ExitCode.OK
    assert lines == [
        f"{hourly}: 30 manifests; the 0 runs after {newest} (the last clean pass) read: 0 files, "
        "0 rows, 0 B: all files match their manifests"
    ]

    part = (hourly / every[0][1]).read_bytes()
    later = sealed(hourly, "20250102T000000Z-later", part)
    flipped(hourly, later)  # a newer run's damage: named, and named again until mended
    for quiet in ([], ["--quiet"]):  # problems are said, --quiet or not
        code, lines = verified(capsys, str(hourly), "--since", "last", *quiet)
        assert code == ExitCode.PROBLEMS and lines[:-1] == [f"{later}: {DIFFERS}"]
        assert json.loads(mark.read_bytes())["through"] == newest
    (hourly / later).write_bytes(part)
    code, lines = verified(capsys, str(hourly), "--since", "last")
    assert code == ExitCode.OK and "the 1 runs after" in lines[-1]
    assert json.loads(mark.read_bytes())["through"] == "20250102T000000Z-later"

    # a run sealed late under an earlier id (a flush of a crawl killed before the others): the
    # count of manifests up to the mark tells, and that pass reads every run
    sealed(hourly, "20250101T000030Z-flushed", part)
    code, lines = verified(capsys, str(hourly), "--since", "last")
    assert code == ExitCode.PROBLEMS
    assert lines[:2] == [
        f"{every[5][1]}: {DIFFERS}",
        "32 manifests up to 20250102T000000Z-later, the last clean pass counted 31 (one sealed late, "
        "or gone): every run checked",
    ]


def test_the_catalog_checkpoint_is_checked_against_the_manifests(hourly, capsys, tmp_path):
    """What ls and pull read instead of every manifest must say what the manifests say."""
    store = LocalStore(hourly)
    key = seal_checkpoint(store, tmp_path, every=1)  # through the newest run's manifest
    assert key is not None
    code, lines = verified(capsys, str(hourly))
    assert code == ExitCode.OK, lines

    lying = Catalog.read(store)  # one file's rows told otherwise, the figures made to agree
    run = lying.runs[3]
    lying.runs[3] = replace(run, files=(replace(run.files[0], rows=run.files[0].rows + 1),))
    (hourly / key).unlink()
    assert lying.write_checkpoint(store, tmp_path) == key
    code, lines = verified(capsys, str(hourly), "--since", "2025-01")
    assert code == ExitCode.PROBLEMS
    assert lines[:-1] == [
        f"{key}: the runs and files of this catalog checkpoint (what ls and pull read) differ from "
        "the manifests' (delete it; a later crawl writes another)"
    ]
    # named by a crawl before --since: not read
    assert verified(capsys, str(hourly), "--since", "2025-02")[0] == ExitCode.OK

    (hourly / key).write_bytes(b"PAR1 cut")
    code, lines = verified(capsys, str(hourly))
    assert code == ExitCode.PROBLEMS and lines[0].startswith(f"{key}: catalog checkpoint read around")
    (hourly / "_catalog" / "notes.txt").write_bytes(b"")
    code, lines = verified(capsys, str(hourly))
    assert "'_catalog/notes.txt': no catalog checkpoint's name; nothing reads it" in lines


@pytest.mark.slow  # the session's mirror crawl, copied into a bucket
def test_since_in_a_bucket(hourly, object_store, monkeypatch, capsys):
    every = runs(hourly)
    (_, old), (cut, _), (_, new) = every[2], every[-5], every[-3]
    flipped(hourly, old)
    flipped(hourly, new)
    bucket, client = object_store.create_bucket(), object_store.client()
    for path in sorted(p for p in hourly.rglob("*") if p.is_file()):
        client.put_object(
            Bucket=bucket, Key=f"news/{path.relative_to(hourly).as_posix()}", Body=path.read_bytes()
        )
    for name, value in object_store.env.items():
        monkeypatch.setenv(name, value)

    code, lines = verified(capsys, f"s3://{bucket}/news", "--since", cut)
    assert code == ExitCode.PROBLEMS and lines[:-1] == [f"{new}: {DIFFERS}"]
    assert f"the 5 runs since {cut} read: 5 files" in lines[-1]
