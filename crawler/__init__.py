"""newsarchive's Scrapy project and its command line; it may import ``pipelines``, never the reverse.

``cli/`` (one module per command group), ``report.py`` (per-outlet figures), ``from_settings.py`` and
``common_settings.py`` (what a run builds from its settings, without Scrapy); the Scrapy adapters over
``pipelines/``: ``pipelines.py``, ``extensions.py``, ``capture.py``, ``middlewares.py``, ``templates.py``;
``spiders/``, ``registry.py`` with ``outlets.toml``, ``settings.py``, ``confinement.py``, ``progress.py``;
``shared/`` (one crawl over many machines, through Redis); ``mirror/``.
"""

import os

# The crawl process writes little Parquet, and Arrow's default allocator (mimalloc) kept what the
# last parts of a crawl used: 45 MB more at the close of a 2,025-page crawl (make bench) than the
# system allocator, which gives it back. Arrow reads this when pyarrow is first imported, and
# every entry point of the crawl (newsarchive, scrapy) imports this package before pyarrow;
# an ARROW_DEFAULT_MEMORY_POOL of the operator's own wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# What the crawl's worker processes run (crawler.from_settings.page_pool); named here, where
# crawler.__main__ finds it before anything heavy is imported.
PAGE_WORKER = "pipelines.stages.page:PageAnalyser"
