"""Issue 31, classes 8, 10 (spools) and 9 (URIs in messages), through the CLI: a planted lock file,
a store that ignores If-None-Match, a store that fails while the lock is taken, two buckets
sharing a spool, and credentials in an endpoint or an archive URI. Each attack is refused or read
around, nothing outside the archive is touched, and every legitimate row is still there.

(The lock and the spool unit by unit: tests/pipelines/archive/test_lock.py and
tests/pipelines/archive/test_publish.py.)
"""

from __future__ import annotations

import pytest

from crawler.cli.exits import ExitCode
from crawler.mirror.server import MirrorServer
from pipelines.archive.keys import lease_key
from pipelines.archive.lock import ACCEPT_ENV, PROBE_GENERATION
from pipelines.archive.spool import SPOOL_ARCHIVE
from tests.conftest import CrawlRun, run_cli
from tests.faultproxy import FaultProxy
from tests.objectstores import ACCESS_KEY, SECRET_KEY, ObjectStore
from tests.pipelines.archive.test_lock import PLANTED, plant
from tests.test_incremental import OUTLET, crawl, mirror, rows
from tests.test_object_storage import PREFIX, Bucket

pytestmark = pytest.mark.slow  # crawls and commands in subprocesses, against stores that fail or never answer

__all__ = ["mirror"]  # the fixture, shared with tests/test_incremental.py


def outlet_urls(mirror: MirrorServer) -> list[str]:
    return sorted(a.url for a in mirror.mirror.articles if a.outlet_id == OUTLET and a.expect == "archived")


def assert_holds(bucket: Bucket, urls: list[str]) -> None:
    """The bucket holds these rows once each, every part sealed by one manifest, none pending."""
    assert sorted(bucket.rows().column("url").to_pylist()) == urls
    sealed = sorted(f["key"] for m in bucket.manifests() for f in m["files"])
    assert sealed == [k.removeprefix(f"{PREFIX}/") for k in bucket.parts()]
    assert not list(bucket.spool.rglob("*.parquet"))


def crawl_outlet(bucket: Bucket, mirror: MirrorServer, endpoint: str | None = None, env: dict | None = None):
    return run_cli(
        *("crawl", "--mirror-url", mirror.url, "--archive", bucket.uri, "--spool", str(bucket.spool)),
        *("--outlet", OUTLET),
        env=bucket.env(endpoint) | (env or {}),
    )


# -- class 8: locks ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [k for k in PLANTED if k != "folder"])
def test_a_planted_lock_file_stops_crawl_and_compact_and_is_left_as_it_was(mirror, tmp_path, kind):
    archive = tmp_path / "archive"
    crawl(mirror, archive)
    before = sorted(r["article_id"] for r in rows(archive))
    outside = tmp_path / "precious.txt"
    outside.write_bytes(b"the operator's data, not a lock\n" * 100)
    lock = archive / ".newsarchive.lock"
    lock.unlink()
    plant(kind, lock, outside)
    planted = (lock.lstat().st_mode, lock.lstat().st_size, outside.read_bytes())
    for run in (
        run_cli("crawl", "--mirror-url", mirror.url, "--archive", str(archive), "--outlet", OUTLET),
        run_cli("compact", str(archive)),
    ):
        assert run.returncode == 2, run.stdout + run.stderr
        assert ".newsarchive.lock" in run.stderr and "not touched, not started" in run.stderr
        assert "Traceback" not in run.stderr
        assert (lock.lstat().st_mode, lock.lstat().st_size, outside.read_bytes()) == planted
    assert sorted(r["article_id"] for r in rows(archive)) == before
    lock.unlink()  # the operator removes it: all is as before
    assert run_cli("compact", str(archive)).returncode == 0
    assert sorted(r["article_id"] for r in rows(archive)) == before


def _ignoring_if_none_match(store: ObjectStore) -> FaultProxy:
    """The store behind a proxy that strips If-None-Match from every write (and signs again)."""
    return FaultProxy(
        store.endpoint,
        lambda method, path: "unconditional" if method in ("PUT", "POST") else "pass",
        credentials=(ACCESS_KEY, SECRET_KEY, "us-east-1"),
    )


