"""Libraries kept out of a process: ones that another library imports because they are installed,
for a feature no stage here uses, at a cost in memory and start-up paid in every process."""

from __future__ import annotations

import contextlib
import importlib.abc
import sys
from collections.abc import Iterator


class _Unimportable(importlib.abc.MetaPathFinder):
    def __init__(self, names: tuple[str, ...]):
        self.names = names

    def find_spec(self, fullname: str, path: object, target: object = None) -> None:
        if fullname.partition(".")[0] in self.names:
            raise ImportError(f"{fullname} is kept out of this process here", name=fullname)


@contextlib.contextmanager
def unimportable(*names: str) -> Iterator[None]:
    """``names`` (those not imported yet) fail to import in the ``with`` block, as if they were
    not installed; after it they import as usual."""
    finder = _Unimportable(tuple(name for name in names if name not in sys.modules))
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
