"""``newsarchive ls / verify / pull`` as an archivist runs them, on the mirror crawl's archive in a
local folder and in both real S3 stores (SeaweedFS, Ceph RGW)."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

import pyarrow.dataset as ds
import pytest
from PIL import Image

from pipelines.archive.schema import SCHEMA
from pipelines.archive.storage import LocalStore
from pipelines.tools.pull import Slice, pull
from tests.archives import hourly_runs, row_keys
from tests.conftest import ARCHIVED, REPO, run_cli
from tests.faultproxy import FaultProxy
from tests.objectstores import S3_STORES

pytestmark = pytest.mark.slow  # each test runs the archivist commands in subprocesses; some kill them

PREFIX = "news"


@dataclass
class Archive:
    """The mirror crawl's archive somewhere, and a way to change one of its objects there."""

    uri: str
    env: dict[str, str]
    put: Callable[[str, bytes], None]
    delete: Callable[[str], None]
    source: Path  # the local copy it was made from

    def run(self, *args: str):
        return run_cli(*args, env=self.env)

    def manifest(self) -> dict:
        (path,) = (self.source / "_manifests").glob("*.json")
        return json.loads(path.read_text(encoding="utf-8"))

    def summary(self) -> dict:
        run = self.run("ls", self.uri, "--json")
        assert run.returncode == 0, run.stdout + run.stderr
        return json.loads(run.stdout)

    def pulled(self, dest: Path) -> list[tuple]:
        run = self.run("pull", self.uri, str(dest))
        assert run.returncode == 0, run.stdout + run.stderr
        return row_keys(ds.dataset(dest, format="parquet", partitioning="hive").to_table())


def placed(where: str, source: Path, request) -> Archive:
    """The archive folder ``source`` as it is (``where`` is ``local``), or copied into a fresh
    bucket of a real store (the name of its fixture)."""
    if where == "local":

        def put(key: str, data: bytes) -> None:
            (source / key).parent.mkdir(parents=True, exist_ok=True)
            (source / key).write_bytes(data)

        return Archive(str(source), {}, put, lambda key: (source / key).unlink(), source)
    store = request.getfixturevalue(where)
    bucket, client = store.create_bucket(), store.client()
    for path in sorted(p for p in source.rglob("*") if p.is_file()):
        key = f"{PREFIX}/{path.relative_to(source).as_posix()}"
        client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())
    return Archive(
        f"s3://{bucket}/{PREFIX}",
        store.env,
        lambda key, data: client.put_object(Bucket=bucket, Key=f"{PREFIX}/{key}", Body=data),
        lambda key: client.delete_object(Bucket=bucket, Key=f"{PREFIX}/{key}"),
        source,
    )


STORES = ["local", *S3_STORES]


