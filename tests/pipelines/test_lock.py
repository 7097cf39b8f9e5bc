"""One run at a time per archive: a file lock on a folder, a lease in a bucket."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from pipelines.lock import ArchiveBusy, Lease, archive_lock, holder
from pipelines.storage import KeyTaken, LocalStore, S3Store


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
