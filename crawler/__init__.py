"""newsarchive's Scrapy project: settings, the outlet registry, the spider, the CLI."""

import os

# The crawl process writes little Parquet, and Arrow's default allocator (mimalloc) kept what the
# last parts of a crawl used: 45 MB more at the close of a 2,025-page crawl (make bench) than the
# system allocator, which gives it back. Arrow reads this when pyarrow is first imported, and
# every entry point of the crawl (newsarchive, scrapy) imports this package before pyarrow;
# an ARROW_DEFAULT_MEMORY_POOL of the operator's own wins.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

# What the crawl's worker processes run (crawler.pipelines.page_pool); named here, where
# crawler.__main__ finds it before anything heavy is imported.
PAGE_WORKER = "pipelines.stages.page:PageAnalyser"
