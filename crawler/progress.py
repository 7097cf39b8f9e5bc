"""A live progress table on a terminal, in place of Scrapy's log.

rich is imported only when the table is shown: Scrapy imports every extension its settings
name, and rich's import (18-24 ms, 53 modules) would delay every crawl's start, the unattended
ones (cron, ``--quiet``, no terminal) included.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from scrapy import signals
from scrapy.crawler import Crawler
from scrapy.exceptions import NotConfigured

from crawler.report import FIGURES, outlet_figures

LIVE_COLUMNS = tuple(figure.name for figure in FIGURES if figure.in_live_table)

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table


class ProgressExtension:
    """On a terminal, a live table of each outlet's progress (:data:`LIVE_COLUMNS`: figures of the
    run's summary, by the same names) in place of Scrapy's log; warnings and errors still print,
    above it.

    Enabled by ``PROGRESS`` (``newsarchive crawl`` sets it when stderr is a terminal and the run
    is not ``--quiet``); refreshed every ``PROGRESS_INTERVAL`` seconds from the crawl's stats.
    """

    def __init__(self, crawler: Crawler, interval: float):
        self.crawler = crawler
        self.interval = interval
        self._live: Live | None = None
        self._handlers: list[logging.Handler] = []
        self._task: asyncio.Task[None] | None = None

    @classmethod
    def from_crawler(cls, crawler: Crawler) -> ProgressExtension:
        if not crawler.settings.getbool("PROGRESS"):
            raise NotConfigured  # PROGRESS is off (a reason would be logged as a WARNING every run)
        extension = cls(crawler, crawler.settings.getfloat("PROGRESS_INTERVAL", 0.5))
        crawler.signals.connect(extension.spider_opened, signal=signals.spider_opened)
        crawler.signals.connect(extension.spider_closed, signal=signals.spider_closed)
        crawler.signals.connect(extension.give_back_the_log, signal=signals.engine_stopped)
        return extension

    def take_the_log(self) -> None:
        """Scrapy's log handlers out, one that prints above the live table in (until the engine
        stops)."""
        from rich.console import Console
        from rich.logging import RichHandler

        self.console = Console(stderr=True)
        root = logging.getLogger()
        self._handlers = [h for h in root.handlers if isinstance(h, logging.StreamHandler)]
        rich_handler = RichHandler(console=self.console, show_path=False)
        rich_handler.setLevel(min((h.level for h in self._handlers), default=logging.WARNING))
        for handler in self._handlers:
            root.removeHandler(handler)
        root.addHandler(rich_handler)
        self._handlers.append(rich_handler)  # the last one: to take out again

    def give_back_the_log(self) -> None:
        root = logging.getLogger()
        root.removeHandler(self._handlers.pop())
        for handler in self._handlers:
            root.addHandler(handler)

    def spider_opened(self) -> None:
        from rich.live import Live

        self.take_the_log()  # not earlier: Scrapy installs its handler again as the crawl starts
        self._live = Live(self.table(), console=self.console, refresh_per_second=4)
        self._live.start()
        self._task = asyncio.ensure_future(self._refresh())

    def spider_closed(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._live is not None:
            self._live.update(self.table())
            self._live.stop()

    def table(self) -> Table:
        from rich.table import Table

        stats = self.crawler.stats.get_stats()
        table = Table("outlet", *LIVE_COLUMNS, box=None)
        for figures in outlet_figures(stats, self.crawler.settings.getlist("NEWSARCHIVE_OUTLETS")):
            table.add_row(figures.outlet_id, *(str(figures.figure(name)) for name in LIVE_COLUMNS))
        return table

    async def _refresh(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self._live.update(self.table())
