"""One run at a time per archive: a file lock on a folder, a lease in a bucket."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from pipelines.archive.keys import LEASES, lease_key
from pipelines.archive.lock import (
    ACCEPT_ENV,
    PROBE_GENERATION,
    ArchiveBusy,
    Lease,
    LeaseLost,
    LockRefused,
    LockUnavailable,
    archive_lock,
    ensure_held,
    holder,
)
from pipelines.archive.publish import publish_spool
from pipelines.archive.spool import Spool
from pipelines.archive.storage import KeyTaken, LocalStore, S3Store
from pipelines.tools.compact import compact
from pipelines.tools.reindex import reindex
from tests.archives import hourly_runs
from tests.faultproxy import FaultProxy
from tests.objectstores import ACCESS_KEY, SECRET_KEY, ObjectStore

KEY = "outlet=xx/published=2024-03/part-c1-00001.parquet"


@pytest.fixture
def bucket(object_store, monkeypatch):
    for name, value in object_store.env.items():
        monkeypatch.setenv(name, value)
    return S3Store(f"s3://{object_store.create_bucket()}/archive")


def test_a_folder_is_held_by_one_run(tmp_path):
    store = LocalStore(tmp_path / "archive")
    with (
        archive_lock(store, "run-1"),
        pytest.raises(ArchiveBusy, match=r"run run-1 on .* since"),
        archive_lock(store, "run-2"),
    ):
        pass
    with archive_lock(store, "run-2"):  # released
        assert list(store.object_keys()) == []  # the lock file is no archive object


def test_a_bucket_is_held_by_one_run(bucket):
    with (
        archive_lock(bucket, "run-1"),
        pytest.raises(ArchiveBusy, match=r"run run-1 .* lease until"),
        archive_lock(bucket, "run-2"),
    ):
        pass
    with archive_lock(bucket, "run-2"):  # released
        pass


def test_an_expired_lease_is_taken_over_and_a_late_renewal_refused(bucket, tmp_path):
    dead = Lease(bucket, 900)
    dead.acquire(holder("killed"), wait=False)
    dead._stop.set()  # its process was killed: no more renewals
    generation, lease = dead.newest()
    source = tmp_path / "expired.json"
    source.write_text(
        json.dumps(lease | {"expires_at": (datetime.now(UTC) - timedelta(seconds=1)).isoformat()}),
        encoding="utf-8",
    )
    bucket.publish(source, f"_lock/lease-{generation + 1:012d}.json")  # as if it had expired
    with archive_lock(bucket, "next"):
        assert Lease(bucket, 900).newest()[1]["run"] == "next"
        assert dead.renew() is False and dead.lost  # the old holder, back: it knows it lost
    with pytest.raises(KeyTaken):  # two runs racing for one generation: the store picks one
        dead._write(Lease(bucket, 900).newest()[0], holder("late"), 900)


def _held_together_and_others_kept_out(store) -> None:
    with (
        archive_lock(store, "worker-1", shared="redis crawl a"),
        archive_lock(store, "worker-2", shared="redis crawl a"),
    ):
        with pytest.raises(ArchiveBusy), archive_lock(store, "alone"):
            pass
        with pytest.raises(ArchiveBusy), archive_lock(store, "worker-3", shared="redis crawl b"):
            pass


def test_the_workers_of_one_shared_crawl_hold_a_folder_together_and_keep_others_out(tmp_path):
    store = LocalStore(tmp_path / "archive")
    _held_together_and_others_kept_out(store)
    with archive_lock(store, "alone"):  # a folder's shared lock goes with its last holder
        pass


def test_the_workers_of_one_shared_crawl_hold_a_bucket_together_and_keep_others_out(bucket):
    _held_together_and_others_kept_out(bucket)  # (the group's lease expires after the last)


def test_group_members_renewing_the_same_lease_both_keep_it(bucket):
    first, second = Lease(bucket, 900), Lease(bucket, 900)
    me = holder("w1") | {"run": "redis crawl a", "shared": True}
    first.acquire(me, wait=False)
    second.acquire(holder("w2") | {"run": "redis crawl a", "shared": True}, wait=False)
    assert first.renew() and second.renew() and first.renew()  # each adopts the other's generation
    assert not first.lost and not second.lost
    first.release()
    second.release()


# -- a lock that cannot be trusted is refused; a store error never means "run without it" ------


def plant(kind: str, lock: Path, outside: Path) -> None:
    """What someone with write access to the archive folder leaves at the lock's name."""
    if kind == "symlink":
        lock.symlink_to(outside)
    elif kind == "relative symlink":
        lock.symlink_to(os.path.relpath(outside, lock.parent))
    elif kind == "hard link":
        os.link(outside, lock)
    elif kind == "fifo":
        os.mkfifo(lock)
    elif kind == "folder":
        lock.mkdir()
    else:  # another file, planted at the lock's name: its bytes are no note of ours
        lock.write_bytes(outside.read_bytes())


