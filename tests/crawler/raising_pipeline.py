"""An item pipeline with a bug: it raises on the first article (for tests/test_incremental.py)."""

from __future__ import annotations


class RaisingPipeline:
    def __init__(self) -> None:
        self.raised = False

    def process_item(self, item):
        if not self.raised:
            self.raised = True
            raise ZeroDivisionError("a bug in our own code")
        return item
