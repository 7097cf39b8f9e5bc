"""A worker target for tests/pipelines/runtime/test_pool.py: tasks that behave, hang, crash, raise or log."""

from __future__ import annotations

import fcntl
import logging
import os
import sys
import threading
from typing import Any


class Behaviour:
    def __init__(self, greeting: str = "hello"):
        self.greeting = greeting

    def __call__(self, task: tuple[str, Any]) -> Any:
        kind, value = task
        if kind == "echo":
            return f"{self.greeting} {value}"
        if kind == "modules":
            return sorted(name for name in sys.modules if name.split(".")[0] in value)
        if kind == "hang":
            threading.Event().wait()
        if kind == "spin":  # uses CPU until stopped
            while True:
                pass
        if kind == "pid":
            return os.getpid()
        if kind == "nice":
            return os.nice(0)
        if kind == "input pipe":  # the bytes the pipe from the pool holds
            return fcntl.fcntl(0, fcntl.F_GETPIPE_SZ)
        if kind == "exit":
            os._exit(value)
        if kind == "print":  # a library writing to stdout must not garble the protocol
            print(value)
            return value
        if kind == "warn":
            logging.getLogger("tests.pool_targets").warning("careful: %s", value)
            return value
        raise ValueError(f"no such task: {value}")


class TooDeepAnalyser:
    """Stands in for pipelines.stages.page.PageAnalyser: every page is one the parser could not read to
    its end, even flattened (no page can be since pipelines/stages/extraction/nesting.py; the verdict
    stays, should a parser ever count levels another way)."""

    def __call__(self, item: Any) -> Any:
        item.body = b""
        item.not_article = "too_deep"
        return item


class HangingAnalyser:
    """Stands in for pipelines.stages.page.PageAnalyser: every page hangs its worker."""

    def __call__(self, item: Any) -> Any:
        threading.Event().wait()


class CrashingAnalyser:
    """Stands in for pipelines.stages.page.PageAnalyser: every page kills its worker."""

    def __call__(self, item: Any) -> Any:
        os._exit(11)


class RaisingAnalyser:
    """Stands in for pipelines.stages.page.PageAnalyser: every page raises."""

    def __call__(self, item: Any) -> Any:
        raise ValueError(f"cannot read {item.url}")
