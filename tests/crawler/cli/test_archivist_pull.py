"""``newsarchive pull`` through its command line, in process: each article version once across
pulls, compactions, new runs and refetches (local and S3); the format from DEST's name, ``-`` for
standard output, no journal in sight; filters naming what the archive does not hold refused, by
``pull``, ``compact`` and ``reextract``, with what it holds."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import shutil
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from crawler.cli import main
from pipelines.archive.manifest import languages_of
from pipelines.archive.rows import parquet_file
from tests.archives import hourly_runs

FORMATS = {"jsonl": "rows.jsonl", "csv": "rows.csv", "parquet": "rows"}  # DEST named as users name it
GMW_ROWS = 5  # the mirror crawl's rows of gmw-cq


def run(capsys, *argv: str) -> tuple[int, str, str]:
    """``newsarchive ARGV``: its exit code, standard output and standard error."""
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse refused the arguments
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def versions(dest: Path) -> list[tuple[str, str, str]]:
    """Each row of a pulled DEST as (article_id, version, text_hash), repeats kept."""
    if dest.is_dir():
        rows = ds.dataset(dest, format="parquet", partitioning="hive").to_table().to_pylist()
    elif dest.suffix == ".jsonl":
        rows = [json.loads(line) for line in dest.read_bytes().splitlines()]
    else:
        with dest.open(encoding="utf-8", newline="") as handle:
            rows = list(csv.DictReader(handle))
    return sorted((row["article_id"], str(row["version"]), row["text_hash"]) for row in rows)


def archived(archive: Path) -> list[tuple[str, str, str]]:
    """Each row of the archive as :func:`versions` gives it."""
    files = [p for p in archive.rglob("*.parquet") if not p.relative_to(archive).as_posix().startswith("_")]
    table = ds.dataset(files, format="parquet").to_table(columns=["article_id", "version", "text_hash"])
    return sorted(zip(*(map(str, table.column(c).to_pylist()) for c in table.column_names), strict=True))


def add_run(archive: Path, run_id: str, key: str, rows) -> None:
    """A run that archived ``rows`` (a table of the archive's schema) as the part ``key``, sealed
    by its manifest, as a crawl would leave it."""
    data = parquet_file(rows)
    (archive / key).write_bytes(data)
    (template,) = sorted((archive / "_manifests").glob("*.json"))[:1]
    manifest = json.loads(template.read_text(encoding="utf-8"))
    entry = {
        "key": key,
        "rows": rows.num_rows,
        "bytes": len(data),
        "sha256": hashlib.sha256(data).hexdigest(),
        "languages": languages_of(rows),
        "article_ids": rows.column("article_id").to_pylist(),
    }
    sealed = {**manifest, "crawl_id": run_id, "files": [entry], "rows": rows.num_rows, "bytes": len(data)}
    (archive / "_manifests" / f"{run_id}.json").write_text(json.dumps(sealed), encoding="utf-8")


@pytest.fixture
def archive(mirror_crawl, tmp_path) -> Path:
    """A copy of the mirror crawl's archive: one run, 14 files."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
    return shutil.copytree(mirror_crawl.archive, tmp_path / "archive")


@pytest.fixture
def hourly(mirror_crawl, tmp_path) -> Path:
    """The same rows as 30 hourly runs would leave them: 30 files of one row, 30 manifests."""
    return hourly_runs(mirror_crawl.archive, tmp_path / "hourly")


# 1. each article version once


@pytest.mark.parametrize("output", FORMATS)
def test_a_pull_run_again_after_compact_adds_no_row(hourly, tmp_path, capsys, output):
    dest = tmp_path / FORMATS[output]
    assert run(capsys, "pull", str(hourly), str(dest), "--outlet", "gmw-cq")[0] == 0
    first = versions(dest)
    assert len(first) == GMW_ROWS
    code, out, _ = run(capsys, "compact", str(hourly))
    assert code == 0 and "compacted 10 partitions" in out
    code, out, _ = run(capsys, "pull", str(hourly), str(dest), "--outlet", "gmw-cq")
    assert code == 0 and out.startswith("0 rows from 0 files (2 done by an earlier pull) into "), out
    assert versions(dest) == first


@pytest.mark.parametrize("output", FORMATS)
def test_a_pull_after_new_runs_and_a_compact_adds_exactly_the_new_rows(hourly, tmp_path, capsys, output):
    later = sorted((hourly / "_manifests").glob("*.json"))[::3]  # 10 runs come after the first pull
    for manifest in later:
        manifest.rename(tmp_path / manifest.name)
    dest = tmp_path / FORMATS[output]
    assert run(capsys, "pull", str(hourly), str(dest))[0] == 0
    assert len(versions(dest)) == 20
    for manifest in later:
        (tmp_path / manifest.name).rename(manifest)
    assert run(capsys, "compact", str(hourly))[0] == 0
    code, out, _ = run(capsys, "pull", str(hourly), str(dest))
    assert code == 0 and out.startswith("10 rows from "), out
    assert "rows pulled before, left out" in out  # compacted files that hold rows of both pulls
    assert versions(dest) == archived(hourly)
    assert len(set(versions(dest))) == 30


@pytest.mark.parametrize("output", FORMATS)
def test_a_refetched_version_is_pulled_once_and_a_repeated_one_not_again(archive, tmp_path, capsys, output):
    dest = tmp_path / FORMATS[output]
    assert run(capsys, "pull", str(archive), str(dest))[0] == 0
    parts = sorted(path.relative_to(archive).as_posix() for path in archive.rglob("part-*.parquet"))
    key, rows = next((key, rows) for key in parts if (rows := pq.read_table(archive / key)).num_rows >= 2)
    first = rows.slice(0, 1)
    field = first.schema.field("version")
    next_version = pa.array([first["version"][0].as_py() + 1], field.type)
    refetched = first.set_column(first.schema.get_field_index("version"), field, next_version)
    field = first.schema.field("text_hash")
    refetched = refetched.set_column(first.schema.get_field_index("text_hash"), field, pa.array(["0" * 64]))
    archived_again = rows.slice(1, 1)  # the second article's version, archived again by another run
    new_part = str(Path(key).with_name("part-20990101T000000Z-refetch-00001.parquet"))
    add_run(archive, "20990101T000000Z-refetch", new_part, pa.concat_tables([refetched, archived_again]))
    code, out, _ = run(capsys, "pull", str(archive), str(dest))
    assert code == 0 and out.startswith("1 rows from 1 files (14 done by an earlier pull; 1 rows pulled"), out
    assert versions(dest) == sorted(set(archived(archive)))
    assert run(capsys, "compact", str(archive))[0] == 0
    code, out, _ = run(capsys, "pull", str(archive), str(dest))
    assert code == 0 and out.startswith("0 rows from "), out
    assert len(versions(dest)) == len(set(versions(dest))) == 31


@pytest.mark.slow
def test_on_s3_a_pull_after_new_runs_and_a_compact_adds_exactly_the_new_rows(
    hourly, object_store, monkeypatch, tmp_path, capsys
):
    """As above, the archive in a bucket (the formats write alike whatever the store)."""
    bucket, client = object_store.create_bucket(), object_store.client()
    for variable, value in object_store.env.items():
        monkeypatch.setenv(variable, value)
    later = sorted((hourly / "_manifests").glob("*.json"))[::3]  # 10 runs come after the first pull
    for path in sorted(p for p in hourly.rglob("*") if p.is_file() and p not in later):
        client.put_object(
            Bucket=bucket, Key=f"news/{path.relative_to(hourly).as_posix()}", Body=path.read_bytes()
        )
    uri, dest = f"s3://{bucket}/news", tmp_path / "rows.jsonl"
    assert run(capsys, "pull", uri, str(dest))[0] == 0
    assert len(versions(dest)) == 20
    for path in later:
        client.put_object(Bucket=bucket, Key=f"news/_manifests/{path.name}", Body=path.read_bytes())
    code, out, _ = run(capsys, "compact", uri)
    assert code == 0 and "compacted 10 partitions" in out, out
    code, out, _ = run(capsys, "pull", uri, str(dest))
    assert code == 0 and out.startswith("10 rows from ") and "rows pulled before, left out" in out, out
    assert versions(dest) == archived(hourly)
    code, out, _ = run(capsys, "pull", uri, str(dest))
    assert code == 0 and out.startswith("0 rows from 0 files"), out
    assert versions(dest) == archived(hourly)


# 7. destinations


@pytest.mark.parametrize(
    ("name", "written"),
    [("rows.jsonl", "jsonl"), ("rows.csv", "csv"), ("rows", "parquet"), ("rows.parquet", "parquet")],
)
def test_the_format_follows_the_name_and_no_journal_is_left_in_sight(
    archive, tmp_path, capsys, name, written
):
    out = tmp_path / "out"
    out.mkdir()
    assert run(capsys, "pull", str(archive), str(out / name), "--outlet", "gmw-cq")[0] == 0
    dest = out / name
    if written == "parquet":
        assert dest.is_dir() and [p.name for p in dest.iterdir() if p.name.startswith(".")] == [".pull.jsonl"]
    elif written == "jsonl":
        assert all(
            json.loads(line)["outlet_id"] == "gmw-cq"
            for line in dest.read_text(encoding="utf-8").splitlines()
        )
    else:
        assert dest.read_text(encoding="utf-8").startswith("article_id,url,")
    assert len(versions(dest)) == GMW_ROWS
    assert [p.name for p in out.iterdir() if not p.name.startswith(".")] == [name]  # no out.jsonl.pull.jsonl


@pytest.mark.parametrize(
    "dest", ["{archive}", "{archive}/outlet=gmw-cq", "{archive}/rows.jsonl", "{tmp}", ""]
)
def test_a_destination_in_or_around_the_archive_or_none_is_refused(archive, tmp_path, capsys, dest):
    """A pull written into the archive it reads would rewrite parts that no manifest names."""
    before = {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()}
    code, out, err = run(capsys, "pull", str(archive), dest.format(archive=archive, tmp=tmp_path))
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert "overlaps the archive" in err or "DEST is empty" in err
    assert {p: p.read_bytes() for p in tmp_path.rglob("*") if p.is_file()} == before
    assert main(["verify", str(archive)]) == 0


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (["rows.jsonl", "--format", "csv"], "--format csv contradicts {tmp}/rows.jsonl, which names jsonl"),
        (
            ["rows.parquet", "--format", "jsonl"],
            "--format jsonl contradicts {tmp}/rows.parquet, which names parquet",
        ),
        (["rows.txt"], "cannot tell a format from {tmp}/rows.txt: name it .jsonl, .csv or .parquet"),
        (["-", "--format", "parquet"], "parquet cannot go to standard output"),
        (["folder.jsonl"], "{tmp}/folder.jsonl is a folder: a jsonl pull writes a file there"),
        (["file"], "{tmp}/file is a file: a parquet pull writes a folder there"),
    ],
)
def test_a_destination_that_contradicts_its_format_is_refused(archive, tmp_path, capsys, argv, why):
    (tmp_path / "folder.jsonl").mkdir()
    (tmp_path / "file").write_text("mine\n")
    before = sorted(tmp_path.rglob("*"))
    dest, *options = argv
    code, out, err = run(
        capsys, "pull", str(archive), dest if dest == "-" else str(tmp_path / dest), *options
    )
    assert (code, out) == (2, "")
    assert err.startswith(f"newsarchive: {why.format(tmp=tmp_path)}"), err
    assert sorted(tmp_path.rglob("*")) == before and (tmp_path / "file").read_text() == "mine\n"


