"""A worker target for tests/pipelines/stages/test_page.py: the crawl's page analyser, answering with the
page's language and which of the named libraries its worker has imported by then."""

from __future__ import annotations

import sys
from typing import Any

from pipelines.stages.page import PageAnalyser


class ModulesAfterPage(PageAnalyser):
    def __call__(self, task: Any) -> Any:
        item, names = task
        language = super().__call__(item).language
        return language, sorted({name.partition(".")[0] for name in sys.modules} & set(names))
