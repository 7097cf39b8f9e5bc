"""Issue 31, classes 4 (index part), 6 and 7, through the CLI: derived data is rebuilt, not
trusted, and archive content is read in bounded memory.

A damaged index file, template or manifest is reported by the crawl (a PROBLEM line naming it,
exit 1), read around (every row still archived, none twice) and named by ``verify``;
``reindex`` rebuilds the index from the parts and ``verify`` is clean again. An index base naming
files outside the index deletes nothing. A gzip bomb in a WARC, and an index file that claims or
expands to far more than its size, cost no more memory than the crawl's own (an address-space
limit of 1 GiB, which a crawl of the mirror stays well under, makes an unbounded read fail).
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from benchmarks.bench_hostile import LATER, index_bombs, spool_bomb_warc
from crawler.mirror.server import MirrorServer
from pipelines.archive.keys import INDEX, MANIFESTS, TEMPLATE_FOLDER, is_key
from pipelines.archive.schema import INDEX_SCHEMA
from tests.conftest import CrawlRun, run_cli
from tests.objectstores import ObjectStore
from tests.test_incremental import OUTLET, mirror

__all__ = ["mirror"]  # the fixture

pytestmark = pytest.mark.slow  # crawls and commands in subprocesses, each test several

ADDRESS_SPACE = 1 << 30


class Target:
    """An archive the test damages behind newsarchive's back: a folder, or a bucket prefix."""

    def __init__(self, uri: str, spool: Path, env: dict[str, str] | None = None):
        self.uri, self.spool, self.env = uri, spool, env or {}

    def run(self, *args: str, limit: int | None = None) -> CrawlRun:
        """``newsarchive ARGS`` on this archive; ``limit``: an address-space cap in bytes."""
        command = [args[0], "--archive", self.uri, *args[1:]] if args[0] == "crawl" else [*args, self.uri]
        if args[0] == "crawl":
            command += ["--spool", str(self.spool)]
        return run_cli(*command, env=self.env, limit=limit)

    def crawl(self, mirror: MirrorServer, *extra: str, limit: int | None = None) -> CrawlRun:
        return self.run("crawl", "--mirror-url", mirror.url, "--outlet", OUTLET, *extra, limit=limit)

    def listing(self) -> list[str]:
        raise NotImplementedError

    def get(self, key: str) -> bytes:
        raise NotImplementedError

    def put(self, key: str, data: bytes) -> None:
        raise NotImplementedError

    def delete(self, key: str) -> None:
        raise NotImplementedError

    def rows(self) -> list[tuple[str, int]]:
        """(article id, version) of every row the archive's parts hold, duplicates kept."""
        found = []
        for key in self.listing():
            if is_key(key, "part"):
                table = pq.read_table(io.BytesIO(self.get(key)), columns=["article_id", "version"])
                found += [(row["article_id"], row["version"]) for row in table.to_pylist()]
        return sorted(found)

    def one(self, prefix: str) -> str:
        (key,) = [k for k in self.listing() if k.startswith(prefix)]
        return key


class Folder(Target):
    def __init__(self, root: Path):
        super().__init__(str(root), root / ".spool")
        self.root = root

    def listing(self) -> list[str]:
        return sorted(
            p.relative_to(self.root).as_posix()
            for p in self.root.rglob("*")
            if p.is_file() and not p.relative_to(self.root).as_posix().startswith(".")
        )

    def get(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def put(self, key: str, data: bytes) -> None:
        (self.root / key).parent.mkdir(parents=True, exist_ok=True)
        (self.root / key).write_bytes(data)

    def delete(self, key: str) -> None:
        (self.root / key).unlink()


class Bucket(Target):
    def __init__(self, server: ObjectStore, spool: Path):
        self.client, self.bucket = server.client(), server.create_bucket()
        super().__init__(f"s3://{self.bucket}/archive", spool, server.env)

    def listing(self) -> list[str]:
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix="archive/")
        return sorted(o["Key"].removeprefix("archive/") for page in pages for o in page.get("Contents", []))

    def get(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=f"archive/{key}")["Body"].read()

    def put(self, key: str, data: bytes) -> None:
        self.client.put_object(Bucket=self.bucket, Key=f"archive/{key}", Body=data)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=f"archive/{key}")


@pytest.fixture(params=["folder", "seaweedfs"])
def target(request, tmp_path) -> Target:
    if request.param == "folder":
        return Folder(tmp_path / "archive")
    return Bucket(request.getfixturevalue("seaweedfs"), tmp_path / "spool")


def index_file(entries: int, url: str = "https://x.cn/", merged: list[str] | None = None) -> bytes:
    """An index file of ``entries`` entries all naming ``url``: the URL is in the file once, in
    its column's dictionary, as a writer puts a repeated value (nor is it repeated here)."""
    keys = [f"{n:064x}" for n in range(entries)]
    columns = {
        "url_key": pa.array(keys),
        "url": pa.DictionaryArray.from_arrays(pa.array([0] * entries, pa.int32()), pa.array([url])),
        "article_id": pa.array(keys),
        "version": pa.array([1] * entries, pa.int32()),
        "file": pa.array(["f"] * entries),
    }
    schema = pa.schema(
        [f.with_type(pa.dictionary(pa.int32(), f.type)) if f.name == "url" else f for f in INDEX_SCHEMA]
    )
    table = pa.table([columns.get(f.name, pa.nulls(entries, f.type)) for f in schema], schema=schema)
    if merged is not None:
        table = table.replace_schema_metadata({b"newsarchive.index.merged": json.dumps(merged)})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd")
    return sink.getvalue().to_pybytes()