@pytest.mark.parametrize(
    ("options", "rows"), [([], "jsonl"), (["--format", "csv"], "csv"), (["--format", "jsonl"], "jsonl")]
)
def test_a_dash_writes_the_rows_to_standard_output_and_the_summary_to_standard_error(
    archive, tmp_path, capsysbinary, monkeypatch, options, rows
):
    monkeypatch.chdir(tmp_path)
    assert main(["pull", str(archive), "-", "--outlet", "gmw-cq", *options]) == 0
    out, err = capsysbinary.readouterr()
    if rows == "jsonl":
        pulled = [json.loads(line) for line in out.splitlines()]
    else:
        pulled = list(csv.DictReader(io.StringIO(out.decode("utf-8"), newline="")))
    assert sorted(row["outlet_id"] for row in pulled) == ["gmw-cq"] * GMW_ROWS
    assert err.decode() == f"{GMW_ROWS} rows from 2 files into standard output\n"
    assert list(tmp_path.iterdir()) == [archive]  # no file named -, no journal


def test_a_pull_into_a_file_removed_since_pulls_everything_again(archive, tmp_path, capsys):
    """The journal is hidden: a DEST removed must not leave a pull that thinks it is done."""
    dest = tmp_path / "rows.jsonl"
    assert run(capsys, "pull", str(archive), str(dest))[0] == 0
    everything = versions(dest)
    dest.unlink()
    code, out, _ = run(capsys, "pull", str(archive), str(dest))
    assert code == 0 and out.startswith(f"{len(everything)} rows from 14 files into "), out
    assert versions(dest) == everything == archived(archive)


