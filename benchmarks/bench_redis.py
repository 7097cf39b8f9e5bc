"""A crawl shared through Redis: what Redis holds per URL, and throughput with 1 and 2 workers.

``make bench`` runs it (``python -m benchmarks.bench_redis``), with a real ``redis-server`` on
loopback (tests/install-services.sh installs it):

(a) Redis memory per URL (``INFO memory``, used_memory), at 10,000 and 100,000 URLs, for a URL
    queued (its serialized request in the queue and its fingerprint in the seen set) and for a
    URL only seen (taken, fetched, its worker gone);
(b) the 405-page loopback site of ``benchmarks/bench_crawl.py`` crawled by one process without
    Redis, by 1 worker and by 2 workers through Redis (each worker with one extraction process
    per core it may use: 2 for one worker, 1 each for two), pages per second, and the Redis
    commands per page (``INFO commandstats``) with the microseconds Redis spent on them.

Reported, not asserted; the last line is ``RESULT bytes_per_queued_url=... bytes_per_seen_url=...
pages_per_s_1_worker=... pages_per_s_2_workers=... redis_calls_per_page=... redis_us_per_page=...``.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scrapy import Request, Spider
from scrapy_redis.dupefilter import RFPDupeFilter

from benchmarks.baselines import FETCH_SETTINGS
from benchmarks.bench_crawl import REPO, Site, build_site, registry
from crawler.shared.queue_entries import JsonRequests
from crawler.shared.state import RedisCrawl, redis_client
from tests.redis_server import RedisServer


class _Spider(Spider):
    """Requests serialize their callbacks by name, as the crawl's spider does."""

    name = "outlets"

    def parse_article(self, response: object) -> None:
        return None

    def article_failed(self, failure: object) -> None:
        return None


def memory_per_url(server: RedisServer, count: int) -> tuple[float, float]:
    """Bytes per queued URL and per seen URL, for ``count`` article URLs."""
    client = redis_client(server.url)
    client.flushall()
    crawl, _ = RedisCrawl.join(client, f"bench-{count}")
    spider = _Spider()
    seen = RFPDupeFilter(client, crawl.key("seen"))
    before = client.info("memory")["used_memory"]
    for start in range(0, count, 1000):
        with client.pipeline(transaction=False) as pipe:
            for n in range(start, min(count, start + 1000)):
                day = n % 28 + 1  # an outlet's article URL, as its sitemaps list them
                url = f"https://hznews.hangzhou.com.cn/xinzheng/content/2026-11/{day:02d}/content_{n:08d}.htm"
                request = Request(url, spider.parse_article, errback=spider.article_failed)
                pipe.sadd(crawl.key("seen"), seen.request_fingerprint(request))  # as the crawl stores them
                pipe.zadd(crawl.key("requests"), {JsonRequests.dumps(request.to_dict(spider=spider)): 0})
            pipe.execute()
    queued = client.info("memory")["used_memory"] - before
    client.delete(crawl.key("requests"))
    only_seen = client.info("memory")["used_memory"] - before
    return queued / count, only_seen / count


def redis_calls(server: RedisServer) -> tuple[int, float]:
    stats = redis_client(server.url).info("commandstats")
    return (
        sum(int(v["calls"]) for v in stats.values()),
        sum(float(v["usec"]) for v in stats.values()),
    )


def crawl(site: Site, folder: Path, archive: Path, redis_url: str | None, workers: int) -> float:
    """Seconds for the site's crawl by ``workers`` processes (one without Redis if no URL)."""
    settings = [arg for name, value in FETCH_SETTINGS.items() for arg in ("-s", f"{name}={value}")]
    command = [
        *(sys.executable, "-m", "crawler", "crawl", "--outlets-file", str(registry(site, folder))),
        *("--outlet", "bench", "--archive", str(archive), "--quiet", *settings),
        *("-s", f"EXTRACT_WORKERS={max(1, 2 // workers)}"),
        *(("--redis", redis_url) if redis_url else ()),
    ]
    start = time.perf_counter()
    processes = [subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL) for _ in range(workers)]
    codes = [p.wait() for p in processes]
    if any(codes):
        raise RuntimeError(f"a crawl failed: exit codes {codes}")
    return time.perf_counter() - start


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="newsarchive-bench-redis-") as tmp:
        root = Path(tmp)
        server = RedisServer(root / "redis").start()
        try:
            memory = {count: memory_per_url(server, count) for count in (10_000, 100_000)}
            redis_client(server.url).flushall()
            pages = build_site(root / "site", 1)
            site = Site(root / "site")
            try:
                seconds = {"one process, no Redis": crawl(site, root, root / "a0", None, 1)}
                redis_client(server.url).config_resetstat()
                seconds["1 worker"] = crawl(site, root, root / "a1", server.url, 1)
                calls, usec = redis_calls(server)
                seconds["2 workers"] = crawl(site, root, root / "a2", server.url, 2)
            finally:
                site.stop()
        finally:
            server.stop()
    for count, (queued, seen) in memory.items():
        print(f"Redis memory at {count:,} URLs: {queued:.0f} bytes per queued URL, {seen:.0f} per seen URL")
    for name, value in seconds.items():
        print(f"{name:<22} {pages} pages in {value:6.2f} s: {pages / value:6.1f} pages/s")
    print(f"1 worker: {calls / pages:.1f} Redis commands and {usec / pages:.0f} us of Redis time per page")
    queued, seen = memory[100_000]
    print(
        f"RESULT bytes_per_queued_url={queued:.0f} bytes_per_seen_url={seen:.0f} "
        f"pages_per_s_1_worker={pages / seconds['1 worker']:.1f} "
        f"pages_per_s_2_workers={pages / seconds['2 workers']:.1f} "
        f"redis_calls_per_page={calls / pages:.1f} redis_us_per_page={usec / pages:.0f}"
    )


if __name__ == "__main__":
    main()
