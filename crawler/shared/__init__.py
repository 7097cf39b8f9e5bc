"""Many machines, one crawl: Scrapy's queue and seen-request filter in Redis (scrapy-redis), and
what scrapy-redis leaves out: nothing lost when a worker dies, an end when the work is done.

Every ``newsarchive crawl --redis URL`` with the same archive and outlets joins the crawl in
progress there, or starts a new one (:func:`crawler.shared.extension.crawl_scope`: a folder is the
same archive only on the same host). What lives in Redis, under ``newsarchive:<crawl>:``:

- ``requests`` (sorted set, scrapy-redis's priority queue, each request in JSON: see
  :func:`crawler.shared.queue_entries.request_from_entry` for what a worker takes from it) and
  ``seen`` (set of request fingerprints, scrapy-redis's duplicate filter): the crawl's frontier, shared;
- ``held:<worker>`` (sorted set): each request a worker took, moved there from ``requests`` in
  the same atomic step (a Lua script), so a worker that dies (``kill -9``) holds its requests
  where the others find them: a worker whose ``alive:<worker>`` key (renewed every third of
  ``REDIS_WORKER_TIMEOUT``) has expired gets its held requests put back in ``requests``;
- ``claims`` (article id -> worker) and ``texts`` (text hash -> article id): an article is
  archived by one worker even when two reach it at once, and a copy names the first article
  with its text, across workers; a dead worker's claims are released with its requests;
- ``workers``, ``idle``, ``seeder``, ``seeded``, ``done``: who takes part, who has nothing in
  flight, who queued the start points. The crawl is done when start points are queued, the
  queue is empty and every worker is idle; then every worker exits, the last one removes the
  crawl's keys, and the next invocation starts a new crawl;
- ``templates`` (JSON: each outlet's template as the first worker read it from the archive,
  which every worker extracts with) and ``lock:templates:<outlet>`` (a token, with an expiry):
  the worker merging what it learned of the outlet into the archive at close
  (:meth:`~crawler.shared.state.RedisCrawl.lock`), one at a time.

A worker seals its own parts and manifest in the archive (same spool, publish, manifest steps
as a single process). What it held goes back to the queue unless the crawl ended: a worker
stopped early (SIGTERM) gives back what it had not finished, and keeps its claims on what its
manifest holds. Redis unavailable: every call waits and retries with a capped back-off, logged
(``PatientRetry``); with Redis persistence on (AOF), a restarted Redis loses nothing.

The modules, each importing only those before it:

- ``state``: :class:`~crawler.shared.state.RedisCrawl`, plain Python over a redis client, no Scrapy;
- ``queue_entries``: a request as a queue entry (JSON) and the checks of an entry taken;
- ``extension``, ``scheduler``: what the settings name (``EXTENSIONS``, ``SCHEDULER``), loaded by
  every crawl; they import no Redis client, and the rest only when a crawl has ``REDIS_URL``;
- ``redis_scheduler``: scrapy-redis's scheduler and queue, thin adapters over ``RedisCrawl``.
"""
