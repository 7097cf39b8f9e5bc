"""The outlets' templates in the archive: which keys hold them, and each read within its cap.

A crawl writes its own key per outlet (``_templates/<outlet>/<crawl id>.json``), merged from those
it found (``crawler/templates.py``); all are read, newest first."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from pipelines.archive.index import read_capped
from pipelines.archive.keys import TEMPLATE_FOLDER, is_key, shown
from pipelines.archive.storage import Store, StoreError
from pipelines.stages.extraction.template import SiteTemplate

logger = logging.getLogger(__name__)

# The largest template SiteTemplate.to_json writes: MAX_TEMPLATE fingerprints on TEMPLATE_PAGES articles
# and the rest of MAX_FINGERPRINTS on one fewer, every number at its longest, is 1,365,041 bytes
# (tests/pipelines/archive/test_templates.py). Past this, it is not read.
TEMPLATE_MAX_BYTES = 1_500_000
# An outlet's templates in the archive: a crawl's save merges them and never makes more; the
# newest are read, the older ones deleted (a store that refuses deletes keeps them, and no more
# is written).
TEMPLATES_PER_OUTLET = 4


def outlet_template_keys(store: Store, outlet_ids: Iterable[str]) -> list[str]:
    """The keys under these outlets' template folders: one listing each, none of the others'."""
    return [key for outlet_id in outlet_ids for key in store.object_keys(f"{TEMPLATE_FOLDER}/{outlet_id}/")]


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


def merged_template(store: Store, keys: list[str], problems: list[str]) -> tuple[SiteTemplate, list[str]]:
    """These templates merged, and the keys a template saved with it replaces: those merged, and
    those damaged. One damaged or that cannot be read is added to ``problems``; one that cannot
    be read stays."""
    merged, replaced = SiteTemplate(), []
    for key in keys:
        try:
            merged.merge(read_template(store, key))
        except StoreError as exc:
            problems.append(f"{shown(key)}: not read ({exc}); pages extracted without it")
            logger.warning("%s", problems[-1])
            continue
        except ValueError as exc:  # damaged: reported, and replaced by the next crawl's own
            problems.append(f"{exc}; not read")
            logger.warning("%s", problems[-1])
        replaced.append(key)
    return merged, replaced


def stored_templates(
    store: Store, outlet_ids: Iterable[str], problems: list[str]
) -> dict[str, frozenset[int]]:
    """Each outlet's template as the archive holds it (its newest :data:`TEMPLATES_PER_OUTLET`
    files merged): what a crawl, and ``reextract``, extract its pages with. What cannot be
    listed or read is added to ``problems`` (blocking: run it in a thread)."""
    outlet_ids = list(outlet_ids)
    try:
        kept, refused = newest_templates(outlet_template_keys(store, outlet_ids))
    except StoreError as exc:
        kept, refused = {}, []
        problems.append(f"the outlets' templates not listed ({exc}); pages extracted without")
        logger.warning("%s", problems[-1])
    for key in refused:
        problems.append(f"{shown(key)}: not a template's name; not read")
        logger.warning("%s", problems[-1])
    return {
        outlet_id: merged_template(store, kept[outlet_id][:TEMPLATES_PER_OUTLET], problems)[0].template()
        for outlet_id in outlet_ids
        if outlet_id in kept
    }
