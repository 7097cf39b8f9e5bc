"""The mirror crawl archived into real object stores (SeaweedFS and Ceph RGW), and the faults
an unattended run meets: store down, 503 SlowDown, dropped connections, timeouts, the server
stopping mid-run, and ``kill -9`` at each step. After the next run (or ``newsarchive flush``)
the bucket must hold every article exactly once, each file sealed by a manifest."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from crawler.cli.exits import ExitCode
from crawler.mirror.server import MirrorServer
from pipelines.archive.warc import OPEN_SUFFIX, read_capture, records
from tests.conftest import ARCHIVED as ARCHIVED_ARTICLES
from tests.conftest import MIRROR, REPO, requested_as, run_cli
from tests.faultproxy import FaultProxy
from tests.objectstores import ACCESS_KEY, SECRET_KEY, ObjectStore, SeaweedFS, wait_until

pytestmark = pytest.mark.slow  # every test crawls in a subprocess, many kill it or stop the store

ARCHIVED = sorted(a.url for a in ARCHIVED_ARTICLES)  # their URLs
PREFIX = "news"
# the only columns two crawls of one mirror differ in (a WARC is named after its crawl)
RUN_SPECIFIC = {"crawl_id", "fetched_at", "warc_file", "warc_offset", "warc_length"}


class Bucket:
    """A fresh bucket of a store, and what an archivist sees in it."""

    def __init__(self, store: ObjectStore, tmp_path: Path):
        self.store = store
        self.name = store.create_bucket()
        self.uri = f"s3://{self.name}/{PREFIX}"
        self.spool = tmp_path / "spool"

    def crawl(self, mirror_url: str, *extra: str, endpoint: str | None = None):
        return run_cli(
            "crawl",
            "--mirror-url",
            mirror_url,
            "--archive",
            self.uri,
            "--spool",
            str(self.spool),
            *extra,
            env=self.env(endpoint),
        )

    def flush(self, endpoint: str | None = None):
        return run_cli("flush", "--archive", self.uri, "--spool", str(self.spool), env=self.env(endpoint))

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        return self.store.env | ({"AWS_ENDPOINT_URL": endpoint} if endpoint else {})

    def object_keys(self) -> list[str]:
        pages = self.store.client().get_paginator("list_objects_v2").paginate(Bucket=self.name)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def read(self, key: str) -> bytes:
        return self.store.client().get_object(Bucket=self.name, Key=key)["Body"].read()

    def parts(self) -> list[str]:
        """The article files (not the index's)."""
        return [k for k in self.object_keys() if k.startswith(f"{PREFIX}/outlet=") and k.endswith(".parquet")]

    def manifests(self) -> list[dict]:
        return [json.loads(self.read(k)) for k in self.object_keys() if k.startswith(f"{PREFIX}/_manifests/")]

    def rows(self) -> pa.Table:
        parts = [pq.read_table(io.BytesIO(self.read(k))) for k in self.parts()]
        return pa.concat_tables(parts) if parts else pa.table({"url": pa.array([], pa.string())})

    def assert_complete(self) -> None:
        """Every mirrored article once; every file in exactly one manifest; nothing pending."""
        urls = self.rows().column("url").to_pylist()
        assert sorted(urls) == ARCHIVED, f"{len(urls)} rows for {len(ARCHIVED)} articles"
        sealed = [f["key"] for m in self.manifests() for f in m["files"]]
        files = [k.removeprefix(f"{PREFIX}/") for k in self.parts()]
        assert sorted(sealed) == files
        keys = self.object_keys()
        merged = {  # what the bases hold: a run's delta is there, or merged into one
            key
            for base in keys
            if base.startswith(f"{PREFIX}/_index/base-")
            for key in json.loads(
                pq.read_schema(io.BytesIO(self.read(base))).metadata[b"newsarchive.index.merged"]
            )
        }
        assert all(f"{PREFIX}/{m['index']}" in keys or m["index"] in merged for m in self.manifests())
        assert not list(self.spool.rglob("*.parquet"))
        self.assert_captured()

    def assert_captured(self) -> None:
        """Every WARC whole (warcio reads each record, digests verified) and in a manifest, with
        its index; every row's range read is the response to its URL; no WARC left in the spool."""
        listed = set()
        for manifest in self.manifests():
            for warc in manifest["warcs"]:
                data = self.read(f"{PREFIX}/{warc['key']}")
                assert hashlib.sha256(data).hexdigest() == warc["sha256"]
                assert sum(1 for _ in records(io.BytesIO(data))) == warc["records"]
                listed |= {f"{PREFIX}/{warc['key']}", f"{PREFIX}/{warc['cdxj']['key']}"}
        assert listed == {k for k in self.object_keys() if k.startswith(f"{PREFIX}/_warc/")}
        client = self.store.client()
        for row in self.rows().to_pylist():
            end = row["warc_offset"] + row["warc_length"] - 1
            data = client.get_object(
                Bucket=self.name,
                Key=f"{PREFIX}/{row['warc_file']}",
                Range=f"bytes={row['warc_offset']}-{end}",
            )["Body"].read()
            assert read_capture(data).rec_headers.get_header("WARC-Target-URI") == row["url"]
        assert not [p for p in self.spool.rglob("*") if "_warc" in p.parts and p.is_file()]


def hold_once(url: str):
    """A mirror rule: hold the first request for ``url``; its retry goes through."""
    target, held = url.split("://", 1)[1], []

    def rule(method: str, path: str) -> str:
        if path.endswith(target) and not held:
            held.append(path)
            return "hold"
        return "pass"

    return rule


@pytest.fixture
def bucket(object_store, tmp_path) -> Bucket:
    return Bucket(object_store, tmp_path)


def test_the_crawl_lands_in_the_store_as_in_a_local_folder(bucket, mirror_server, mirror_crawl):
    run = bucket.crawl(mirror_server.url)
    assert run.returncode == 0, run.stdout + run.stderr
    bucket.assert_complete()
    (manifest,) = bucket.manifests()
    (warc,) = manifest["warcs"]
    warc_bytes = warc["bytes"] + warc["cdxj"]["bytes"]
    assert (
        f"published: 14 file(s), {manifest['bytes']} bytes, 1 WARC(s) with their indexes, "
        f"{warc_bytes} bytes, 1 manifest(s) to {bucket.uri}"
    ) in run.stdout
    assert manifest["rows"] == len(ARCHIVED) and manifest["interrupted"] is False
    assert manifest["finished_at"] >= manifest["started_at"]

    # an archivist reads the bucket with pyarrow, Hive partitions and all
    s3 = pafs.S3FileSystem(
        access_key=ACCESS_KEY,
        secret_key=SECRET_KEY,
        region="us-east-1",
        endpoint_override=bucket.store.endpoint,
    )
    remote = ds.dataset(
        f"{bucket.name}/{PREFIX}", filesystem=s3, format="parquet", partitioning="hive"
    ).to_table()
    local = ds.dataset(mirror_crawl.archive, format="parquet", partitioning="hive").to_table()
    assert remote.schema == local.schema

    def comparable(table: pa.Table) -> list[dict]:
        rows = table.drop_columns(list(RUN_SPECIFIC)).to_pylist()
        return sorted(rows, key=lambda r: r["article_id"])

    assert comparable(remote) == comparable(local)

    again = bucket.crawl(mirror_server.url)
    assert again.returncode == 0 and "published: 0 file(s)" in again.stdout
    assert len(bucket.manifests()) == 1  # a run that found nothing new writes no manifest
    bucket.assert_complete()


def test_no_secret_in_any_output(bucket, mirror_server):
    """The secret key is planted in the environment; nothing we write may show it."""
    run = bucket.crawl(mirror_server.url, "--log-level", "DEBUG")
    wrong = run_cli(
        "crawl",
        "--mirror-url",
        mirror_server.url,
        "--archive",
        bucket.uri,
        "--spool",
        str(bucket.spool),
        "--log-level",
        "DEBUG",
        env=bucket.env() | {"AWS_SECRET_ACCESS_KEY": "WRONG" + SECRET_KEY},
    )
    assert run.returncode == 0 and wrong.returncode == 3  # parts wait in the spool
    assert "SignatureDoesNotMatch" in wrong.stdout + wrong.stderr
    flushed = bucket.flush()
    assert flushed.returncode == 0 and f"{len(ARCHIVED)} row(s) were in the archive already" in flushed.stdout
    bucket.assert_complete()
    written = b"".join(bucket.read(k) for k in bucket.object_keys())
    spooled = b"".join(p.read_bytes() for p in bucket.spool.rglob("*") if p.is_file())
    for output in (run.stdout, run.stderr, wrong.stdout, wrong.stderr, flushed.stdout, flushed.stderr):
        assert SECRET_KEY not in output
    assert SECRET_KEY.encode() not in written + spooled


def test_a_second_run_on_a_bucket_fetches_no_known_article(bucket, tmp_path):
    """No state but the bucket: a new spool, and the second run asks for no article it holds."""
    with MirrorServer() as mirror:
        first = bucket.crawl(mirror.url)
        assert first.returncode == 0, first.stdout + first.stderr
        asked = len(mirror.requested)
        bucket.spool = tmp_path / "another-machine-spool"
        again = bucket.crawl(mirror.url, "--summary-json", str(tmp_path / "run.json"))
        assert again.returncode == 0, again.stdout + again.stderr
        requested = set(mirror.requested[asked:])
    archived = {requested_as(url) for url in ARCHIVED}
    assert requested and not requested & archived
    assert json.loads((tmp_path / "run.json").read_text())["totals"]["archived"] == 0
    bucket.assert_complete()
    assert len(bucket.manifests()) == 1  # a run that found nothing new writes no manifest


# -- faults: each run fails to publish, the next run or `flush` completes the archive ----------


def test_store_down_for_the_whole_run(bucket, mirror_server):
    """Connection refused from the start: the crawl goes on, everything waits in the spool."""
    first = bucket.crawl(mirror_server.url)
    assert first.returncode == 0
    down = bucket.crawl(mirror_server.url, endpoint="http://127.0.0.1:9")
    assert down.returncode == 3
    assert "PROBLEM" in down.stdout and "EndpointConnectionError" in down.stdout
    assert "archive not readable, deduplicating against the spool only" in down.stderr
    assert "newsarchive flush" in down.stdout
    # unable to read the bucket, dedup knew nothing: every article was spooled again
    assert len(list(bucket.spool.rglob("*.parquet"))) == 14
    flushed = bucket.flush()
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert f"{len(ARCHIVED)} row(s) were in the archive already" in flushed.stdout
    bucket.assert_complete()


@pytest.mark.parametrize("failure", ["503", "drop"])
def test_writes_failing_mid_run(bucket, mirror_server, failure):
    """The store reads fine but every write fails (SlowDown, or the connection drops)."""
    with FaultProxy(
        bucket.store.endpoint, lambda method, path: failure if method in ("PUT", "POST") else "pass"
    ) as proxy:
        run = bucket.crawl(mirror_server.url, endpoint=proxy.url)
    assert run.returncode == 3 and "PROBLEM 14 part file(s) of 1 crawl(s) wait in" in run.stdout
    assert ("SlowDown" if failure == "503" else "ConnectionClosedError") in run.stdout
    assert not bucket.parts()
    again = bucket.crawl(mirror_server.url)  # the next cron run publishes the backlog first
    assert again.returncode == 0, again.stdout + again.stderr
    # what the spool held counts as archived: no article is fetched again (the discovery pages
    # may even answer 304: the failed run had read them all), no row written twice
    total = re.search(r"^total\s+(\d+)\s+(\d+)\s+(\d+)\s", again.stdout, re.MULTILINE)
    _, pages, archived = map(int, total.groups())
    assert archived == 0 and pages <= sum(a.expect == "dropped" for a in MIRROR.articles), again.stdout
    bucket.assert_complete()


def test_writes_timing_out(bucket, mirror_server):
    hang_writes = lambda method, path: "hold" if method == "PUT" else "pass"  # noqa: E731
    with FaultProxy(bucket.store.endpoint, hang_writes) as proxy:
        run = bucket.crawl(mirror_server.url, "-s", "ARCHIVE_S3_READ_TIMEOUT=1", endpoint=proxy.url)
    assert run.returncode == 3 and "ReadTimeoutError" in run.stdout
    assert run.stderr.count(" not kept (") == 1  # the templates: not tried again after a failure
    assert bucket.flush().returncode == 0
    bucket.assert_complete()


def test_store_stopped_mid_run(tmp_path, mirror_server):
    """A real server stops while the crawl runs, and comes back later."""
    store = SeaweedFS(tmp_path / "seaweedfs")
    try:
        bucket = Bucket(store, tmp_path)
        with FaultProxy(mirror_server.url, hold_once(ARCHIVED[-1])) as mirror:
            crawl = _start_crawl(bucket, mirror.url)
            assert mirror.held.wait(60)
            store.stop()  # while one page is still being fetched
            mirror.release.set()
            out, _ = crawl.communicate(timeout=300)
        assert crawl.returncode == 3 and "wait in" in out
        assert bucket.flush().returncode == ExitCode.BUSY  # still down: no lease, not started, still pending
        store.start()
        assert bucket.flush().returncode == 0
        bucket.assert_complete()
    finally:
        store.stop()


def _start_crawl(bucket: Bucket, mirror_url: str, *extra: str, endpoint: str | None = None):
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "crawler",
            "crawl",
            "--mirror-url",
            mirror_url,
            "--archive",
            bucket.uri,
            "--spool",
            str(bucket.spool),
            *extra,
        ],
        cwd=REPO,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env={**os.environ, **bucket.env(endpoint)},
    )


