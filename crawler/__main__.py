"""``newsarchive`` (``python -m crawler``): a crawl's worker processes start first.

A worker imports its stages (trafilatura, lxml, langdetect: 0.2 s of CPU) before it can take a
page; started by the pool when the spider opens, they kept the first pages waiting 0.3 s. Started
here, before this process imports Scrapy (0.4 s, and 0.2 s more to build the crawl), they import
on the core the crawl's own start leaves idle. One per core: ``EXTRACT_WORKERS`` is not known
before the settings are read, and a pool of fewer closes the rest.
"""

import os
import sys

from crawler import PAGE_WORKER
from pipelines.pool import start_workers


def run() -> None:
    argv = sys.argv[1:]
    started = start_workers(PAGE_WORKER, os.cpu_count() or 1) if argv[:1] == ["crawl"] else []
    from crawler.cli import run as run_command  # Scrapy, while the workers import their stages

    run_command(argv, started)


if __name__ == "__main__":
    run()