# 5. filters that name what the archive does not hold

HELD_OUTLETS = "breakinglatest, gmw-cq, hangzhou-net, jzyinliu, sxkjt, tianyan-gzdaily"


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (
            ["pull", "{archive}", "{tmp}/rows", "--outlet", "nosuch"],
            f"no outlet 'nosuch' in {{archive}}; it holds: {HELD_OUTLETS}",
        ),
        (
            ["pull", "{archive}", "{tmp}/rows", "--outlet", "gmw-cq", "--lang", "xx"],
            "no language 'xx' in {archive}; it holds: en, zh",
        ),
        (
            ["pull", "{archive}", "{tmp}/rows", "--since", "2024-05", "--until", "2024-04-30"],
            "--until 2024-04-30 is before --since 2024-05-01",
        ),
        (
            ["compact", "{archive}", "--outlet", "nosuch"],
            f"no outlet 'nosuch' in {{archive}}; it holds: {HELD_OUTLETS}",
        ),
        (
            ["compact", "{archive}", "--month", "2030-01"],
            "no month '2030-01' in {archive}; it holds: 2023-05, 2023-06, 2023-07, 2024-02",
        ),
        (
            ["reextract", "{archive}", "--to", "{tmp}/again", "--outlet", "nosuch"],
            f"no outlet 'nosuch' in {{archive}}; it holds: {HELD_OUTLETS}",
        ),
    ],
    ids=["pull-outlet", "pull-lang", "pull-until", "compact-outlet", "compact-month", "reextract-outlet"],
)
def test_a_filter_naming_what_the_archive_does_not_hold_is_refused_with_what_it_holds(
    archive, tmp_path, capsys, argv, why
):
    before = sorted(archive.rglob("*"))
    code, out, err = run(capsys, *(word.format(archive=archive, tmp=tmp_path) for word in argv))
    assert (code, out) == (2, "")
    assert err.startswith(f"newsarchive: {why.format(archive=archive)}") and err.count("\n") == 1, err
    assert sorted(archive.rglob("*")) == before  # no lock taken, nothing compacted
    assert sorted(tmp_path.iterdir()) == [archive]  # nothing pulled, no new archive sealed


