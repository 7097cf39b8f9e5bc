"""JSON and values read from an archive never crash a command, through the CLI: a template, a
manifest, an index base's metadata, a lock file or a lease that is too deep, holds numbers past
their range or strings of another form is named (a PROBLEM line, exit 1; a lock file: exit 2),
read around, and every legitimate row is still archived or shown."""

from __future__ import annotations

import json
import shutil
import socket
import unicodedata
from pathlib import Path

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from pipelines.archive.keys import INDEX_SUFFIX, base_key, lease_key
from tests.conftest import FIXTURES, run_cli

pytestmark = pytest.mark.slow  # each test runs commands, most of them a crawl, in subprocesses

HOSTILE = FIXTURES / "jsondata"
OUTLET = "sxkjt"
TEMPLATE = f"_templates/{OUTLET}/20261101T000000Z-aaaaaa.json"
PLANTED = "_manifests/20991231T000000Z-zzzzzz.json"  # sorts after every real manifest: the newest
DEEP = "[" * 100_000 + "]" * 100_000
DISCOVERY = json.loads((HOSTILE / "discovery_hostile.json").read_text(encoding="utf-8"))
_BIDI = ("LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI")


def archived(mirror_server) -> set[str]:
    return {a.url for a in mirror_server.mirror.articles if a.outlet_id == OUTLET and a.expect == "archived"}


def crawl(mirror_server, archive: Path):
    return run_cli("crawl", "--mirror-url", mirror_server.url, "--archive", str(archive), "--outlet", OUTLET)


def urls(archive: Path) -> set[str]:
    return set(
        ds.dataset(archive, format="parquet", partitioning="hive")
        .to_table(columns=["url"])
        .column(0)
        .to_pylist()
    )


def no_crash(run) -> str:
    both = run.stdout + run.stderr
    assert not [crash for crash in ("Traceback", "RecursionError", "OverflowError") if crash in both], both
    return both


def plant(archive: Path, key: str, data: str | bytes) -> None:
    (archive / key).parent.mkdir(parents=True, exist_ok=True)
    (archive / key).write_bytes(data.encode() if isinstance(data, str) else data)


