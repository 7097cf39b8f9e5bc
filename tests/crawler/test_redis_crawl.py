"""The shared crawl's state in a real Redis: taking, giving back, claims, the end."""

from __future__ import annotations

import json
import os
import pickle
import re
import socket
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from scrapy import Request
from scrapy.utils.test import get_crawler

from crawler.redis_crawl import PREFIX, SecretUrl, crawl_scope
from crawler.redis_state import (
    HeldQueue,
    JsonRequests,
    MalformedRequest,
    RedisCrawl,
    redis_client,
    request_from_entry,
)
from crawler.registry import Outlet, read_registry_file
from crawler.spiders.outlets import OutletsSpider
from pipelines.archive.storage import LocalStore, S3Store
from tests.conftest import FIXTURES, REPO

OUTLETS = FIXTURES / "redis" / "outlet.toml"
OUTLET = read_registry_file(OUTLETS)[0]
HOST = OUTLET.allowed_domains[0]
MAX_BYTES = 64 * 1024


def outlets_spider() -> OutletsSpider:
    """The crawl's spider, on the outlet of :data:`OUTLETS`: the one a queued request names its
    callbacks on."""
    crawler = get_crawler(
        OutletsSpider, {"NEWSARCHIVE_OUTLETS_FILES": [str(OUTLETS)], "NEWSARCHIVE_OUTLETS": [OUTLET.id]}
    )
    return OutletsSpider.from_crawler(crawler)


def pickle_creating(folder: Path) -> bytes:
    """A pickle that creates ``folder`` when loaded."""

    class Payload:
        def __reduce__(self):
            return (os.mkdir, (str(folder),))

    return pickle.dumps(Payload())


def malformed_entries(outlet: Outlet, marker: Path, max_bytes: int) -> list[tuple[str, bytes]]:
    """(reason, entry): the fixture's, for ``outlet`` (its host, id and first listing), and
    those that are no text."""
    host = outlet.allowed_domains[0]
    lines = (FIXTURES / "redis" / "malformed_requests.jsonl").read_text().splitlines()
    names = {"listing": outlet.listings[0], "host": host, "outlet": outlet.id}
    cases = [
        (case["reason"], re.sub(r"\{(\w+)\}", lambda name: names[name[1]], case["entry"]).encode())
        for case in map(json.loads, lines)
    ]
    return [
        *cases,
        ("not_json", pickle_creating(marker)),
        ("not_json", b""),
        ("not_json", b"\xff\xfe{" + b"\x00" * 10),
        ("not_json", b"[" * 30_000 + b"]" * 30_000),  # (deeper than the parser goes, under MAX_BYTES)
        ("oversize", b" " * max_bytes + b'{"url": "https://' + host.encode() + b'/a.html"}'),
    ]


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
    article_a, article_b = "a" * 64, "b" * 64
    assert first.first_with_text("text-1", article_a) == article_a
    assert second.first_with_text("text-1", article_b) == article_a


def test_a_worker_whose_heart_stopped_has_its_requests_put_back(client):
    (dead, _), (alive, _) = join(client), join(client)
    dead.queue_new("fp", 0, b"request")
    dead.take()
    assert alive.reclaim_dead() == 0  # its heart still beats
    client.delete(dead.key(f"alive:{dead.worker}"))  # as when it stops for REDIS_WORKER_TIMEOUT
    assert alive.reclaim_dead() == 1 and alive.take() == b"request"
    dead.beat()  # it was only slow: it counts again among the workers (the end waits for it)
    assert client.sismember(dead.key("workers"), dead.worker)


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
    modules = "crawler.cli, crawler.spiders.outlets, crawler.pipelines, crawler.redis_crawl, crawler.settings"
    check = f"import sys, {modules}; print(sorted(m for m in ('redis', 'scrapy_redis') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], cwd=REPO, capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_the_pickle_payload_of_these_tests_runs_code_when_unpickled(tmp_path):
    pickle.loads(pickle_creating(tmp_path / "proof"))
    assert (tmp_path / "proof").is_dir()


