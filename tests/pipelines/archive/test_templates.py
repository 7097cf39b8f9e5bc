"""The outlets' templates in the archive (``pipelines/archive/templates.py``)."""

from __future__ import annotations

from pipelines.archive.keys import template_key
from pipelines.archive.storage import LocalStore
from pipelines.archive.templates import TEMPLATE_MAX_BYTES, read_template
from pipelines.stages.extraction.template import (
    MAX_FINGERPRINTS,
    MAX_PAGES,
    MAX_TEMPLATE,
    TEMPLATE_PAGES,
    SiteTemplate,
)


def test_the_largest_template_a_crawl_keeps_is_read_back_and_near_the_cap(tmp_path):
    """Every fingerprint it may keep, each on as many articles as it keeps, at their longest:
    the cap is what a bounded file can be, a little above."""
    longest = tuple(2**64 - TEMPLATE_PAGES + n for n in range(TEMPLATE_PAGES))  # sorted, as kept
    seen_on = {2**64 - 1 - k: longest for k in range(MAX_TEMPLATE + 10)}  # 10 more than are kept
    seen_on |= {2**63 + k: longest[:-1] for k in range(MAX_FINGERPRINTS)}
    data = SiteTemplate(pages=MAX_PAGES, seen_on=seen_on).to_json()
    assert 0.9 * TEMPLATE_MAX_BYTES < len(data) <= TEMPLATE_MAX_BYTES
    (tmp_path / "spool").mkdir()
    (tmp_path / "spool" / "t.json").write_bytes(data)
    store = LocalStore(tmp_path / "archive")
    key = template_key("aa-outlet", "20261206T000000Z-000000")
    store.publish(tmp_path / "spool" / "t.json", key)
    back = read_template(store, key)
    assert len(back.seen_on) == MAX_FINGERPRINTS and len(back.template()) == MAX_TEMPLATE
    assert back.to_json() == data