PLANTED = ["symlink", "relative symlink", "hard link", "fifo", "folder", "foreign file"]


@pytest.mark.parametrize("kind", PLANTED)
def test_a_lock_file_that_is_no_lock_file_of_ours_is_refused_and_left_as_it_was(tmp_path, kind):
    archive = tmp_path / "archive"
    archive.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_bytes(b"the operator's data, not a lock\n" * 100)
    lock = archive / ".newsarchive.lock"
    plant(kind, lock, outside)
    before = (lock.lstat().st_mode, lock.lstat().st_size, outside.read_bytes())
    with (
        pytest.raises(LockRefused, match=r"\.newsarchive\.lock .*; not touched, not started"),
        archive_lock(LocalStore(archive), "run-1"),
    ):
        pass
    assert (lock.lstat().st_mode, lock.lstat().st_size, outside.read_bytes()) == before


def test_a_lock_file_a_killed_run_left_is_taken_over(tmp_path):
    """Its note is ours: the next run takes the lock (the kernel dropped the flock)."""
    archive = tmp_path / "archive"
    archive.mkdir()
    (archive / ".newsarchive.lock").write_text(json.dumps(holder("killed")), encoding="utf-8")
    with archive_lock(LocalStore(archive), "next"):
        assert json.loads((archive / ".newsarchive.lock").read_text())["run"] == "next"


def _unconditional_store(object_store: ObjectStore, monkeypatch) -> tuple[FaultProxy, S3Store]:
    """The store behind a proxy that strips If-None-Match from every write: a store that
    ignores conditional writes, as some S3-compatible stores do."""
    proxy = FaultProxy(
        object_store.endpoint,
        lambda method, path: "unconditional" if method in ("PUT", "POST") else "pass",
        credentials=(ACCESS_KEY, SECRET_KEY, "us-east-1"),
    )
    for name, value in object_store.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", proxy.url)
    return proxy, S3Store(f"s3://{object_store.create_bucket()}/archive")


def test_a_store_that_ignores_if_none_match_is_refused_unless_the_operator_accepts_it(
    object_store, monkeypatch
):
    proxy, store = _unconditional_store(object_store, monkeypatch)
    with proxy:
        with (
            pytest.raises(LockRefused, match=f"does not honour If-None-Match.*{ACCEPT_ENV}=1"),
            archive_lock(store, "run-1"),
        ):
            pass
        assert list(store.object_keys("_lock/")) == [lease_key(PROBE_GENERATION)]  # no lease
        with archive_lock(store, "run-1", accept_unconditional_writes=True):
            assert Lease(store, 900).newest()[1]["run"] == "run-1"
        probes = [p for m, p, _ in proxy.seen if m == "PUT" and lease_key(PROBE_GENERATION) in p]
        assert len(probes) == 2  # asked once: the verdict is kept for the store


def test_a_store_that_honours_if_none_match_passes_the_probe(bucket):
    assert bucket.refuses_second_create(lease_key(PROBE_GENERATION), b"{}")
    with archive_lock(bucket, "run-1"):
        pass