# -- kill -9 at every step ---------------------------------------------------------------


def _kill(process: subprocess.Popen) -> None:
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)


def test_kill_during_the_crawl(bucket, tmp_path):
    """Parts go up while the crawl runs; after a kill the next run seals them, none twice, and
    crawls the rest again."""
    with MirrorServer() as server, FaultProxy(server.url, hold_once(ARCHIVED[-1])) as mirror:
        settings = ("-s", "ARCHIVE_ROWS_PER_FILE=1")
        crawl = _start_crawl(bucket, mirror.url, *settings)
        assert mirror.held.wait(60)
        wait_until(lambda: len(bucket.parts()) >= 5, "parts published during the crawl")
        _kill(crawl)
    published = bucket.parts()
    assert not bucket.manifests()
    (open_warc,) = bucket.spool.rglob(f"*{OPEN_SUFFIX}")  # the WARC the crawl was writing
    written = open_warc.read_bytes()
    with open_warc.open("ab") as handle:  # as if killed in the middle of writing a record
        handle.write(gzip.compress(b"WARC/1.0\r\nWARC-Type: response\r\n" + os.urandom(4000))[:2000])
    with MirrorServer() as server:
        again = bucket.crawl(server.url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "in the archive already" not in again.stdout
    bucket.assert_complete()
    (interrupted,) = [m for m in bucket.manifests() if m["interrupted"]]
    assert interrupted["finished_at"] is None
    assert {f"{PREFIX}/{f['key']}" for f in interrupted["files"]} >= set(published)
    (warc,) = interrupted["warcs"]  # cut after its last whole record: the half one is left out
    kept = bucket.read(f"{PREFIX}/{warc['key']}")
    assert written.startswith(kept) and warc["records"] > len(published)


@pytest.mark.parametrize("moment", ["upload", "manifest"])
def test_kill_while_publishing(bucket, mirror_server, moment):
    """Killed while the third part is uploading, or just before the manifest is written."""
    puts: list[str] = []

    def rule(method: str, path: str) -> str:
        if method != "PUT":
            return "pass"
        not_parts = ("_lock", "_index", "_manifests", "_warc", "_templates")
        if not any(f"/{folder}/" in path for folder in not_parts):  # a part
            puts.append(path)
        if moment == "upload" and len(puts) == 3 and puts[-1] == path:
            return "hold"
        return "hold" if moment == "manifest" and "/_manifests/" in path else "pass"

    with FaultProxy(bucket.store.endpoint, rule) as proxy:
        crawl = _start_crawl(bucket, mirror_server.url, endpoint=proxy.url)
        assert proxy.held.wait(120)
        _kill(crawl)
    parts = bucket.parts()
    assert len(parts) == (2 if moment == "upload" else 14) and not bucket.manifests()
    again = bucket.crawl(mirror_server.url)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "in the archive already" not in again.stdout
    bucket.assert_complete()
    # the killed crawl's, sealed by the next run, which found nothing new and so seals nothing
    assert [m["interrupted"] for m in bucket.manifests()] == [False]
