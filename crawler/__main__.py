"""``newsarchive`` (``python -m crawler``): a crawl's worker processes start first.

A worker imports its stages (trafilatura, lxml, langdetect: 0.2 s of CPU) before it can take a
page; started by the pool when the spider opens, they kept the first pages waiting 0.3 s. Started
here, before this process imports Scrapy (0.4 s, and 0.2 s more to build the crawl), they import
on the core the crawl's own start leaves idle. As many as ``-s EXTRACT_WORKERS=N`` asks, else
one per core; a pool of fewer closes the rest.
"""

import itertools
import os
import sys

from crawler import PAGE_WORKER
from pipelines.runtime.pool import start_workers


def run() -> None:
    argv = sys.argv[1:]
    started = start_workers(PAGE_WORKER, _workers_asked(argv)) if argv[:1] == ["crawl"] else []
    from crawler.cli import run as run_command  # a crawl imports Scrapy while the workers import their stages

    run_command(argv, started)


def _workers_asked(argv: list[str]) -> int:
    """``EXTRACT_WORKERS`` as the command line sets it (``-s``/``--set NAME=VALUE``, the last one
    wins), else one per core. Read here, before the settings: several crawls of one worker each
    on a machine of many cores would each start, and close, a worker per core. Any other spelling
    gets one per core, and the pool closes those it has no use for."""
    asked = ""
    for flag, value in itertools.pairwise(argv):
        if flag in ("-s", "--set") and value.startswith("EXTRACT_WORKERS="):
            asked = value.partition("=")[2]
    return (int(asked) if asked.isdigit() else 0) or os.cpu_count() or 1


if __name__ == "__main__":
    run()