def test_a_store_error_while_locking_is_no_licence_to_run(object_store, monkeypatch, tmp_path):
    """Store down: a run that needs the lock does not start; a crawl runs without it, but
    publishes nothing (what it spools waits for the next run)."""
    for name, value in object_store.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens there
    store = S3Store(f"s3://{object_store.create_bucket()}/archive")
    with (
        pytest.raises(LockUnavailable, match=r"lock could not be taken: .*EndpointConnectionError"),
        archive_lock(store, "compact"),
    ):
        pass
    with archive_lock(store, "crawl", spool_only_without=True) as lock:
        assert not lock.held()
        with pytest.raises(LeaseLost, match="lock was not taken at the start"):
            ensure_held(S3Store(store.uri))  # the crawl's stages have store objects of their own
    ensure_held(store)  # released: a library caller that takes no lock is not stopped


def stolen(bucket: S3Store, lease: Lease, tmp_path: Path) -> None:
    """``lease`` lost: it expired, another run took the archive and is gone."""
    source = tmp_path / "thief.json"
    source.write_text(json.dumps(holder("thief") | {"expires_at": datetime.now(UTC).isoformat()}))
    bucket.publish(source, lease_key(lease.generation + 1))
    assert lease.renew() is False and not lease.held()


def test_a_lost_lease_stops_publication_and_the_spool_keeps_every_row(bucket, tmp_path):
    spool = Spool(tmp_path / "spool")
    crawl = spool.open_crawl("c1", ["xx"])
    crawl.write_part(KEY, pa.table({"article_id": ["a", "b"], "text": ["A", "B"]}))
    crawl.release()
    with archive_lock(bucket, "run-1") as lease:
        stolen(bucket, lease, tmp_path)
        report = publish_spool(S3Store(bucket.uri), spool)
        assert "lost the archive's lease" in report.errors[0]
        assert report.pending_crawls == ["c1"] and report.files == 0
    assert not list(bucket.object_keys("outlet="))
    with archive_lock(bucket, "run-2"):  # the next run publishes what the spool kept
        report = publish_spool(bucket, spool)
    assert (report.files, report.manifests, report.pending_crawls) == (1, ["_manifests/c1.json"], [])
    assert json.loads(bucket.read("_manifests/c1.json"))["files"][0]["article_ids"] == ["a", "b"]


def test_who_holds_the_archive_is_told_without_control_characters(tmp_path):
    """The note is read from the archive: a planted one may hold terminal escapes or lines."""
    store = LocalStore(tmp_path / "archive")
    with (
        archive_lock(store, "evil\x1b[2J\nPROBLEM none, all is well"),
        pytest.raises(ArchiveBusy) as busy,
        archive_lock(store, "run-2"),
    ):
        pass
    assert "\x1b" not in str(busy.value) and "\n" not in str(busy.value)
    assert str(busy.value).startswith(r"run evil\x1b[2J\nPROBLEM none")


@pytest.mark.parametrize("command", [compact, reindex])
@pytest.mark.slow
def test_a_lost_lease_stops_compact_and_reindex_before_they_publish_or_delete(
    bucket, mirror_crawl, tmp_path, command
):
    """The archive as 30 hourly runs left it: work for both. Holding the lease no more, neither
    publishes nor deletes anything (the next run does it all)."""
    archive = hourly_runs(mirror_crawl.archive, tmp_path / "hourly")
    for path in sorted(p for p in archive.rglob("*") if p.is_file() and not p.name.startswith(".")):
        bucket.publish(path, path.relative_to(archive).as_posix())
    before = {key: bucket.read(key) for key in bucket.object_keys() if not key.startswith(LEASES)}
    (tmp_path / "work").mkdir()
    with archive_lock(bucket, "run-1") as lease:
        stolen(bucket, lease, tmp_path)
        with pytest.raises(LeaseLost):
            command(S3Store(bucket.uri), tmp_path / "work", "20990101T000000Z-run-1")
    assert {key: bucket.read(key) for key in bucket.object_keys() if not key.startswith(LEASES)} == before