def problems(run: CrawlRun) -> list[str]:
    return [line for line in run.stdout.splitlines() if line.startswith("PROBLEM ")]


def assert_read_around(run: CrawlRun, named: list[str]) -> None:
    """Exit 1, each damaged object on a PROBLEM line, no traceback and no false alarm."""
    assert run.returncode == 1, run.stdout + run.stderr
    for key in named:
        assert any(key in line for line in problems(run)), (key, run.stdout)
    assert "Traceback" not in run.stderr and "could not start" not in run.stderr, run.stderr
    assert "no article page found" not in run.stdout


def test_damaged_index_files_and_templates_are_read_around_named_and_rebuilt(target, mirror):
    assert target.crawl(mirror).returncode == 0
    rows = target.rows()
    assert len(rows) == 5 == len(set(rows))
    delta, template = target.one(f"{INDEX}/delta-"), target.one(f"{TEMPLATE_FOLDER}/")
    target.put(delta, target.get(delta)[: len(target.get(delta)) // 2])  # cut short
    target.put(template, json.dumps({"pages": 5, "seen_on": 7}).encode())  # a field of another type
    planted = index_bombs(1 << 28)
    for key, data in planted.items():
        target.put(key, data)
    damaged = [delta, template, *planted]

    again = target.crawl(mirror, "--refetch-after", "0", limit=ADDRESS_SPACE)  # every page fetched again
    assert_read_around(again, damaged)
    assert target.rows() == rows  # every row there, none twice
    template = target.one(f"{TEMPLATE_FOLDER}/")  # the crawl learned it again: damaged once more
    target.put(template, b'{"pages": 5, "seen_on": {"zz": [1]}}')
    damaged = [delta, template, *planted]

    checked = target.run("verify")
    assert checked.returncode == 1
    for key in damaged:
        assert key in checked.stdout, (key, checked.stdout)

    rebuilt = target.run("reindex")
    assert rebuilt.returncode == 0, rebuilt.stdout + rebuilt.stderr
    assert not any(key in target.listing() for key in damaged)
    assert target.run("verify").returncode == 0
    after = target.crawl(mirror, "--refetch-after", "0")
    assert after.returncode == 0, after.stdout + after.stderr
    assert target.rows() == rows


def test_a_manifest_field_of_another_type_is_read_around_and_named(target, mirror):
    assert target.crawl(mirror).returncode == 0
    rows = target.rows()
    target.delete(target.one(f"{INDEX}/"))  # an archive older than the index: its manifests are read
    manifest = target.one(f"{MANIFESTS}/")
    for wrong in (5, "5", [5], {"5": 5}, None):
        fields = json.loads(target.get(manifest))
        fields["files"][0]["article_ids"] = wrong
        target.put(manifest, json.dumps(fields).encode())
        again = target.crawl(mirror, "--refetch-after", "0")
        assert_read_around(again, [manifest])
        assert target.rows() == rows
        checked = target.run("verify")
        assert checked.returncode == 1 and manifest in checked.stdout
        for key in [k for k in target.listing() if k.startswith(f"{INDEX}/")]:
            target.delete(key)  # the next crawl reads the manifest again


def test_an_index_base_naming_other_files_deletes_nothing(tmp_path, mirror):
    target = Folder(tmp_path / "archive")
    assert target.crawl(mirror).returncode == 0
    victim = tmp_path / "victim.txt"
    victim.write_text("not the archive's")
    kept = {key: target.get(key) for key in target.listing()}
    named = [
        "../victim.txt",
        f"{INDEX}/../../victim.txt",
        str(victim),
        "_index/..%2f..%2fvictim.txt",
        "_index\\..\\..\\victim.txt",
        *[k for k in kept if not k.startswith(f"{INDEX}/")],  # parts, WARCs, manifests, templates
    ]
    base = f"{INDEX}/base-{LATER}.parquet"
    target.put(base, index_file(1, merged=named))
    for _ in range(2):  # the second crawl compacts nothing either
        run = target.crawl(mirror, "--refetch-after", "0")
        assert_read_around(run, [base])
    assert target.run("reindex").returncode == 0
    assert victim.read_text() == "not the archive's"
    # each crawl replaces the outlet's template with its own; everything else stays
    assert all(key in target.listing() for key in kept if not key.startswith((INDEX, TEMPLATE_FOLDER)))
    assert base not in target.listing()


def test_a_gzip_bomb_in_a_spooled_warc_is_published_and_verified_in_bounded_memory(tmp_path, mirror):
    target = Folder(tmp_path / "archive")
    assert target.crawl(mirror).returncode == 0
    spool_bomb_warc(target.spool, "20261201T000000Z-b0b0b0", "http://kjt.shanxi.gov.cn/bomb.html", 1 << 30)

    run = target.crawl(mirror, limit=ADDRESS_SPACE)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "_warc/20261201T000000Z-b0b0b0-00001.warc.gz" in target.listing()  # checked, published whole
    verified = target.run("verify", limit=ADDRESS_SPACE)
    assert verified.returncode == 0, verified.stdout + verified.stderr