@pytest.mark.parametrize(
    ("argv", "why"),
    [
        (
            ["compact", "{archive}", "--month", "2024-13"],
            "argument --month: not a month (YYYY-MM, or unknown): '2024-13'",
        ),
        (
            ["pull", "{archive}", "{tmp}/rows", "--since", "2024-13"],
            "argument --since: not a day (YYYY-MM-DD) or month (YYYY-MM): '2024-13'",
        ),
    ],
)
def test_a_month_that_is_none_is_refused(archive, tmp_path, capsys, argv, why):
    code, out, err = run(capsys, *(word.format(archive=archive, tmp=tmp_path) for word in argv))
    assert (code, out) == (2, "")
    assert err.rstrip().endswith(why), err


def test_since_and_until_take_a_month_for_its_first_and_last_day(archive, tmp_path, capsys):
    dest = tmp_path / "rows.jsonl"
    code, out, _ = run(capsys, "pull", str(archive), str(dest), "--since", "2024-03", "--until", "2024-04")
    assert code == 0, out
    months = [json.loads(line)["published_at"][:7] for line in dest.read_text(encoding="utf-8").splitlines()]
    table = ds.dataset(archive, format="parquet", partitioning="hive").to_table(columns=["published"])
    held = [month for month in table.column("published").to_pylist() if month in ("2024-03", "2024-04")]
    assert sorted(months) == sorted(held) and set(months) == {"2024-03", "2024-04"}


def test_the_list_of_what_the_archive_holds_is_bounded(tmp_path, capsys):
    """An archive of 25 outlets: a refusal names 20 and says how many more."""
    archive = tmp_path / "archive"
    (archive / "_manifests").mkdir(parents=True)
    outlets = [f"outlet-{n:02d}" for n in range(25)]
    files = [
        {
            "key": f"outlet={name}/published=2024-05/part-20240501T000000Z-a-00001.parquet",
            "rows": 1,
            "bytes": 1,
            "sha256": "0" * 64,
            "languages": {"en": 1},
        }
        for name in outlets
    ]
    manifest = {
        "crawl_id": "20240501T000000Z-a",
        "schema_version": "1.2",
        "files": files,
        "rows": 25,
        "bytes": 25,
    }
    (archive / "_manifests" / "20240501T000000Z-a.json").write_text(json.dumps(manifest), encoding="utf-8")
    code, _, err = run(capsys, "pull", str(archive), str(tmp_path / "rows"), "--outlet", "nosuch")
    assert code == 2
    listed = ", ".join(outlets[:20])
    refusal = f"no outlet 'nosuch' in {archive}; it holds: {listed} and 5 more (see newsarchive ls)"
    assert err == f"newsarchive: {refusal}\n"


def test_languages_are_not_refused_where_the_manifests_do_not_say_them(archive, tmp_path, capsys):
    """Manifests older than the files' ``languages``: any language may be there."""
    (path,) = (archive / "_manifests").glob("*.json")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["files"] = [{k: v for k, v in entry.items() if k != "languages"} for entry in manifest["files"]]
    path.write_text(json.dumps(manifest), encoding="utf-8")
    code, out, _ = run(capsys, "pull", str(archive), str(tmp_path / "rows.jsonl"), "--lang", "xx")
    assert code == 0 and out.startswith("0 rows from 14 files into "), out
