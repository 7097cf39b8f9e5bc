"""The shared crawl's state in a real Redis: taking, giving back, claims, the end."""

from __future__ import annotations

import subprocess
import sys

import pytest

from crawler.redis_crawl import PREFIX, SecretUrl, crawl_scope
from crawler.redis_state import RedisCrawl, redis_client
from tests.conftest import REPO


@pytest.fixture
def client(redis_server):
    return redis_client(redis_server.url)


def join(client, scope: str = "s") -> tuple[RedisCrawl, bool]:
    return RedisCrawl.join(client, scope, timeout=30)


def test_workers_of_one_scope_join_one_crawl_and_a_done_crawl_is_not_joined(client):
    (first, started), (second, joined) = join(client), join(client)
    assert started and not joined and first.crawl_id == second.crawl_id != join(client, "other")[0].crawl_id
    assert first.should_seed() and not second.should_seed()
    first.seeded()
    for worker in (first, second):
        worker.idle()
    assert first.finished() and second.finished()
    assert first.leave(sealed=True, scope="s", found={"a": 2}) is None  # the other is still there
    assert second.leave(sealed=True, scope="s", found={"a": 1}) == {"a": 3}  # the last: the totals
    assert not list(client.scan_iter(match=f"{PREFIX}:{first.crawl_id}:*"))  # its keys are gone
    assert join(client)[0].crawl_id != first.crawl_id


def test_a_request_is_queued_once_taken_by_one_worker_and_given_back_with_its_claims(client):
    (first, _), (second, _) = join(client), join(client)
    assert first.queue_new("fp1", 0, b"request-1") and not second.queue_new("fp1", 0, b"request-1")
    assert first.queue_new(None, 0, b"request-2")  # dont_filter: no fingerprint
    assert first.claim("article-a") and not second.claim("article-a") and first.claim("article-a")
    taken = {first.take(), first.take()}
    assert taken == {b"request-1", b"request-2"} and second.take() is None
    assert not first.finished()  # not seeded, and first took work: not idle
    assert second.give_back(first.worker) == 2  # as for a dead worker: both queued again,
    assert second.claim("article-a")  # and its claims released
    assert {second.take(), second.take()} == taken


def test_a_sealed_workers_claims_stay_when_it_gives_back_what_it_held(client):
    (first, _), (second, _) = join(client), join(client)
    first.queue_new("fp", 0, b"request")
    first.claim("article-a")
    first.take()
    first.leave(sealed=True, scope="s", found={})  # stopped early, its manifest holds article-a
    assert second.take() == b"request" and not second.claim("article-a")


def test_a_copy_names_the_first_article_with_its_text(client):
    (first, _), (second, _) = join(client), join(client)
    assert first.first_with_text("text-1", "article-a") == "article-a"
    assert second.first_with_text("text-1", "article-b") == "article-a"


def test_a_worker_whose_heart_stopped_has_its_requests_put_back(client):
    (dead, _), (alive, _) = join(client), join(client)
    dead.queue_new("fp", 0, b"request")
    dead.take()
    assert alive.reclaim_dead() == 0  # its heart still beats
    client.delete(dead.key(f"alive:{dead.worker}"))  # as when it stops for REDIS_WORKER_TIMEOUT
    assert alive.reclaim_dead() == 1 and alive.take() == b"request"
    dead.beat()  # it was only slow: it counts again among the workers (the end waits for it)
    assert client.sismember(dead.key("workers"), dead.worker)


def test_the_redis_url_shows_no_password_when_printed():
    url = SecretUrl("redis://:s3cret@redis.example:6379/0")
    assert (
        "s3cret" not in repr(url)
        and "s3cret" not in repr({"REDIS_URL": url})
        and str(url).startswith("redis://:s3")
    )
    assert (
        crawl_scope("s3://b/a", ["x", "y"])
        == crawl_scope("s3://b/a", ["y", "x"])
        != crawl_scope("s3://b/a", ["x"])
    )


def test_a_crawl_without_redis_loads_no_redis_client():
    modules = "crawler.cli, crawler.spiders.outlets, crawler.pipelines, crawler.redis_crawl, crawler.settings"
    check = f"import sys, {modules}; print(sorted(m for m in ('redis', 'scrapy_redis') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
