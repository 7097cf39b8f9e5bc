"""The item every stage reads and fills: the only contract between the stages.

The spider fills the fetch fields, extraction the article fields, language the language fields;
dedup sets the ids, the archive writer maps the result onto the Parquet schema (``pipelines.archive.schema``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass
class Article:
    # Fetch: set by the spider.
    url: str
    outlet_id: str
    outlet_name: str
    region: str
    outlet_timezone: str  # IANA zone for page dates printed without an offset
    body: bytes  # the page as received, decoded by the extraction stage
    http_status: int
    content_type: str
    header_charset: str | None  # charset named by the Content-Type header, if any
    fetched_at: datetime  # UTC
    crawl_id: str
    drop_selectors: tuple[str, ...] = ()  # the outlet's extraction hints
    body_selector: str | None = None
    redirected_from: str | None = None  # the URL requested, when a redirect led to url
    robots_headers: tuple[str, ...] = ()  # X-Robots-Tag headers of the response
    site_template: frozenset[int] = frozenset()  # blocks its site's pages share (extraction/template.py)
    learn_template: bool = False  # the analysis fills template_fingerprints, to learn the page
    warc_file: str | None = None  # where the response is kept as received (pipelines/archive/warc.py)
    warc_offset: int | None = None
    warc_length: int | None = None

    # Extraction.
    charset: str | None = None  # the encoding the page was decoded with
    canonical_url: str | None = None
    title: str | None = None
    authors: list[str] = field(default_factory=list)
    editor: str | None = None
    source: str | None = None  # the 来源 line: who first published the article
    section: str | None = None
    tags: list[str] = field(default_factory=list)
    published_at: datetime | None = None  # time-zone aware
    published_at_raw: str | None = None  # as printed on the page
    text: str | None = None  # paragraphs separated by one blank line
    not_article: str | None = None  # why the page holds no article: "empty", "too_short"
    extractor: str | None = None
    extractor_version: str | None = None
    template_fingerprints: list[int] | None = None  # the page's blocks, when learn_template

    # Dedup.
    article_id: str | None = None  # sha256 of the canonicalised canonical URL
    text_hash: str | None = None
    text_simhash: int | None = None  # set by dedup, for rows only
    version: int = 1  # + 1 for each changed text of the same article
    duplicate_of: str | None = None  # article id first archived with this text

    # Language.
    language: str | None = None  # ISO 639-1, or "und"
    language_script: str | None = None  # ISO 15924 (Hans/Hant) for Chinese
    language_confidence: float | None = None
    languages: list[tuple[str, float]] = field(default_factory=list)  # (language, share), largest first

    def __repr__(self) -> str:  # logs name the page, not its bytes
        return f"<Article {self.outlet_id} {self.url}>"
