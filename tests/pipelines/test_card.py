"""The dataset card's edge: an archive with nothing in it yet (the full card is tested with the
CLI in tests/test_archive_tools.py, and looked at in a headless browser)."""

from __future__ import annotations

from pipelines.card import write_card
from pipelines.catalog import Catalog
from pipelines.storage import LocalStore


def test_a_card_of_an_archive_with_no_article_yet_says_so(tmp_path):
    files = write_card(Catalog.read(LocalStore(tmp_path)), "empty", tmp_path / "card")
    assert [f.name for f in files] == ["articles-per-month.png", "languages.png", "README.md", "card.html"]
    assert "0 articles in 0 Parquet files" in (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
