"""What every crawl loads of the shared crawl: the Redis URL masked, the scope, no Redis client."""

from __future__ import annotations

import socket
import subprocess
import sys

import pytest

from crawler.shared.extension import SecretUrl, crawl_scope
from pipelines.archive.storage import LocalStore, S3Store
from tests.conftest import REPO


@pytest.mark.parametrize(
    "url",
    [
        "redis://:s3cret@redis.example:6379/0",
        "rediss://worker:s3cret@redis.example:6380/0",
        "redis://redis.example:6379/0?password=s3cret",
    ],
)
def test_the_redis_url_shows_no_password_when_printed(url: str):
    secret = SecretUrl(url)
    assert "s3cret" not in repr(secret) and "s3cret" not in repr({"REDIS_URL": secret}) and str(secret) == url


def test_a_crawl_without_redis_loads_no_redis_client():
    modules = (
        "crawler.cli, crawler.spiders.outlets, crawler.pipelines, crawler.redis_crawl, crawler.settings, "
        "crawler.shared.extension, crawler.shared.scheduler"
    )
    check = f"import sys, {modules}; print(sorted(m for m in ('redis', 'scrapy_redis') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_scope_names_the_archive_unambiguously(tmp_path, monkeypatch):
    outlets = ["x", "y"]
    here = crawl_scope(LocalStore(tmp_path / "a"), outlets)
    assert (
        here
        == crawl_scope(LocalStore(tmp_path / "a"), ["y", "x"])
        == crawl_scope(LocalStore(str(tmp_path / "a") + "/"), outlets)
    )
    assert here not in (
        crawl_scope(LocalStore(tmp_path / "b"), outlets),
        crawl_scope(LocalStore(tmp_path / "a"), ["x"]),
    )
    for cwd in ("one", "two"):
        (tmp_path / cwd).mkdir()
    monkeypatch.chdir(tmp_path / "one")
    first = crawl_scope(LocalStore("output"), outlets)
    monkeypatch.chdir(tmp_path / "two")
    assert first != crawl_scope(LocalStore("output"), outlets)  # the default folder of two places
    monkeypatch.setattr(socket, "gethostname", lambda: "another-host")
    assert crawl_scope(LocalStore(tmp_path / "a"), outlets) != here  # the same path on two hosts
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "key")
    scopes = {}
    for endpoint, uri in [
        ("http://127.0.0.1:8333", "s3://bucket/prefix"),
        ("http://127.0.0.1:8333", "s3://bucket/other"),
        ("http://127.0.0.1:8333", "s3://other/prefix"),
        ("http://10.0.0.5:8333", "s3://bucket/prefix"),  # the same bucket, as another machine reaches it
    ]:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        scopes[endpoint, uri] = crawl_scope(S3Store(uri), outlets)
    assert len(set(scopes.values())) == 3
    assert (
        scopes["http://127.0.0.1:8333", "s3://bucket/prefix"]
        == scopes["http://10.0.0.5:8333", "s3://bucket/prefix"]
    )
