"""The two crawls ``make bench`` compares ours with, run as ``python -m benchmarks.baselines``.

``ceiling``: Scrapy fetching every page of a sitemap and doing nothing with it (the fetch
ceiling). ``naive``: what a user writes in an afternoon, ``trafilatura.extract`` and seeded
``langdetect`` in the spider callback, every row kept in memory and written to one Parquet file
when the crawl closes. Both use the fetch settings our crawl is benchmarked with.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from scrapy.crawler import CrawlerProcess
from scrapy.http import Response
from scrapy.spiders import SitemapSpider

FETCH_SETTINGS = {"DOWNLOAD_DELAY": 0, "AUTOTHROTTLE_ENABLED": False, "CONCURRENT_REQUESTS_PER_DOMAIN": 32}


class CeilingSpider(SitemapSpider):
    name = "ceiling"

    def __init__(self, sitemap: str, output: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.sitemap_urls = [sitemap]

    def parse(self, response: Response) -> None:
        return None


class NaiveSpider(CeilingSpider):
    name = "naive"

    def __init__(self, sitemap: str, output: str, **kwargs: Any):
        super().__init__(sitemap, output, **kwargs)
        self.output = output
        self.rows: list[dict[str, Any]] = []

    def parse(self, response: Response) -> None:
        import trafilatura
        from langdetect import DetectorFactory, detect
        from langdetect.lang_detect_exception import LangDetectException

        DetectorFactory.seed = 0
        text = trafilatura.extract(response.text)
        try:
            language = detect(text) if text else None
        except LangDetectException:
            language = None
        self.rows.append(
            {"url": response.url, "text": text, "language": language, "fetched_at": datetime.now(UTC)}
        )

    def closed(self, reason: str) -> None:
        pq.write_table(pa.Table.from_pylist(self.rows), self.output)


def main(kind: str, sitemap: str, output: str) -> None:
    process = CrawlerProcess(
        {**FETCH_SETTINGS, "LOG_LEVEL": "WARNING", "TELNETCONSOLE_ENABLED": False, "ROBOTSTXT_OBEY": True}
    )
    process.crawl({"ceiling": CeilingSpider, "naive": NaiveSpider}[kind], sitemap=sitemap, output=output)
    process.start()


if __name__ == "__main__":
    main(*sys.argv[1:4])
