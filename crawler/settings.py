"""Scrapy settings of newsarchive: polite defaults for crawling live news sites.

Every setting here can be overridden with ``-s NAME=VALUE`` (scrapy) or the CLI's options.
Settings of our own components are documented in their classes and in docs/architecture.md.
"""

from scrapy.settings.default_settings import DOWNLOAD_HANDLERS_BASE as _SCRAPY_HANDLERS
from scrapy.settings.default_settings import EXTENSIONS_BASE as _SCRAPY_EXTENSIONS

# The archive's (ARCHIVE_*) and the page workers' (EXTRACT_*, LANGUAGE_*, ROBOTS_NOARCHIVE_OBEY)
# settings, documented there: the archivist commands read them without Scrapy.
from crawler.common_settings import *  # noqa: F403

BOT_NAME = "newsarchive"
SPIDER_MODULES = ["crawler.spiders"]
NEWSPIDER_MODULE = "crawler.spiders"

# Who we are, and how to reach us: sites block anonymous crawlers; the contact URL is
# substituted into USER_AGENT by crawler.middlewares.ContactUserAgentMiddleware.
CONTACT_URL = "https://github.com/newsarchive/newsarchive"
USER_AGENT = "newsarchive/0.1 (+{contact_url})"
DOWNLOADER_MIDDLEWARES = {
    "scrapy.downloadermiddlewares.useragent.UserAgentMiddleware": None,
    "crawler.middlewares.ContactUserAgentMiddleware": 500,
    # sees a 429/503 before RetryMiddleware (550) retries it: the site's slot waits Retry-After
    "crawler.middlewares.RetryAfterMiddleware": 560,
    # http(s) to public addresses only (crawler/confinement.py); above RetryMiddleware (550), so
    # a refused address is not retried
    "crawler.middlewares.ConfinementMiddleware": 555,
    # next to the downloader: every response as received, before decompression and redirects
    "crawler.capture.WarcCaptureMiddleware": 950,
}
RETRY_AFTER_MAX = 120.0  # seconds: a longer Retry-After is capped (counted in retry_after/capped)
# Only http and https are fetched: Scrapy's file, data, s3 and ftp handlers are left out of the
# base, so no DOWNLOAD_HANDLERS a run sets (the mirror's) brings them back. A sitemap's
# file://<outlet host>/proc/self/environ was read and published.
DOWNLOAD_HANDLERS_BASE = {scheme: _SCRAPY_HANDLERS[scheme] for scheme in ("http", "https")}

# Politeness: robots.txt, few parallel requests per site, adaptive delays.
ROBOTSTXT_OBEY = True
CONCURRENT_REQUESTS = 16
CONCURRENT_REQUESTS_PER_DOMAIN = 2
DOWNLOAD_DELAY = 1.0
AUTOTHROTTLE_ENABLED = True
AUTOTHROTTLE_START_DELAY = 1.0
AUTOTHROTTLE_MAX_DELAY = 30.0
AUTOTHROTTLE_TARGET_CONCURRENCY = 1.0
DOWNLOAD_TIMEOUT = 30
RETRY_TIMES = 2
DOWNLOAD_MAXSIZE = 16 * 1024 * 1024  # no article page is this big; sitemaps may come close
# Pages waiting for an extraction worker stay in Scrapy's scraper; past this many bytes of them it
# fetches nothing new. 2 MB (about 20 news pages) keeps the workers busy; Scrapy's 5 MB only
# held 16 MB more in the crawl process.
SCRAPER_SLOT_MAX_ACTIVE_SIZE = 2_000_000
# Items processed at once per response. An article page gives one item; Scrapy starts this many
# asyncio tasks for every response whatever it gives, and its 100 cost the crawl process 1 ms of
# CPU per page (make bench). A listing or sitemap page's links are queued no slower with 8.
CONCURRENT_ITEMS = 8

# The stages, in order: extraction and language (in worker processes) -> dedup -> archive.
# Their cores are in pipelines/; these are the Scrapy adapters (crawler/pipelines.py).
ITEM_PIPELINES = {
    "crawler.pipelines.ExtractPipeline": 100,
    "crawler.pipelines.DedupPipeline": 300,
    "crawler.pipelines.ArchivePipeline": 900,
}
# Each outlet's template (the blocks its pages share): pages are extracted with it as the archive
# (_templates/) held it when the crawl opened, and the crawl learns it from every page for the next.
TEMPLATE_LEARNING = True

