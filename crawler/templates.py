"""Each outlet's template (``pipelines/stages/extraction/template.py``), learned while the crawl runs.

Pages are extracted with what their outlet's template holds so far, and learned from. The first
pages of an outlet would get less of it than the last, so until an outlet has
``TEMPLATE_WARMUP_PAGES`` pages learned (earlier crawls' included: each outlet's template is
kept in the archive, ``_templates/<outlet>/<crawl id>.json``), its pages are held after their first
extraction, and extracted again with the template all of them taught (two passes over a small
buffer). Chosen over re-extraction at close, which would rewrite rows already published, and
over a bootstrap alone, which leaves an outlet's first crawl without one.

Holding pages holds their responses in Scrapy's scraper, so the buffer is let go:
- for an outlet, once it has its pages (``pages``);
- for the outlet holding the most, past ``TEMPLATE_WARMUP_BYTES`` of held pages, below the
  scraper's own limit (``SCRAPER_SLOT_MAX_ACTIVE_SIZE``), past which the crawl would wait for
  the held pages and they for it (``memory``);
- for all, when nothing else is downloading, scheduled or being scraped: an outlet of fewer
  pages; or when the scraper is full anyway, or the crawl is closing (``idle``). Scrapy signals
  no such moment while items are held, so the crawl's state is looked at every
  ``TEMPLATE_WARMUP_CHECK`` seconds while pages are held.
Counts ``template/held`` and ``template/released/<reason>`` (pages), ``template/reanalysed``.
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from scrapy.crawler import Crawler
from scrapy.statscollectors import StatsCollector

from crawler.extensions import note_damaged
from pipelines.archive.keys import TEMPLATE_FOLDER, shown, template_key
from pipelines.archive.lock import ensure_held
from pipelines.archive.storage import Store, StoreError
from pipelines.archive.templates import newest_templates, read_template
from pipelines.stages.extraction.template import SiteTemplate

logger = logging.getLogger(__name__)

# An outlet's templates a store that refuses deletes may keep (the newest is read): a crawl writes
# one per outlet it learned, which a year of hourly runs would make 8,760 without this bound.
TEMPLATES_PER_OUTLET = 4


def outlet_template_keys(store: Store, outlet_ids: list[str]) -> list[str]:
    """The keys under these outlets' template folders: one listing each, none of the others'."""
    return [key for outlet_id in outlet_ids for key in store.object_keys(f"{TEMPLATE_FOLDER}/{outlet_id}/")]


def _delete_older(store: Store, older: list[str]) -> bool:
    """Delete an outlet's older templates; False once the store refuses (they stay, and count)."""
    for key in older:
        try:
            ensure_held(store)
            store.delete(key)
        except StoreError as exc:
            logger.warning("%s not deleted (%s): older templates stay", key, exc)
            return False
    return True


