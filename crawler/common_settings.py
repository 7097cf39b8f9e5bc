"""The settings of the archive and of the page workers, in a module without Scrapy.

:mod:`crawler.settings` (Scrapy's settings module) takes every one of them in, so a crawl and
``-s NAME=VALUE`` see them as before; the archivist commands (``ls``, ``verify``, ``pull``,
``compact``, ``reindex``, ``card``, ``reextract``) read them through
:class:`crawler.from_settings.PlainSettings` without importing Scrapy (0.5 s of every command's start).
"""

import os

# A page that says noarchive (robots meta tag, X-Robots-Tag) is not archived; counted, not lost
# silently. False archives it anyway (e.g. for an outlet that gave its permission).
ROBOTS_NOARCHIVE_OBEY = True

# The page workers: extraction and language, in worker processes (crawler.from_settings.page_pool).
EXTRACT_WORKERS = 0  # worker processes for extraction and language; 0: one per core
# set by `newsarchive crawl` (crawler/__main__.py), not by hand: workers it started before Scrapy
EXTRACT_STARTED_WORKERS: list = []
EXTRACT_TIMEOUT = 60.0  # seconds one page may take; past it the worker is killed and the page failed
EXTRACT_CPU_LIMIT = 20.0  # seconds of CPU one page may use; past it the worker stops it (failed, timeout)
EXTRACT_MIN_CHARS = 80
# A page of more links than this (news pages have up to 800) loses its link lists before
# extraction: a link farm of 200,000 took 19 to 98 s of CPU and 1.2 GB; now 1 to 2 s.
EXTRACT_MAX_LINKS = 2000
LANGUAGE_SEED = 0
LANGUAGE_SAMPLE_CHARS = 2000

ARCHIVE_URI = "output"  # a folder, file://... or s3://bucket/prefix
# where parts wait for the store; empty: <archive>/.spool, or output/.spools/s3-<bucket>-<digest> for
# s3://. A spool records its archive (archive.json): one recording another is refused.
ARCHIVE_SPOOL = ""
ARCHIVE_ROWS_PER_FILE = 5000  # a partition's rows become a part at this many rows,
ARCHIVE_BYTES_PER_FILE = 32 * 1024 * 1024  # or this much row data (strings, roughly),
ARCHIVE_PART_MAX_AGE = 600.0  # or when its oldest row has waited this many seconds
ARCHIVE_BUFFER_BYTES = 32 * 1024 * 1024  # row data held across all partitions; past it the largest goes
ARCHIVE_LEASE_SECONDS = 900.0  # a bucket's lock (pipelines/archive/lock.py): renewed every third of it
# A bucket's lease needs a store that refuses a second If-None-Match: * create (asked at each start);
# a store that does not is refused unless this is true (overlapping runs are then not kept apart).
ARCHIVE_ACCEPT_UNCONDITIONAL_WRITES = os.environ.get("NEWSARCHIVE_ACCEPT_UNCONDITIONAL_WRITES", "false")
ARCHIVE_MAX_PENDING_PARTS = 4  # parts queued for the archive thread before the crawl waits for it
ARCHIVE_S3_MULTIPART_THRESHOLD = 8 * 1024 * 1024  # s3transfer's defaults
ARCHIVE_S3_MULTIPART_CHUNKSIZE = 8 * 1024 * 1024
ARCHIVE_S3_CONNECT_TIMEOUT = 10.0
ARCHIVE_S3_READ_TIMEOUT = 60.0
