"""The scheduler settings name, by its old path too, and scrapy-redis's queue on a real Redis."""

from __future__ import annotations

from collections import Counter

import pytest
from scrapy import Request
from scrapy.core.scheduler import BaseScheduler
from scrapy.core.scheduler import Scheduler as ScrapyScheduler
from scrapy.utils.misc import build_from_crawler, load_object
from scrapy.utils.test import get_crawler

from crawler import settings
from crawler.shared.extension import RedisCrawlExtension
from crawler.shared.redis_scheduler import HeldQueue
from crawler.shared.scheduler import CrawlScheduler
from tests.crawler.shared.test_queue_entries import HOST, MAX_BYTES, OUTLET, malformed_entries, outlets_spider
from tests.crawler.shared.test_state import join


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


@pytest.mark.parametrize("path", [settings.SCHEDULER, "crawler.redis_crawl.CrawlScheduler"])
def test_the_scheduler_loads_by_its_path_and_by_the_one_operators_settings_may_still_name(path: str):
    scheduler = load_object(path)
    assert scheduler is CrawlScheduler and issubclass(scheduler, BaseScheduler)  # (what Scrapy checks)
    assert (
        type(build_from_crawler(scheduler, get_crawler(settings_dict={"SCHEDULER": path}))) is ScrapyScheduler
    )


@pytest.mark.parametrize(
    "path",
    [
        *(name for name in settings.EXTENSIONS if name.startswith("crawler.shared.")),
        "crawler.redis_crawl.RedisCrawlExtension",
    ],
)
def test_the_extension_loads_by_its_path_and_by_the_one_operators_settings_may_still_name(path: str):
    assert load_object(path) is RedisCrawlExtension