class TemplateLearning:
    """The crawl's outlets' templates, and the gate that holds an outlet's first pages."""

    def __init__(
        self,
        stats: StatsCollector,
        warmup_pages: int,
        warmup_bytes: int,
        check_seconds: float,
        only_held_left: Callable[[int], bool],
    ):
        self.stats = stats
        self.warmup_pages = warmup_pages
        self.warmup_bytes = warmup_bytes
        self.check_seconds = check_seconds
        self.only_held_left = only_held_left  # True when the crawl waits for nothing but N held pages
        self.templates: dict[str, SiteTemplate] = defaultdict(SiteTemplate)
        self.learned: set[str] = set()  # outlets whose template learned a page this crawl
        self._held: dict[str, list[tuple[asyncio.Future[None], int]]] = defaultdict(list)
        self._held_bytes = 0
        self._check: asyncio.TimerHandle | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> TemplateLearning:
        settings = crawler.settings

        def only_held_left(held: int) -> bool:
            engine = crawler.engine
            if engine.needs_backout() and not engine.downloader.needs_backout():
                return True  # closing, or the scraper's memory is full: only releasing helps
            scraper = engine.scraper.slot
            idle = not engine.downloader.active and not engine.scheduler.has_pending_requests()
            return idle and not scraper.queue and len(scraper.active) <= held

        return cls(
            crawler.stats,
            settings.getint("TEMPLATE_WARMUP_PAGES"),
            settings.getint("TEMPLATE_WARMUP_BYTES"),
            settings.getfloat("TEMPLATE_WARMUP_CHECK"),
            only_held_left,
        )

    def load(self, store: Store, outlet_ids: list[str]) -> None:
        """Earlier crawls' templates of these outlets (blocking: run it in a thread). Only their
        folders are listed: a crawl of one outlet costs the same in an archive of a thousand."""
        try:
            kept, refused = newest_templates(outlet_template_keys(store, outlet_ids))
        except StoreError as exc:
            logger.warning("templates not read (%s); learned again", exc)
            return
        damaged = [f"{shown(key)}: not a template's name; not read" for key in refused]
        for problem in damaged:
            logger.warning("%s", problem)
        for outlet_id in outlet_ids:
            for key in kept.get(outlet_id, [])[:1]:
                try:
                    self.templates[outlet_id] = read_template(store, key)
                except StoreError as exc:
                    logger.warning("%s: %s; learned again", key, exc)
                except ValueError as exc:  # damaged: learned again, and reported
                    damaged.append(f"{exc}; learned again (newsarchive reindex removes it)")
                    logger.warning("%s", damaged[-1])
        note_damaged(self.stats, damaged)

    def save(self, store: Store, spool: Path, crawl_id: str) -> None:
        """Each learned outlet's template into the archive, then the older ones out (blocking);
        those that cannot be written are learned again next time. A store that refuses deletes
        keeps the older ones: past :data:`TEMPLATES_PER_OUTLET` of an outlet, no more is written
        (the newest stays the one read), so its folder stays bounded whatever the store allows."""
        spool.mkdir(parents=True, exist_ok=True)
        # a template that learned nothing this crawl is in the archive as it is: not written again
        learned = [o for o, template in self.templates.items() if template.pages and o in self.learned]
        try:
            kept = newest_templates(outlet_template_keys(store, learned))[0]
        except StoreError:
            kept = {}
        deletes = True  # until the store refuses one: then none is asked again this crawl
        for done, outlet_id in enumerate(learned):
            if len(kept.get(outlet_id, [])) >= TEMPLATES_PER_OUTLET:
                logger.warning(
                    "the template of %s not kept: %d of its templates stay (the store refused their "
                    "deletes); the newest is read, and learned from, by the next crawl",
                    outlet_id,
                    len(kept[outlet_id]),
                )
                continue
            with tempfile.NamedTemporaryFile(dir=spool, prefix="template-", delete=False) as handle:
                handle.write(self.templates[outlet_id].to_json())
            try:
                ensure_held(store)
                store.publish(Path(handle.name), template_key(outlet_id, crawl_id))
            except StoreError as exc:
                # the rest are not tried: each would wait out the same failing store (its
                # timeouts and retries) before the crawl could end
                left = ", ".join(learned[done:])
                logger.warning("the templates of %s not kept (%s); learned again next crawl", left, exc)
                return
            finally:
                Path(handle.name).unlink(missing_ok=True)
            deletes = deletes and _delete_older(store, kept.get(outlet_id, []))

    def template(self, outlet_id: str) -> frozenset[int]:
        return self.templates[outlet_id].template()

    def warming(self, outlet_id: str) -> bool:
        return self.templates[outlet_id].pages < self.warmup_pages

    def learn(self, outlet_id: str, fingerprints: list[int], article: str) -> None:
        self.templates[outlet_id].learn(fingerprints, article)
        self.learned.add(outlet_id)
        if not self.warming(outlet_id):
            self._release(outlet_id, "pages")

    async def hold(self, outlet_id: str, size: int) -> None:
        """Return once the outlet's first pages are learned, or the buffer is let go."""
        if not self.warming(outlet_id):
            return
        held = asyncio.get_running_loop().create_future()
        self._held[outlet_id].append((held, size))
        self._held_bytes += size
        self.stats.inc_value("template/held")
        if self._held_bytes > self.warmup_bytes:
            self._release(max(self._held, key=lambda o: sum(size for _, size in self._held[o])), "memory")
        self._watch()
        await held

    def release_all(self) -> None:
        for outlet_id in list(self._held):
            self._release(outlet_id, "idle")

    def _release(self, outlet_id: str, reason: str) -> None:
        for held, size in self._held.pop(outlet_id, []):
            self._held_bytes -= size
            self.stats.inc_value(f"template/released/{reason}")
            if not held.done():
                held.set_result(None)

    def _watch(self) -> None:
        if self._check is None and self._held:
            self._check = asyncio.get_running_loop().call_later(self.check_seconds, self._look)

    def _look(self) -> None:
        self._check = None
        if self.only_held_left(sum(map(len, self._held.values()))):
            self.release_all()
        self._watch()
