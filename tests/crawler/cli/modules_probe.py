"""An extension that writes, when the engine stops, the modules the crawl process imported (to
``MODULES_PROBE_FILE``, one per line; for tests/crawler/cli/test_crawl.py)."""

from __future__ import annotations

import sys
from pathlib import Path

from scrapy import signals


class ModulesProbe:
    def __init__(self, target: Path):
        self.target = target

    @classmethod
    def from_crawler(cls, crawler):
        probe = cls(Path(crawler.settings["MODULES_PROBE_FILE"]))
        crawler.signals.connect(probe.engine_stopped, signal=signals.engine_stopped)
        return probe

    def engine_stopped(self) -> None:
        self.target.write_text("\n".join(sorted(sys.modules)))