@pytest.mark.parametrize(
    ("reason", "entry"),
    malformed_entries(OUTLET, Path("/nonexistent/marker"), MAX_BYTES),
    ids=lambda v: repr(v)[:60],
)
def test_an_entry_that_is_no_request_of_this_crawl_is_refused_by_reason(reason: str, entry: bytes):
    with pytest.raises(MalformedRequest) as refused:
        request_from_entry(entry, outlets_spider(), MAX_BYTES)
    assert refused.value.reason == reason


def test_a_request_goes_through_json_whole_but_for_what_each_worker_sets_itself():
    spider = outlets_spider()
    request = Request(
        f"https://{HOST}/a/1.html?x=\u00e9",
        callback=spider.parse_listing,
        errback=spider.article_failed,
        headers={b"If-None-Match": b'"\xff\tetag"', "Proxy-Authorization": "Basic c2VjcmV0"},
        body=b"\x00\xffbytes",
        cookies=[{"name": "a", "value": "b", "path": "/"}, {"name": "c", "value": ""}],
        cb_kwargs={"outlet_id": OUTLET.id, "start": OUTLET.listings[0]},
        meta={
            "depth": 2,
            "retry_times": spider.settings.getint("RETRY_TIMES"),
            "redirect_times": 1,
            "redirect_ttl": spider.settings.getint("REDIRECT_MAX_TIMES") - 1,
            "redirect_urls": ["https://news.example/old"],
            "proxy": "http://10.0.0.1:3128",
            "download_slot": "news.example",
            "handle_httpstatus_list": [304],
        },
        priority=-3,
        dont_filter=True,
    )
    fields = request.to_dict(spider=spider)
    del fields["headers"][b"Proxy-Authorization"]  # (HeldQueue's encoding leaves it out: below)
    again = request_from_entry(JsonRequests.dumps(fields), spider, MAX_BYTES)
    assert again.url == request.url and again.body == request.body and again.priority == -3
    assert again.headers[b"If-None-Match"] == b'"\xff\tetag"' and again.dont_filter
    assert again.cookies == request.cookies
    assert again.callback == spider.parse_listing and again.errback == spider.article_failed
    assert again.cb_kwargs == request.cb_kwargs
    assert again.meta == {
        "depth": 2,
        "retry_times": spider.settings.getint("RETRY_TIMES"),
        "redirect_times": 1,
        "redirect_ttl": spider.settings.getint("REDIRECT_MAX_TIMES") - 1,
        "redirect_urls": ["https://news.example/old"],
        "handle_httpstatus_list": [304],
    }


def test_every_request_the_spider_queues_goes_through_the_queue_with_its_callback_and_arguments():
    spider = outlets_spider()
    listing = OUTLET.listings[0]
    queued = [
        *spider.start_points(),  # (a sitemap; a feed and a listing, each with its outlet and start)
        Request(f"https://{HOST}/sitemap-1.xml", spider._parse_sitemap),  # (SitemapSpider's, a child)
        Request(
            f"https://{HOST}/list-2.html",
            spider.parse_listing,
            cb_kwargs={"outlet_id": OUTLET.id, "start": listing},
        ),
        spider._article_request(f"https://{HOST}/a/1.html"),
    ]
    assert {request.callback.__name__ for request in queued} == {
        "parse_feed",
        "parse_listing",
        "_parse_sitemap",
        "parse_article",
    }
    for request in queued:
        again = request_from_entry(JsonRequests.dumps(request.to_dict(spider=spider)), spider, MAX_BYTES)
        assert (again.url, again.callback, again.errback, again.cb_kwargs) == (
            request.url,
            request.callback,
            request.errback,
            request.cb_kwargs,
        )


