"""A queued entry of the shared crawl: JSON both ways, and what a worker refuses to take."""

from __future__ import annotations

import json
import os
import pickle
import re
from pathlib import Path

import pytest
from scrapy import Request
from scrapy.utils.test import get_crawler

from crawler.registry import Outlet, read_registry_file
from crawler.shared.queue_entries import JsonRequests, MalformedRequest, request_from_entry
from crawler.spiders.outlets import OutletsSpider
from tests.conftest import FIXTURES

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