def test_a_store_that_ignores_if_none_match_is_refused_unless_the_operator_accepts_it(
    object_store, mirror, tmp_path
):
    bucket = Bucket(object_store, tmp_path)
    with _ignoring_if_none_match(object_store) as proxy:
        refused = [
            crawl_outlet(bucket, mirror, proxy.url),
            run_cli(
                "flush", "--archive", bucket.uri, "--spool", str(bucket.spool), env=bucket.env(proxy.url)
            ),
        ]
        assert bucket.object_keys() == [f"{PREFIX}/{lease_key(PROBE_GENERATION)}"]  # the probe only
        accepted = crawl_outlet(bucket, mirror, proxy.url, env={ACCEPT_ENV: "1"})
        # compact refuses an empty prefix as no archive (exit 2 too): it is tried once there is one
        refused.append(run_cli("compact", bucket.uri, env=bucket.env(proxy.url)))
    for run in refused:
        assert run.returncode == 2, run.stdout + run.stderr
        (line,) = [x for x in run.stderr.splitlines() if "does not honour If-None-Match" in x]
        assert f"{ACCEPT_ENV}=1" in line and "ARCHIVE_ACCEPT_UNCONDITIONAL_WRITES" in line
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert "does not honour If-None-Match; running anyway" in accepted.stderr
    assert_holds(bucket, outlet_urls(mirror))


def test_without_the_lease_a_crawl_only_spools_and_flush_and_compact_do_not_run(
    object_store, mirror, tmp_path
):
    """The store fails while the lease is taken (its _lock/ answers 503), then works: the crawl
    publishes nothing without the lease; flush and compact refuse to run without it (exit 75)."""
    bucket = Bucket(object_store, tmp_path)
    no_lease = lambda method, path: "503" if "_lock" in path else "pass"  # noqa: E731
    with FaultProxy(object_store.endpoint, no_lease) as proxy:
        run = crawl_outlet(bucket, mirror, proxy.url)
        assert run.returncode == 3, run.stdout + run.stderr
        assert "archive lease not taken, running without it (spooling only)" in run.stderr
        assert "lock was not taken at the start" in run.stdout and "PROBLEM" in run.stdout
        assert not bucket.parts() and not bucket.manifests()
        spooled = sorted(p.relative_to(bucket.spool) for p in bucket.spool.rglob("*.parquet"))
        assert spooled
        refused = run_cli(
            "flush", "--archive", bucket.uri, "--spool", str(bucket.spool), env=bucket.env(proxy.url)
        )
        _assert_not_started(refused)
    assert sorted(p.relative_to(bucket.spool) for p in bucket.spool.rglob("*.parquet")) == spooled
    assert not bucket.parts()
    flushed = bucket.flush()
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert_holds(bucket, outlet_urls(mirror))
    with FaultProxy(object_store.endpoint, no_lease) as proxy:  # compact needs an archive to refuse
        _assert_not_started(run_cli("compact", bucket.uri, env=bucket.env(proxy.url)))
    assert_holds(bucket, outlet_urls(mirror))


def _assert_not_started(refused: CrawlRun) -> None:
    assert refused.returncode == ExitCode.BUSY, refused.stdout + refused.stderr
    assert "the archive's lock could not be taken" in refused.stderr and "not started" in refused.stderr


# -- class 10: one spool per archive ---------------------------------------------------------------


def test_two_buckets_never_share_a_spool(object_store, mirror, tmp_path):
    """A's publication fails, its rows wait in the spool; B, given the same spool, is refused
    (as it is when the spool was an older version's, recording no archive); A's flush publishes
    them into A, and nothing of A's run ever reaches B."""
    first, second = Bucket(object_store, tmp_path), Bucket(object_store, tmp_path)
    assert first.spool == second.spool
    writes_fail = lambda method, path: "503" if method in ("PUT", "POST") else "pass"  # noqa: E731
    with FaultProxy(object_store.endpoint, writes_fail) as proxy:
        failed = crawl_outlet(first, mirror, proxy.url)
    assert failed.returncode == 3, failed.stdout + failed.stderr
    first_crawl = failed.stdout.split()[1]
    for recorded in (True, False):
        if not recorded:  # an older version's spool: it records no archive
            (first.spool / SPOOL_ARCHIVE).unlink()
        refused = crawl_outlet(second, mirror)
        assert refused.returncode == 2, refused.stdout + refused.stderr
        why = (
            f"holds the crawls of the archive '{first.uri}', not of {second.uri}"
            if recorded
            else "spooled by an older newsarchive, which recorded no archive"
        )
        assert why in refused.stderr
        assert second.object_keys() == []
    assert f"newsarchive flush --archive {second.uri} --spool {second.spool}" in refused.stderr
    second.spool = tmp_path / "spool-of-b"
    own = crawl_outlet(second, mirror)
    assert own.returncode == 0, own.stdout + own.stderr
    assert_holds(second, outlet_urls(mirror))
    assert first_crawl not in "".join(second.object_keys())
    assert set(second.rows().column("crawl_id").to_pylist()) == {own.stdout.split()[1]}
    flushed = first.flush()  # the operator names the archive: the older spool is claimed for it
    assert flushed.returncode == 0, flushed.stdout + flushed.stderr
    assert_holds(first, outlet_urls(mirror))
    assert set(first.rows().column("crawl_id").to_pylist()) == {first_crawl}


