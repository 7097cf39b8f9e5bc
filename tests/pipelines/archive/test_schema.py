from __future__ import annotations

import pyarrow as pa

from pipelines.archive.schema import SCHEMA, SCHEMA_VERSION, markdown
from tests.conftest import REPO


def test_schema_document_is_generated_from_the_module():
    assert (REPO / "docs" / "SCHEMA.md").read_text(encoding="utf-8") == markdown()


def test_every_column_is_documented_and_versioned():
    assert SCHEMA.metadata[b"newsarchive.schema_version"] == SCHEMA_VERSION.encode()
    for field in SCHEMA:
        assert field.metadata[b"doc"]


def test_required_columns_of_the_design():
    required = {
        "article_id",
        "url",
        "canonical_url",
        "outlet_id",
        "outlet_name",
        "region",
        "title",
        "authors",
        "editor",
        "source",
        "section",
        "tags",
        "published_at",
        "fetched_at",
        "language",
        "language_script",
        "language_confidence",
        "text",
        "text_hash",
        "http_status",
        "content_type",
        "charset",
        "crawl_id",
        "extractor",
        "extractor_version",
    }
    assert required <= set(SCHEMA.names)
    assert SCHEMA.field("published_at").type == pa.timestamp("us", tz="UTC")