# Requests for articles the archive holds are dropped before they are scheduled (the archive's
# index says which); known articles last fetched more than this many days ago are fetched again,
# and a changed text archived as a new version (None: never; 0: every run). `crawl --refetch-after`.
SPIDER_MIDDLEWARES = {"crawler.middlewares.KnownArticlesMiddleware": 100}
REFETCH_AFTER_DAYS: float | None = None
# An article page whose last fetch archived no row is fetched again next run if it failed (a 5xx,
# a timeout, an extraction that gave up); if it was no article, said noarchive or was refused
# (robots.txt, a 404, too large...), once this many days have passed, or REFETCH_AFTER_DAYS if fewer.
REVISIT_AFTER_DAYS: float = 30

# The archive: one connection per crawl (store, spool, index of what it holds), shared by the
# stages; and on a terminal, a live table per outlet instead of Scrapy's log (`crawl` sets PROGRESS).
EXTENSIONS = {
    "crawler.shared.extension.RedisCrawlExtension": -10,  # only with REDIS_URL
    "crawler.extensions.ArchiveExtension": 0,
    "crawler.capture.WarcExtension": 1,  # only with WARC_ENABLED
    "crawler.extensions.BugCounter": 5,
    "crawler.progress.ProgressExtension": 10,
}
# Scrapy's remote control runs any Python code sent to a local port, its token in a file under
# ~/.local/state that a killed run leaves behind; an unattended crawl has no use for it. It is
# left out of the built-in list rather than named None in EXTENSIONS: Scrapy 2.19 imports every
# class EXTENSIONS names, None or not, and this one imports aiohttp (0.09 s and 5 MB a start).
EXTENSIONS_BASE = {
    name: order
    for name, order in _SCRAPY_EXTENSIONS.items()
    if name != "scrapy.extensions.remote_control.RemoteControl"
}
PROGRESS = False
PROGRESS_INTERVAL = 0.5
# Many machines, one crawl (crawler/shared/): every worker started with the same REDIS_URL,
# archive and outlets shares one queue and seen-request filter (scrapy-redis). Empty: one process.
# A worker whose heartbeat stops for REDIS_WORKER_TIMEOUT seconds is dead: its requests go back.
REDIS_URL = ""
REDIS_WORKER_TIMEOUT = 60.0
# Requests are queued as JSON (never pickle); an entry that is no request of this crawl (not JSON,
# another shape, a URL off its outlets, over this size) is dropped unread: redis/dropped/<reason>.
REDIS_REQUEST_MAX_BYTES = 1024 * 1024
SCHEDULER = "crawler.shared.scheduler.CrawlScheduler"  # Scrapy's own when REDIS_URL is empty
# Every exchange (articles, listings, sitemaps, feeds, robots.txt) kept in WARC files beside the
# Parquet, rows pointing at their response record (crawler/capture.py); `crawl --no-warc` turns it off.
# Not kept: a page that says noarchive (with ROBOTS_NOARCHIVE_OBEY), and credential and cookie headers.
WARC_ENABLED = True
WARC_MAX_BYTES = 1_000_000_000  # a WARC rotates past this size (Heritrix's default)
# more request and response headers no WARC record keeps (names, any case): an API key or token of
# the operator's in DEFAULT_REQUEST_HEADERS (Authorization, Cookie and their kin are never kept)
WARC_HEADERS_REMOVED: list[str] = []

# The registry: the shipped file plus NEWSARCHIVE_OUTLETS_FILES; NEWSARCHIVE_OUTLETS restricts
# the crawl to some ids (empty: all).
NEWSARCHIVE_OUTLETS_FILES: list[str] = []
NEWSARCHIVE_OUTLETS: list[str] = []
NEWSARCHIVE_CRAWL_ID = ""  # empty: one is made from the start time

LOG_LEVEL = "INFO"
DEFAULT_DROPITEM_LOG_LEVEL = "INFO"  # drops are expected outcomes, counted in the summary
TELNETCONSOLE_ENABLED = False
REMOTE_CONTROL_ENABLED = False  # also for a run that names the extension in its own EXTENSIONS