def test_a_port_is_the_schemes_default_or_one_an_outlets_start_urls_name():
    crawler = get_crawler(
        OutletsSpider, {"NEWSARCHIVE_OUTLETS_FILES": [str(FIXTURES / "redis" / "outlet_on_port.toml")]}
    )
    spider = OutletsSpider.from_crawler(crawler)
    for url in (
        "https://news.example:443/a/1.html",
        "http://news.example:8443/a/1.html",
        "https://www.news.example:8443/a/1.html",
    ):
        entry = JsonRequests.dumps({"url": url, "callback": "parse_article"})
        assert request_from_entry(entry, spider, MAX_BYTES).url == url
    for url in ("https://news.example:8444/a/1.html", "https://other.example:8443/a/1.html"):
        with pytest.raises(MalformedRequest) as refused:
            request_from_entry(
                JsonRequests.dumps({"url": url, "callback": "parse_article"}), spider, MAX_BYTES
            )
        assert refused.value.reason == "offsite"


def test_the_serializer_keeps_any_bytes_and_any_key(tmp_path):
    value = {"a": [b"\x00\xff", {"$b64": "x"}, {"$pairs": 1}], "b": {b"\xff": [b""]}, "c": None}
    assert JsonRequests.loads(JsonRequests.dumps(value)) == value


def test_the_queue_drops_what_is_no_request_counts_it_and_hands_out_the_next(client, tmp_path):
    crawl, _ = join(client)
    spider = outlets_spider()
    queue = HeldQueue(crawl, spider, spider.crawler.stats, MAX_BYTES)
    marker = tmp_path / "marker"
    planted = malformed_entries(OUTLET, marker, MAX_BYTES)
    for n, (_, entry) in enumerate(planted):
        client.zadd(crawl.key("requests"), {entry: -1 - n})  # taken first
    own_headers = {"Proxy-Authorization": "Basic x", "Authorization": "Basic y", "Cookie": "s=1"}
    request = Request(f"https://{HOST}/a.html", spider.parse_article, headers=own_headers)
    assert queue.push_new(request, "fp")
    taken = queue.pop()
    assert taken.url == request.url and not own_headers.keys() & taken.headers.keys() and queue.pop() is None
    assert not marker.exists()
    counted = {k.removeprefix("redis/dropped/"): v for k, v in spider.crawler.stats.get_stats().items()}
    assert counted == Counter(reason for reason, _ in planted)
    assert client.zcard(crawl.key(f"held:{crawl.worker}")) == 1  # what was dropped is not given back


def test_a_planted_crawl_id_is_not_joined_and_a_crawl_removes_only_its_own_keys(client):
    victims = {f"{PREFIX}:newsarchive-0badc0de:requests": "other crawl", "unrelated": "data"}
    for id_ in ("*", f"{PREFIX}-*", "newsarchive-0badc0de:requests", "x" * 100):
        client.mset(victims)
        client.set(f"{PREFIX}:current:s", id_)
        crawl, started = join(client)
        assert started and crawl.crawl_id not in (id_, "newsarchive-0badc0de")
        crawl.seeded()
        crawl.idle()
        assert crawl.finished()
        crawl.leave(sealed=True, scope="s", found={})
        assert client.mget(list(victims)) == [v.encode() for v in victims.values()]


def test_names_and_numbers_read_back_from_redis_are_checked(client):
    (crawl, _), (other, _) = join(client), join(client)
    client.sadd(crawl.key("workers"), b"\x80\xff not utf-8")
    client.set(crawl.key("seeder"), b"\x80\xff not utf-8")
    assert other.should_seed()  # a seeder named so has no heartbeat: it is dead
    crawl.reclaim_dead()
    assert client.smembers(crawl.key("workers")) == {crawl.worker.encode(), other.worker.encode()}
    client.hset(crawl.key("texts"), "text-1", b"../../victim")
    assert crawl.first_with_text("text-1", "a" * 64) == "a" * 64
    client.hset(crawl.key("found"), mapping={b"\xff": b"1", b"sxkjt": b"many", b"gmw-cq": b"9" * 5000})
    crawl.seeded()
    crawl.idle()
    other.idle()
    assert crawl.finished()
    other.leave(sealed=True, scope="s", found={})
    assert crawl.leave(sealed=True, scope="s", found={"jzyinliu": 2}) == {"jzyinliu": 2}


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