@pytest.fixture
def copied(mirror_crawl, tmp_path) -> Path:
    """The mirror crawl's archive: one run, 14 files."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
    shutil.copytree(mirror_crawl.archive, tmp_path / "archive", ignore=shutil.ignore_patterns(".*"))
    return tmp_path / "archive"


@pytest.mark.parametrize(
    "template",
    [
        (HOSTILE / "template_float_overflow.json").read_text(),
        (HOSTILE / "template_nan.json").read_text(),
        (HOSTILE / "template_pages_not_a_count.json").read_text(),
        DEEP,
    ],
    ids=["1e999", "NaN", "pages-10**29", "deep"],
)
def test_a_damaged_template_is_learned_again_by_crawl_and_removed_by_reindex(
    mirror_server, tmp_path, template
):
    archive = tmp_path / "archive"
    plant(archive, TEMPLATE, template)
    run = crawl(mirror_server, archive)
    no_crash(run)
    assert run.returncode == 1 and f"PROBLEM {TEMPLATE}: not a site template" in run.stdout
    assert urls(archive) == archived(mirror_server)
    plant(archive, TEMPLATE, template)  # (the crawl replaced it with the one it learned)
    reindexed = run_cli("reindex", str(archive))
    assert f"removed the damaged template {TEMPLATE}" in no_crash(reindexed)
    assert not (archive / TEMPLATE).exists()
    verified = run_cli("verify", str(archive))
    no_crash(verified)
    assert verified.returncode == 0, verified.stdout


@pytest.mark.parametrize("discovery", [*DISCOVERY.values(), None], ids=[*DISCOVERY, "deep manifest"])
def test_a_newest_manifest_with_damaged_discovery_validators_is_named_and_every_page_fetched(
    mirror_server, tmp_path, discovery
):
    archive = tmp_path / "archive"
    manifest = {"crawl_id": PLANTED.split("/")[1].removesuffix(".json"), "files": [], "discovery": discovery}
    plant(archive, PLANTED, DEEP if discovery is None else json.dumps(manifest))
    run = crawl(mirror_server, archive)
    no_crash(run)
    assert run.returncode == 1 and f"PROBLEM {PLANTED}: " in run.stdout
    assert urls(archive) == archived(mirror_server)


def test_an_index_base_with_deeply_nested_metadata_is_read_around(mirror_server, tmp_path):
    archive = tmp_path / "archive"
    assert crawl(mirror_server, archive).returncode == 0
    (delta,) = sorted((archive / "_index").glob(f"delta-*{INDEX_SUFFIX}"))
    table = pq.read_table(delta)
    metadata = {**(table.schema.metadata or {}), b"newsarchive.index.merged": DEEP.encode()}
    base = base_key("20991231T000000Z-zz0000")
    pq.write_table(table.replace_schema_metadata(metadata), archive / base)
    again = crawl(mirror_server, archive)
    no_crash(again)
    assert (
        again.returncode == 1 and f"PROBLEM {base}: its list of the index files it replaces" in again.stdout
    )
    verified = run_cli("verify", str(archive))
    assert verified.returncode == 1 and base in no_crash(verified)
    assert urls(archive) == archived(mirror_server)


@pytest.mark.parametrize(
    "command",
    [
        ["ls"],
        ["verify"],
        ["card", "--out", "{tmp}/card"],
        ["pull", "{archive}", "{tmp}/pulled"],
        ["pull", "--format", "csv", "{archive}", "{tmp}/pulled.csv"],
        ["compact"],
        ["reindex"],
    ],
    ids=lambda command: "-".join(c for c in command if not c.startswith(("{", "-"))),
)
@pytest.mark.parametrize("damage", ["deep", "rows 10**400"])
def test_a_damaged_manifest_is_a_problem_of_every_archive_command_and_the_rest_is_read(
    copied, tmp_path, command, damage
):
    (real,) = (copied / "_manifests").glob("*.json")
    stated = json.loads(real.read_text())
    rows = stated["rows"]
    if damage == "deep":
        plant(copied, PLANTED, DEEP)
        named = PLANTED
    else:
        rows -= stated["files"][0]["rows"]
        stated["files"][0]["rows"] = 10**400
        real.write_text(json.dumps(stated))
        named = f"_manifests/{real.name}"
    args = [part.format(tmp=tmp_path, archive=copied) for part in command]
    run = run_cli(*args, *([] if "{archive}" in command else [str(copied)]))
    no_crash(run)
    assert run.returncode == 1, run.stdout
    assert any(line.removeprefix("PROBLEM ").startswith(named) for line in run.stdout.splitlines())
    if command == ["ls"]:
        assert f"{rows:,} rows" in run.stdout.splitlines()[0]
    assert len(urls(copied)) >= rows


@pytest.mark.parametrize(
    "note",
    ["[" * 4000, '{"run": ' * 1000, '{"run": 1e999, "pid": NaN}', "\udcff"],
    ids=["deep", "deep-object", "1e999", "bytes"],
)
def test_a_lock_file_of_damaged_json_is_refused_and_left_as_it_is(mirror_server, tmp_path, note):
    archive = tmp_path / "archive"
    lock = archive / ".newsarchive.lock"
    planted = note.encode("utf-8", "surrogateescape")
    plant(archive, ".newsarchive.lock", planted)
    run = crawl(mirror_server, archive)
    assert run.returncode == 2 and "no lock note of newsarchive" in no_crash(run)
    assert lock.read_bytes() == planted


@pytest.mark.parametrize(
    "lease, exit_code",
    [
        ("[" * 4000 + "]" * 96, 0),  # no lease of ours: taken over
        (b"\xff\x00" * 100, 0),
        ({"pid": 10**30, "expires_at": "2099-01-01T00:00:00+00:00"}, 75),  # held: waited out
        ({"pid": -1, "expires_at": "2099-01-01T00:00:00+00:00"}, 75),
        ({"pid": 1, "expires_at": [1]}, 0),  # expires at no time: expired
    ],
    ids=["deep", "not-utf8", "pid-10**30", "pid-minus-1", "expires-a-list"],
)
def test_a_damaged_lease_in_a_bucket_never_crashes_a_command(copied, seaweedfs, lease, exit_code):
    bucket, client = seaweedfs.create_bucket(), seaweedfs.client()
    for path in sorted(p for p in copied.rglob("*") if p.is_file()):
        client.put_object(Bucket=bucket, Key=path.relative_to(copied).as_posix(), Body=path.read_bytes())
    if isinstance(lease, dict):
        lease = json.dumps(
            {"run": "x", "host": socket.gethostname(), "since": "2026-01-01T00:00:00+00:00"} | lease
        )
    client.put_object(
        Bucket=bucket, Key=lease_key(7), Body=lease.encode() if isinstance(lease, str) else lease
    )
    run = run_cli("compact", f"s3://{bucket}", env=seaweedfs.env)
    no_crash(run)
    assert run.returncode == exit_code, run.stdout + run.stderr
    listed = run_cli("ls", f"s3://{bucket}", env=seaweedfs.env)
    assert listed.returncode == 0 and "30 rows" in listed.stdout.splitlines()[0]


def test_ls_shows_strings_of_a_manifest_without_a_control_or_bidi_character(copied):
    (real,) = (copied / "_manifests").glob("*.json")
    stated = json.loads(real.read_text())
    hostile = json.loads((HOSTILE / "hostile_strings.json").read_text(encoding="utf-8"))
    stated["started_at"] = hostile[0]
    for file, code in zip(stated["files"], hostile, strict=False):
        file["languages"] = {code: file["rows"]}
    real.write_text(json.dumps(stated))
    run = run_cli("ls", str(copied))
    assert run.returncode == 0 and f"{stated['rows']:,} rows" in no_crash(run).splitlines()[0]
    shown = [
        char
        for char in run.stdout.replace("\n", "")
        if unicodedata.category(char) in ("Cc", "Zl", "Zp") or unicodedata.bidirectional(char) in _BIDI
    ]
    assert not shown and "PWNED" in run.stdout  # folded, not dropped