@pytest.fixture(params=STORES)
def archive(request, mirror_crawl, tmp_path) -> Archive:
    """The mirror crawl's archive: one run, 14 files."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
    source = tmp_path / "source"
    shutil.copytree(mirror_crawl.archive, source, ignore=shutil.ignore_patterns(".*"))
    return placed(request.param, source, request)


@pytest.fixture(params=STORES)
def hourly(request, mirror_crawl, tmp_path) -> Archive:
    """The same rows as 30 hourly runs had left them: 30 files of one row, 30 manifests."""
    return placed(request.param, hourly_runs(mirror_crawl.archive, tmp_path / "hourly"), request)


def test_ls_tells_runs_outlets_months_languages_rows_and_bytes(archive):
    run = archive.run("ls", archive.uri, "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    summary, manifest = json.loads(run.stdout), archive.manifest()
    assert summary["rows"] == len(ARCHIVED) == manifest["rows"] and summary["bytes"] == manifest["bytes"]
    assert [r["crawl_id"] for r in summary["runs"]] == [manifest["crawl_id"]]
    assert set(summary["outlets"]) == {a.outlet_id for a in ARCHIVED}
    assert sum(summary["months"].values()) == sum(summary["languages"].values()) == len(ARCHIVED)
    table = ds.dataset(archive.source, format="parquet", partitioning="hive").to_table(columns=["language"])
    languages = table.column("language").value_counts().to_pylist()
    assert summary["languages"] == {c["values"]: c["counts"] for c in languages}
    text = archive.run("ls", archive.uri)
    assert text.returncode == 0 and f"{len(ARCHIVED)} rows" in text.stdout and "gmw-cq" in text.stdout


def test_verify_passes_then_names_each_damaged_missing_or_stray_file(archive):
    intact = archive.run("verify", archive.uri)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "all files match their manifests" in intact.stdout
    first, second = (f["key"] for f in archive.manifest()["files"][:2])
    damaged = bytearray((archive.source / first).read_bytes())
    damaged[len(damaged) // 2] ^= 0xFF
    archive.put(first, bytes(damaged))
    archive.delete(second)
    stray = "outlet=gmw-cq/published=2024-03/part-stray.parquet"
    archive.put(stray, (archive.source / first).read_bytes())
    broken = archive.run("verify", archive.uri)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    problems = broken.stdout.splitlines()[:-1]
    assert sorted(problems) == sorted(
        [
            f"{first}: sha256 differs from the manifest's (the file changed since it was published)",
            f"{second}: missing (listed in _manifests/{archive.manifest()['crawl_id']}.json)",
            f"{stray}: in no manifest (a run still in progress publishes its manifest last)",
        ]
    )
    assert broken.stdout.splitlines()[-1].endswith(": 3 problems")


def test_pull_reads_only_what_may_match_checks_it_and_writes_a_hive_dataset(archive, tmp_path):
    dest = tmp_path / "slice"
    run = archive.run(
        "pull", archive.uri, str(dest), "--lang", "zh", "--since", "2024-01-01", "--until", "2024-03-31"
    )
    assert run.returncode == 0, run.stdout + run.stderr
    original = ds.dataset(archive.source, format="parquet", partitioning="hive").to_table().to_pylist()
    expected = sorted(
        r["url"]
        for r in original
        if r["language"] == "zh" and r["published"] and "2024-01" <= r["published"] <= "2024-03"
    )
    pulled = ds.dataset(dest, format="parquet", partitioning="hive").to_table()
    assert expected and sorted(pulled.column("url").to_pylist()) == expected
    months = {key.split("/")[1] for key in (p.relative_to(dest).as_posix() for p in dest.rglob("*.parquet"))}
    assert months <= {"published=2024-01", "published=2024-02", "published=2024-03"}
    assert f"{len(expected)} rows from" in run.stdout


def test_pull_leaves_out_a_file_that_differs_from_its_manifest_and_says_so(archive, tmp_path):
    files = archive.manifest()["files"]
    damaged = bytearray((archive.source / files[0]["key"]).read_bytes())
    damaged[-100] ^= 0xFF
    archive.put(files[0]["key"], bytes(damaged))
    dest = tmp_path / "all.jsonl"
    run = archive.run("pull", archive.uri, str(dest), "--format", "jsonl")
    assert run.returncode == 1
    assert f"PROBLEM {files[0]['key']}: sha256 differs" in run.stdout
    rows = [json.loads(line) for line in dest.read_text(encoding="utf-8").splitlines()]
    assert len(rows) == len(ARCHIVED) - files[0]["rows"]
    assert files[0]["key"] not in (dest.parent / ".all.jsonl.pull.jsonl").read_text(encoding="utf-8")


def test_pulled_csv_holds_every_row_with_lists_as_json(archive, tmp_path):
    dest = tmp_path / "all.csv"
    run = archive.run("pull", archive.uri, str(dest), "--format", "csv", "--outlet", "gmw-cq")
    assert run.returncode == 0, run.stdout + run.stderr
    with dest.open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["url"] for r in rows) == sorted(a.url for a in ARCHIVED if a.outlet_id == "gmw-cq")
    assert all(isinstance(json.loads(r["authors"]), list) for r in rows)


def test_compact_turns_30_hourly_files_into_14_and_every_reader_sees_the_same_rows(hourly, tmp_path):
    before = hourly.pulled(tmp_path / "before")
    assert hourly.summary()["files"] == 30 and len(before) == len(ARCHIVED)
    run = hourly.run("compact", hourly.uri)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "compacted 10 partitions: 26 files into 10 (26 rows)" in run.stdout
    assert "deleted 26 files replaced by compaction" in run.stdout
    summary = hourly.summary()
    assert (summary["files"], summary["rows"]) == (14, len(ARCHIVED))
    assert hourly.pulled(tmp_path / "after") == before
    checked = hourly.run("verify", hourly.uri)
    assert checked.returncode == 0 and checked.stdout.startswith(f"{hourly.uri}: 31 manifests, 14 files"), (
        checked.stdout
    )
    again = hourly.run("compact", hourly.uri)
    assert again.returncode == 0 and "nothing to compact" in again.stdout


def test_the_card_describes_the_archive_in_markdown_and_one_self_contained_page(archive, tmp_path):
    run = archive.run("card", archive.uri, "--out", str(tmp_path / "card"))
    assert run.returncode == 0, run.stdout + run.stderr
    markdown = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    page = (tmp_path / "card" / "card.html").read_text(encoding="utf-8")
    assert f"{len(ARCHIVED)} rows of {len(ARCHIVED)} articles in 14 Parquet files" in markdown
    for outlet in {a.outlet_id for a in ARCHIVED}:
        assert f"| {outlet} | " in markdown and f"<td>{outlet}</td>" in page
    for column in SCHEMA.names:
        assert f"`{column}`" in markdown and f"<code>{column}</code>" in page
    assert page.count('src="data:image/png;base64,') == 2
    assert not re.findall(r'(?:src|href)="(?!data:)|<script|<link', page)  # nothing fetched
    for chart in ("articles-per-month.png", "languages.png"):
        with Image.open(tmp_path / "card" / chart) as image:
            assert image.format == "PNG" and image.width >= 400


def test_the_card_page_renders_in_a_real_headless_browser(mirror_crawl, tmp_path):
    run = run_cli("card", str(mirror_crawl.archive), "--out", str(tmp_path / "card"))
    assert run.returncode == 0, run.stdout + run.stderr
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            "chromium",
            "--headless",
            "--no-sandbox",  # as root, in CI
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1200,1400",
            f"--screenshot={shot}",
            (tmp_path / "card" / "card.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    with Image.open(shot) as image:
        pixels = image.convert("RGB")
        colours = Counter(pixels.get_flattened_data())
    white = colours[(255, 255, 255)] / sum(colours.values())
    assert white < 0.95, f"{white:.1%} of the page is white"
    assert len(colours) > 100  # text, tables and the charts' colours
    assert any(abs(r - 31) + abs(g - 119) + abs(b - 180) < 30 for r, g, b in colours)  # a chart's first bars


def holding_the_nth_file_read(n: int):
    """A fault-proxy rule: the ``n``-th GET of an archived Parquet file is held open."""
    reads = []

    def rule(method: str, path: str) -> str:
        if method == "GET" and "/outlet=" in unquote(path) and path.endswith(".parquet"):
            reads.append(path)
            if len(reads) == n:
                return "hold"
        return "pass"

    return rule


@pytest.mark.parametrize(("output", "killed_at"), [("parquet", 1), ("parquet", 16), ("jsonl", 9)])
@pytest.mark.parametrize("store_name", S3_STORES)
def test_a_pull_killed_while_it_reads_from_the_store_resumes_to_the_same_slice(
    request, mirror_crawl, tmp_path, store_name, output, killed_at
):
    """``kill -9`` while the pull waits for the n-th file of 30; run again, it completes."""
    hourly = placed(store_name, hourly_runs(mirror_crawl.archive, tmp_path / "hourly"), request)
    dest = tmp_path / ("slice" if output == "parquet" else "slice.jsonl")
    whole = tmp_path / ("whole" if output == "parquet" else "whole.jsonl")
    pull(LocalStore(hourly.source), whole, Slice(), output)
    with FaultProxy(hourly.env["AWS_ENDPOINT_URL"], holding_the_nth_file_read(killed_at)) as proxy:
        command = [sys.executable, "-m", "crawler", "pull", hourly.uri, str(dest), "--format", output]
        process = subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **hourly.env, "AWS_ENDPOINT_URL": proxy.url}, text=True
        )
        try:
            assert proxy.held.wait(120)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
    again = hourly.run("pull", hourly.uri, str(dest), "--format", output)
    assert again.returncode == 0, again.stdout + again.stderr
    done = killed_at - 1  # files read before the one the kill interrupted
    assert (f"({done} done by an earlier pull)" in again.stdout) == (done > 0), again.stdout
    if output == "parquet":
        assert sorted(p.relative_to(dest) for p in dest.rglob("*.parquet")) == sorted(
            p.relative_to(whole) for p in whole.rglob("*.parquet")
        )
        assert row_keys(ds.dataset(dest, partitioning="hive").to_table()) == row_keys(
            ds.dataset(whole, partitioning="hive").to_table()
        )
    else:
        assert dest.read_bytes() == whole.read_bytes()


def holding_the_first(method: str, folder: str):
    """A fault-proxy rule: the first ``method`` request for a key under ``folder`` is held open."""
    held = []

    def rule(request_method: str, path: str) -> str:
        if request_method == method and f"/{folder}" in unquote(path) and not held:
            held.append(path)
            return "hold"
        return "pass"

    return rule


@pytest.mark.parametrize(
    ("method", "folder"),
    [
        ("PUT", "outlet="),
        ("PUT", "_manifests/"),
        ("DELETE", "outlet="),
    ],  # a new file, the manifest, a deletion
)
@pytest.mark.parametrize("store_name", S3_STORES)
def test_a_compaction_killed_in_the_store_leaves_it_consistent_and_the_next_one_finishes(
    request, mirror_crawl, tmp_path, store_name, method, folder
):
    """``kill -9`` while the store holds the upload of the first new file, or of the manifest, or
    the first deletion (tests/pipelines/tools/test_compact.py stops it at every step in a folder)."""
    hourly = placed(store_name, hourly_runs(mirror_crawl.archive, tmp_path / "hourly"), request)
    before = hourly.pulled(tmp_path / "before")
    with FaultProxy(hourly.env["AWS_ENDPOINT_URL"], holding_the_first(method, folder)) as proxy:
        command = [sys.executable, "-m", "crawler", "compact", hourly.uri]
        process = subprocess.Popen(
            command, cwd=REPO, env={**os.environ, **hourly.env, "AWS_ENDPOINT_URL": proxy.url}
        )
        try:
            assert proxy.held.wait(120)
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=60)
    assert hourly.pulled(tmp_path / "killed") == before
    assert hourly.run("verify", hourly.uri).returncode == 0
    again = hourly.run("compact", hourly.uri)  # the lease of a run killed on this machine is taken over
    assert again.returncode == 0, again.stdout + again.stderr
    assert hourly.pulled(tmp_path / "after") == before and hourly.summary()["files"] == 14
    checked = hourly.run("verify", hourly.uri)
    assert checked.returncode == 0 and len(checked.stdout.splitlines()) == 1, checked.stdout
