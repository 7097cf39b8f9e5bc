"""Keys are data, never paths, and nothing is deleted on one object's word (issue 31, classes 3,
4 and 5), through the CLI on a local archive and in both real S3 stores: a tampered or damaged
archive is read around, every problem is named, nothing outside the archive or the destination is
created, changed or deleted, and every legitimate row is still there and pullable."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from botocore.exceptions import ClientError

from pipelines.archive.keys import LEASES, compacted_key, manifest_key, part_of
from pipelines.archive.schema import SCHEMA
from tests.archives import hourly_runs, row_keys
from tests.conftest import CrawlRun, run_cli
from tests.faultproxy import FaultProxy
from tests.objectstores import S3_STORES
from tests.pipelines.tools.test_compact import FORGERIES, RETYPINGS, planted_compaction
from tests.test_archive_tools import PREFIX, STORES, Archive, placed

pytestmark = pytest.mark.slow  # crawls, compactions and pulls in subprocesses, on three stores


def snapshot(folder: Path, *leaving_out: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder`` but those under ``leaving_out``, with its digest and inode (a
    file replaced by one of the same bytes has another inode)."""
    files = {}
    for path in sorted(folder.rglob("*")):
        if path.is_file() and not any(path.is_relative_to(other) for other in leaving_out):
            files[str(path)] = (hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_ino)
    return files


@dataclass
class Placed:
    """An archive where a test put it, and a look at the store beneath it."""

    archive: Archive
    bucket: str | None  # None: a folder
    client: Any = None  # the bucket's, raw

    @classmethod
    def at(cls, where: str, source: Path, request) -> Placed:
        archive = placed(where, source, request)
        if where == "local":
            return cls(archive, None)
        return cls(
            archive, archive.uri.removeprefix("s3://").split("/")[0], request.getfixturevalue(where).client()
        )

    def held(self) -> set[str]:
        """Every key the store holds but the lock's: the folder's files (dot names aside), or
        every object of the bucket under any prefix (so that a delete beside the archive shows)."""
        if self.bucket is None:
            root = self.archive.source
            return {
                p.relative_to(root).as_posix()
                for p in root.rglob("*")
                if p.is_file() and not p.name.startswith(".")
            }
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket)
        keys = {entry["Key"] for page in pages for entry in page.get("Contents", [])}
        return {key for key in keys if not key.startswith(self.key(f"{LEASES}/"))}  # the lock's own

    def key(self, key: str) -> str:
        """``key`` of the archive as :meth:`held` lists it."""
        return key if self.bucket is None else f"{PREFIX}/{key}"

    def put_literally(self, key: str, data: bytes) -> None:
        """An object under ``key`` as it is, ``..`` and all, where the store keeps such a key
        (Ceph RGW does; SeaweedFS refuses it)."""
        with contextlib.suppress(ClientError):
            self.archive.put(key, data)

    def read(self, key: str) -> bytes:
        if self.bucket is None:
            return (self.archive.source / key).read_bytes()
        return self.client.get_object(Bucket=self.bucket, Key=self.key(key))["Body"].read()


def pulled(archive: Archive, dest: Path) -> tuple[CrawlRun, list[tuple]]:
    """``newsarchive pull`` into ``dest``, and the rows it wrote there."""
    run = archive.run("pull", archive.uri, str(dest))
    files = sorted(dest.rglob("*.parquet")) if dest.exists() else []
    return run, row_keys(ds.dataset(files, format="parquet").to_table()) if files else []


def problems(run: CrawlRun) -> list[str]:
    return [line for line in run.stdout.splitlines() if line.startswith("PROBLEM")]