# -- class 9: no secret of a URI in any message ------------------------------------------------------

SECRETS = ("pw-in-the-endpoint", "token-in-the-query", "the-session-token", "pw-of-the-proxy", SECRET_KEY)
PROXY = "http://user:pw-of-the-proxy@127.0.0.1:1"  # Scrapy's HttpProxyMiddleware reads it
ENDPOINTS = [
    "http://user:pw-in-the-endpoint@127.0.0.1:1/?X-Amz-Security-Token=token-in-the-query",
    "https://user:pw-in-the-endpoint@127.0.0.1:1/path?sig=token-in-the-query#token-in-the-query",
    "http://user:pw-in-the-endpoint@not_a_host:1/",  # botocore calls it invalid, URL and all
]


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_no_secret_of_a_dead_store_reaches_a_message(mirror, seaweedfs, tmp_path, endpoint):
    bucket = Bucket(seaweedfs, tmp_path)
    """Every command, the crawl logging at DEBUG (botocore's requests, headers and all, included),
    with secrets in the endpoint, the session token and the proxies."""
    env = bucket.env(endpoint) | {"AWS_SESSION_TOKEN": "the-session-token", "AWS_MAX_ATTEMPTS": "1"}
    env |= {name: PROXY for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy")}
    uri, spool = bucket.uri, str(bucket.spool)
    crawl = ("crawl", "--mirror-url", mirror.url, "--archive", uri, "--spool", spool, "--outlet", OUTLET)
    runs = [
        run_cli(*crawl, "--log-level", "DEBUG", env=env),
        run_cli("ls", uri, env=env),
        run_cli("verify", uri, env=env),
        run_cli("pull", uri, str(tmp_path / "pulled"), env=env),
        run_cli("compact", uri, env=env),
        run_cli("reindex", uri, env=env),
        run_cli("card", uri, "--out", str(tmp_path / "card"), env=env),
        run_cli("reextract", uri, "--to", str(tmp_path / "again"), env=env),
        run_cli("reextract", str(bucket.spool), "--to", uri, env=env),
        run_cli("flush", "--archive", uri, "--spool", spool, env=env),
    ]
    written = [path.read_bytes() for path in tmp_path.rglob("*") if path.is_file()]
    for run in runs:
        assert run.returncode != 0
        for secret in SECRETS:
            assert secret not in run.stdout + run.stderr, run.stdout + run.stderr
            assert not any(secret.encode() in data for data in written)


@pytest.mark.parametrize(
    "archive",
    [
        "file://user:pw-in-the-endpoint@host{tmp}/no/such/folder",
        "gopher://user:pw-in-the-endpoint@host/x?token=token-in-the-query",
        "s3://bucket/prefix?X-Amz-Security-Token=token-in-the-query",
        "s3://bucket/prefix#token-in-the-query",
    ],
)
def test_no_secret_of_an_archive_uri_reaches_a_message(archive, tmp_path):
    archive = archive.format(tmp=tmp_path)
    env = {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": "key"}
    commands = [
        ("ls", archive),
        ("verify", archive),
        ("compact", archive),
        ("reindex", archive),
        ("card", archive, "--out", str(tmp_path / "card")),
        ("pull", archive, str(tmp_path / "pulled")),
        ("reextract", archive, "--to", str(tmp_path / "again")),
        ("flush", "--archive", archive),
    ]
    for command in commands:
        run = run_cli(*command, env=env)
        if command[0] != "flush" or not archive.startswith("file:"):  # flushing no crawl to a folder: fine
            assert run.returncode == 2 and run.stderr.startswith("newsarchive: "), run.stdout + run.stderr
        for secret in SECRETS:
            assert secret not in run.stdout + run.stderr, run.stdout + run.stderr
