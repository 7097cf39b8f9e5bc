"""The outlets' templates in the archive: which keys hold them, and each read within its cap.

A crawl writes its own key per outlet (``_templates/<outlet>/<crawl id>.json``); the newest is read."""

from __future__ import annotations

from collections.abc import Iterable

from pipelines.archive.index import read_capped
from pipelines.archive.keys import is_key
from pipelines.archive.storage import Store
from pipelines.stages.extraction.template import SiteTemplate

# A template keeps each block fingerprint seen on two pages or more, with up to TEMPLATE_PAGES
# page numbers: a few hundred KB for the largest outlets. Past this, it is not read.
TEMPLATE_MAX_BYTES = 16 << 20


def newest_templates(keys: Iterable[str]) -> tuple[dict[str, list[str]], list[str]]:
    """Each outlet's template keys among ``keys`` (``pipelines.archive.keys.template_key``: each crawl
    writes its own, and crawl ids sort by time), newest first; and the keys that are no
    template's, never read."""
    found: dict[str, list[str]] = {}
    refused = []
    for key in sorted(keys, reverse=True):
        if is_key(key, "template"):
            found.setdefault(key.split("/")[1], []).append(key)
        else:
            refused.append(key)
    return found, refused


def read_template(store: Store, key: str) -> SiteTemplate:
    """The template ``key`` holds; ``ValueError`` naming it when it is too big or no template."""
    data = read_capped(store, key, TEMPLATE_MAX_BYTES)
    try:
        return SiteTemplate.from_json(data)
    except ValueError as exc:
        raise ValueError(f"{key}: {exc}") from None