def listed(key: str, data: bytes) -> dict:
    """A manifest's entry for ``data`` under ``key``, with its true size and digest."""
    return {"key": key, "rows": 1, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def plant(archive: Archive, run_id: str, **manifest: object) -> str:
    """A manifest nobody published, as an attacker (or a careless copy) leaves it."""
    key = manifest_key(run_id)
    archive.put(key, json.dumps({"crawl_id": run_id, "schema_version": "1", **manifest}).encode())
    return key


@pytest.fixture(params=STORES)
def crawled(request, mirror_crawl, tmp_path) -> Placed:
    """The mirror crawl's archive (one run, 14 files) two folders down the test's, or in a bucket."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
    source = tmp_path / "archives" / "source"
    shutil.copytree(mirror_crawl.archive, source, ignore=shutil.ignore_patterns(".*"))
    return Placed.at(request.param, source, request)


def test_keys_leading_out_of_the_archive_or_the_destination_are_never_used(crawled, tmp_path):
    """A planted manifest lists files under keys that lead out of the archive and, joined to the
    pull's destination, out of that: up with ``..`` from the root and from deep in a partition,
    absolute, with backslashes, with a NUL, percent-encoded, and a WARC likewise. The bytes are
    there with the digests the manifest gives (where the keys lead from a folder archive; in the
    bucket under the literal keys), so only a check of the keys keeps the pull from reading and
    writing outside. ``ls``, ``verify`` and ``compact`` name the manifest and touch nothing."""
    archive = crawled.archive
    _, legitimate = pulled(archive, tmp_path / "clean")
    parts = sorted(file["key"] for file in archive.manifest()["files"])
    data = (archive.source / parts[0]).read_bytes()
    reaching = [
        "../../escaped/up.parquet",
        "outlet=gmw-cq/published=2024-03/../../../../escaped/deep.parquet",
        str(tmp_path / "escaped" / "absolute.parquet"),
    ]
    for key in reaching:  # the bytes where the key leads from the folder; under the key in a bucket
        target = Path(os.path.normpath(archive.source / key))
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        if crawled.bucket and not key.startswith("/"):
            crawled.put_literally(key, data)
    hostile = [
        *reaching,
        "outlet=gmw-cq/published=2024-03/..\\..\\..\\..\\escaped\\back.parquet",
        "outlet=gmw-cq/published=2024-03/part-x-00001.parquet\x00/../../../../escaped/nul.parquet",
        "outlet=gmw-cq/published=2024-03/part-" + "%2e%2e%2f" * 4 + "-00001.parquet",
    ]
    warc = {
        **listed("../../escaped/x.warc.gz", data),
        "records": 1,
        "cdxj": listed("../../escaped/x.cdxj", data),
    }
    files = [listed(key, data) for key in hostile]
    planted = plant(archive, "20990101T000000Z-planted", files=files, warcs=[warc])
    keys = crawled.held()
    dest = tmp_path / "out" / "dest"
    outside = snapshot(tmp_path, archive.source, dest)
    run, rows = pulled(archive, dest)
    assert run.returncode == 1, run.stdout + run.stderr
    assert len(problems(run)) == len(hostile) + 1, run.stdout  # each file, and the WARC
    assert all(planted in line and "left out" in line for line in problems(run)), run.stdout
    assert "\x00" not in run.stdout + run.stderr
    assert rows == legitimate and len(rows) == 30
    assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*.parquet")) == parts
    for command in ("ls", "verify", "compact"):
        named = archive.run(command, archive.uri)
        assert named.returncode == 1 and planted in named.stdout, named.stdout + named.stderr
    assert snapshot(tmp_path, archive.source, dest) == outside
    assert crawled.held() == keys


def test_supersedes_takes_out_only_parts_a_verified_compaction_replaced_in_its_partition(crawled, tmp_path):
    """Planted manifests name under ``supersedes`` every key of the archive (parts of every
    partition, the WARC, its CDXJ, the manifests, the index, the templates), files outside it and
    an object beside it in the bucket: a crawl's manifest; a compaction's whose file is missing;
    one whose file is there but not with its digest; and one whose file is there and verifies,
    which replaces the one part of its own partition, and nothing else."""
    archive = crawled.archive
    _, legitimate = pulled(archive, tmp_path / "clean")
    victim = tmp_path / "victim.txt"
    victim.write_text("not the archive's")
    if crawled.bucket:
        crawled.put_literally("../beside.txt", b"not the archive's")
    named = [
        *sorted(key.removeprefix(f"{PREFIX}/") for key in crawled.held()),
        "../victim.txt",
        "../../../victim.txt",
        str(victim),
        "../beside.txt",
    ]
    entry = min(archive.manifest()["files"], key=lambda file: file["key"])
    part, stated = entry["key"], {"rows": entry["rows"], "article_ids": entry["article_ids"]}
    data = (archive.source / part).read_bytes()
    plant(archive, "20990101T000001Z-crawl", files=[], supersedes=named)
    for run_id, content in (
        ("20990101T000002Z-missing", None),
        ("20990101T000003Z-forged", b"not the bytes listed"),
        ("20990101T000004Z-copied", data),
    ):
        key = compacted_key(part_of(part).partition, run_id, 1)
        if content is not None:
            archive.put(key, content)
        plant(archive, run_id, compaction=True, files=[{**listed(key, data), **stated}], supersedes=named)
    keys = crawled.held()
    outside = snapshot(tmp_path, archive.source, tmp_path / "after")
    run = archive.run("compact", archive.uri)
    assert run.returncode == 1, run.stdout + run.stderr
    for manifest in ("20990101T000001Z-crawl", "20990101T000002Z-missing", "20990101T000003Z-forged"):
        assert f"PROBLEM _manifests/{manifest}.json" in run.stdout, run.stdout
    assert keys - crawled.held() == {crawled.key(part)}, run.stdout
    assert snapshot(tmp_path, archive.source, tmp_path / "after") == outside
    assert victim.read_text() == "not the archive's"
    run, rows = pulled(archive, tmp_path / "after")
    assert rows == legitimate, run.stdout + run.stderr


def compact_after_planting(crawled, tmp_path, run_id: str, replacing: list) -> tuple:
    """Plant a compaction of ``replacing`` (part, its replacing table, whether its ids are stated),
    then run ``compact``, which must exit 1: the planted objects, the keys held before it, what
    lies outside the archive, and the run."""
    archive = crawled.archive
    objects = planted_compaction(run_id, replacing)
    for key, body in objects.items():
        archive.put(key, body)
    keys = crawled.held()
    outside = snapshot(tmp_path, archive.source, tmp_path / "after")
    run = archive.run("compact", archive.uri)
    assert run.returncode == 1, run.stdout + run.stderr
    return objects, keys, outside, run


@pytest.mark.parametrize("crawled", ["local", "seaweedfs"], indirect=True)
def test_a_planted_compaction_deletes_and_hides_no_part_whose_rows_it_lacks(crawled, tmp_path):
    """The reviewer's attack in general form: one planted compaction manifest with a file in each
    partition, there with its true size and sha256, naming every part under ``supersedes``. Most
    files are the reviewer's, empty and stating no rows: readers ignore the supersedes, and
    compaction merges the empty file with the part, keeping its rows. The others state the
    part's rows and article ids (readers take their word) but hold no rows, a row short, a row
    twice and one missing, or a title, a text, a URL changed in one row. ``compact`` deletes no
    part whose rows it lacks and names each; nothing else is touched; once the planted manifest
    is removed, every legitimate row is pulled."""
    archive = crawled.archive
    _, legitimate = pulled(archive, tmp_path / "clean")
    parts = sorted(archive.manifest()["files"], key=lambda file: (-file["rows"], file["key"]))
    forged = [  # the forgeries on the parts of most rows (a row short of one row is no row)
        (part, forge(pq.read_table(archive.source / part["key"])), True)
        for part, forge in zip(parts, FORGERIES.values(), strict=False)
    ]
    replacing = forged + [(part, SCHEMA.empty_table(), False) for part in parts[len(forged) :]]
    run_id = "20991231T000000Z-planted"
    objects, keys, outside, run = compact_after_planting(crawled, tmp_path, run_id, replacing)
    planted = f"_manifests/{run_id}.json"
    for part, _, stating in replacing:
        named = (
            f"{part['key']}: kept, though {planted}"
            if stating
            else f"{planted}: supersedes {part['key']} ignored"
        )
        assert named in run.stdout, run.stdout
    merged = {part["key"] for part, _, stating in replacing if not stating}  # with the empty file
    merged |= {
        key
        for key in objects
        if part_of(key) and part_of(key).partition in {part_of(k).partition for k in merged}
    }
    assert keys - crawled.held() == {crawled.key(key) for key in merged}, run.stdout
    for part, _, stating in replacing:
        if stating:
            assert crawled.read(part["key"]) == (archive.source / part["key"]).read_bytes()
    assert snapshot(tmp_path, archive.source, tmp_path / "after") == outside
    archive.delete(planted)
    run, rows = pulled(archive, tmp_path / "after")
    assert rows == legitimate and len(rows) == 30, run.stdout + run.stderr


@pytest.mark.parametrize("crawled", ["local", "seaweedfs"], indirect=True)
def test_a_planted_compaction_of_other_column_types_deletes_nothing_and_reindex_reads_around_it(
    crawled, tmp_path
):
    """Review 2's attack in general form: a planted compaction whose files hold every part's rows,
    values equal once cast to the schema, but a column stored as another type (text or float64
    timestamps and confidences, wider integers, dictionary strings, nullable keys), stating the
    parts' rows and article ids. ``compact`` deletes no part and names each file; ``reindex``
    does not crash on them but names them; nothing outside the archive is touched; once the
    planted manifest is removed, every legitimate row is pulled."""
    archive = crawled.archive
    _, legitimate = pulled(archive, tmp_path / "clean")
    parts = sorted(archive.manifest()["files"], key=lambda file: file["key"])
    retypings = list(RETYPINGS.values())
    replacing = [
        (part, retypings[n % len(retypings)](pq.read_table(archive.source / part["key"])), True)
        for n, part in enumerate(parts)
    ]
    run_id = "20991231T000000Z-retyped"
    objects, keys, outside, run = compact_after_planting(crawled, tmp_path, run_id, replacing)
    planted_files = [key for key in objects if part_of(key)]
    for key in planted_files:
        assert f"_manifests/{run_id}.json: the files it replaces are kept: {key}" in run.stdout, run.stdout
    assert crawled.held() == keys, run.stdout
    for part in parts:
        assert crawled.read(part["key"]) == (archive.source / part["key"]).read_bytes()
    run = archive.run("reindex", archive.uri)
    assert "Traceback" not in run.stderr, run.stderr
    indexed = SCHEMA.field("fetched_at")  # the other retyped columns are none the index reads
    off_index = [
        key
        for key in planted_files
        if pq.read_schema(pa.BufferReader(objects[key])).field(indexed.name).type != indexed.type
    ]
    assert off_index
    for key in off_index:
        assert f"{key}: not a part of the archive's schema" in run.stdout, run.stdout + run.stderr
    assert snapshot(tmp_path, archive.source, tmp_path / "after") == outside
    archive.delete(manifest_key(run_id))
    run, rows = pulled(archive, tmp_path / "after")
    assert rows == legitimate and len(rows) == 30, run.stdout + run.stderr


@pytest.mark.parametrize("crawled", ["local", "seaweedfs"], indirect=True)
def test_parts_listed_again_by_other_manifests_are_read_once_and_compacted_once(crawled, tmp_path):
    """Review 2's attack in general form: the crawl's parts listed again, with their true size,
    sha256, rows and article ids, by a planted compaction that also names them under
    ``supersedes``, and by a planted crawl's manifest (as a forged spool publishes). Readers count
    each part once, in its own crawl's manifest (``ls`` 30 rows, ``pull`` 30), ``verify`` names
    each other listing, ``compact`` writes every row once and deletes nothing it does not hold."""
    archive = crawled.archive
    _, legitimate = pulled(archive, tmp_path / "clean")
    files = archive.manifest()["files"]
    keys = [file["key"] for file in files]
    compaction = plant(archive, "20991231T000000Z-evil01", compaction=True, files=files, supersedes=keys)
    crawl = plant(archive, "20261101T000000Z-abcdef", files=files)
    outside = snapshot(tmp_path, archive.source, tmp_path / "after", tmp_path / "pulled")
    listing = archive.run("ls", archive.uri, "--json")
    assert json.loads(listing.stdout)["rows"] == 30, listing.stdout + listing.stderr
    verified = archive.run("verify", archive.uri)
    for manifest, key in ((manifest, key) for manifest in (compaction, crawl) for key in keys):
        assert f"{manifest}: files entry {key} left out: listed again" in verified.stdout, verified.stdout
    run, rows = pulled(archive, tmp_path / "pulled")
    assert rows == legitimate and len(rows) == 30, run.stdout + run.stderr
    archive.run("compact", archive.uri)
    run, rows = pulled(archive, tmp_path / "after")
    assert rows == legitimate and len(rows) == 30, run.stdout + run.stderr
    assert snapshot(tmp_path, archive.source, tmp_path / "after", tmp_path / "pulled") == outside


@pytest.fixture(params=STORES)
def compacted(request, mirror_crawl, tmp_path) -> tuple[Placed, str, list[tuple]]:
    """The 30 hourly runs, compacted once: the archive, the compaction's manifest, the rows."""
    hourly = Placed.at(request.param, hourly_runs(mirror_crawl.archive, tmp_path / "hourly"), request)
    run = hourly.archive.run("compact", hourly.archive.uri)
    assert run.returncode == 0, run.stdout + run.stderr
    (manifest,) = re.findall(r"sealed by (_manifests/\S+\.json)", run.stdout)
    return hourly, manifest, pulled(hourly.archive, tmp_path / "before")[1]


def assert_refused(compaction: CrawlRun, manifest: str) -> None:
    assert compaction.returncode == 1, compaction.stdout + compaction.stderr
    assert f"PROBLEM {manifest}: unreadable manifest" in compaction.stdout, compaction.stdout
    assert "compaction not started, nothing deleted" in compaction.stdout, compaction.stdout


def test_a_manifest_that_does_not_parse_stops_compact_before_any_delete(compacted, tmp_path):
    """The compaction's manifest damaged (not JSON): read around, its files would look abandoned
    (and the parts they replaced are gone); compact deletes nothing and names it. Mended, the
    archive is whole."""
    placed_archive, manifest, before = compacted
    archive, body, keys = placed_archive.archive, placed_archive.read(manifest), placed_archive.held()
    archive.delete(manifest)
    archive.put(manifest, body[: len(body) // 2])
    assert_refused(archive.run("compact", archive.uri), manifest)
    assert placed_archive.held() == keys
    archive.delete(manifest)
    archive.put(manifest, body)
    assert pulled(archive, tmp_path / "after")[1] == before


@pytest.mark.parametrize("compacted", S3_STORES, indirect=True)
def test_a_manifest_the_store_fails_to_read_stops_compact_before_any_delete(compacted, tmp_path):
    """Every GET of the compaction's manifest answered 503 SlowDown, as a store under load does:
    compact deletes nothing, and once the store answers again the archive is whole."""
    placed_archive, manifest, before = compacted
    archive, keys = placed_archive.archive, placed_archive.held()

    def failing(method: str, path: str) -> str:
        return "503" if method == "GET" and unquote(path).split("?")[0].endswith(manifest) else "pass"

    with FaultProxy(archive.env["AWS_ENDPOINT_URL"], failing) as proxy:
        run = run_cli("compact", archive.uri, env={**archive.env, "AWS_ENDPOINT_URL": proxy.url})
    assert_refused(run, manifest)
    assert placed_archive.held() == keys
    assert pulled(archive, tmp_path / "after")[1] == before


def test_reextract_writes_nothing_outside_its_destination_whatever_a_row_names(mirror_crawl, tmp_path):
    """A planted file's rows name an outlet id that climbs out of the new archive's spool and a
    WARC by an absolute path (a copy of the real one is there, so the capture reads): the rows are
    left out and named, nothing outside the destination is written, every legitimate row is
    rebuilt."""
    source = tmp_path / "archives" / "source"
    shutil.copytree(mirror_crawl.archive, source, ignore=shutil.ignore_patterns(".*"))
    crawl = json.loads(next((source / "_manifests").glob("*.json")).read_text(encoding="utf-8"))
    warc = crawl["warcs"][0]
    planted_warc = tmp_path / "planted" / "x.warc.gz"
    planted_warc.parent.mkdir()
    shutil.copy(source / warc["key"], planted_warc)
    shutil.copy(source / warc["cdxj"]["key"], planted_warc.with_name("x.cdxj"))
    part = next(f["key"] for f in crawl["files"] if f["rows"] >= 2)
    rows = pq.read_table(source / part).slice(0, 2).to_pylist()
    rows[0]["outlet_id"] = "../../../../escaped"
    rows[1]["warc_file"] = str(planted_warc)
    hostile_key = f"{part_of(part).partition}/part-20990101T000000Z-planted-00001.parquet"
    pq.write_table(pa.Table.from_pylist(rows, schema=pq.read_schema(source / part)), source / hostile_key)
    data = (source / hostile_key).read_bytes()
    plant(
        Archive(str(source), {}, lambda k, d: (source / k).write_bytes(d), None, source),
        "20990101T000000Z-planted",
        files=[listed(hostile_key, data) | {"rows": 2}],
    )
    target = tmp_path / "again"
    outside = snapshot(tmp_path, target)
    run = run_cli("reextract", str(source), "--to", str(target))
    assert run.returncode == 1, run.stdout + run.stderr
    left_out = [line for line in problems(run) if hostile_key in line and "left out" in line]
    assert len(left_out) == 2 and "'../../../../escaped'" in left_out[0] and str(planted_warc) in left_out[1]
    assert snapshot(tmp_path, target) == outside
    rebuilt = row_keys(ds.dataset(target, format="parquet", partitioning="hive").to_table())
    original = row_keys(ds.dataset(mirror_crawl.archive, format="parquet", partitioning="hive").to_table())
    assert len(rebuilt) == 30 and {r[0] for r in rebuilt} == {r[0] for r in original}


MISTYPED = Path(__file__).resolve().parent / "fixtures" / "catalog" / "mistyped" / "_manifests"


@pytest.mark.parametrize("crawled", ["local"], indirect=True)
def test_manifests_with_fields_of_the_wrong_type_are_named_and_read_around(crawled, tmp_path):
    """Planted manifests whose fields have the wrong types (rows per language as strings, counts
    that are strings, floats, bools or negative, lists where objects go and the reverse): ``ls``,
    ``card``, ``verify`` and ``pull`` name each of them, crash on none, and show and pull every
    legitimate row."""
    archive = crawled.archive
    _, legitimate = pulled(archive, tmp_path / "clean")
    planted = []
    for path in sorted(MISTYPED.glob("*.json")):
        if "good" not in path.name:
            planted.append(f"_manifests/{path.name}")
            archive.put(planted[-1], path.read_bytes())
    runs = {
        "ls": archive.run("ls", archive.uri, "--json"),
        "card": archive.run("card", archive.uri, "--out", str(tmp_path / "card")),
        "verify": archive.run("verify", archive.uri),
    }
    runs["pull"], rows = pulled(archive, tmp_path / "dest")
    for command, run in runs.items():
        assert run.returncode == 1 and "Traceback" not in run.stderr, (command, run.stdout + run.stderr)
        named = run.stdout if command != "ls" else json.dumps(json.loads(run.stdout)["problems"])
        assert all(key in named for key in planted), (command, named)
    assert rows == legitimate and len(rows) == 30
    # the legitimate rows, and the 3 of the one well-typed entry planted (missing: verify names it)
    assert json.loads(runs["ls"].stdout)["rows"] == 30 + 3
    assert (tmp_path / "card" / "README.md").exists()
