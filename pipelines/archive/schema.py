"""The archive's Parquet schema, declared once; ``docs/SCHEMA.md`` is generated from it.

Regenerate the document after a change: ``python -m pipelines.archive.schema > docs/SCHEMA.md``
(a test fails while they differ). Adding a nullable column is a minor change; renaming,
removing or retyping one is a new ``SCHEMA_VERSION``.
"""

from __future__ import annotations

import pyarrow as pa

from pipelines.archive.keys import UNKNOWN_MONTH  # the published= key of rows without a publication date

SCHEMA_VERSION = "1.2"  # 1.1 added version, duplicate_of, text_simhash, redirected_from; 1.2 warc_*
SCHEMA_VERSIONS = ("1", "1.1", "1.2")  # what this code reads: every version it ever wrote
VERSION_KEY = "newsarchive.schema_version"  # the key-value metadata of every file that holds it
PARTITIONING = ("outlet", "published")  # directory keys: outlet=<outlet_id>/published=<YYYY-MM>

_UTC = pa.timestamp("us", tz="UTC")
_COLUMNS: list[tuple[str, pa.DataType, bool, str]] = [
    ("article_id", pa.string(), False, "sha256 hex of the canonicalised canonical URL; the row's key"),
    ("url", pa.string(), False, "URL the page was fetched from"),
    ("canonical_url", pa.string(), False, "the page's rel=canonical (or og:url), else url"),
    ("outlet_id", pa.string(), False, "registry id of the outlet"),
    ("outlet_name", pa.string(), False, "registry name of the outlet"),
    ("region", pa.string(), False, "ISO 3166 code of the region the outlet covers"),
    ("title", pa.string(), True, "headline, without the site name"),
    ("authors", pa.list_(pa.string()), False, "bylines; empty when the page names none"),
    ("editor", pa.string(), True, "responsible editor (责任编辑 / 责编 / Editor:)"),
    ("source", pa.string(), True, "original publisher named by the page (来源 / Source:)"),
    ("section", pa.string(), True, "section or column the page files the article under"),
    ("tags", pa.list_(pa.string()), False, "keywords or tags the page declares"),
    (
        "published_at",
        _UTC,
        True,
        "publication time in UTC; dates printed without an offset are read in the outlet's time zone",
    ),
    ("published_at_raw", pa.string(), True, "publication date as printed on the page"),
    ("fetched_at", _UTC, False, "when the page was fetched, UTC"),
    ("language", pa.string(), False, "ISO 639-1 code of the text's language, or und"),
    ("language_script", pa.string(), True, "ISO 15924 script for Chinese text: Hans or Hant"),
    (
        "language_confidence",
        pa.float32(),
        False,
        "0 to 1: the language's share of the text times the detector's probability; 0 when und",
    ),
    (
        "languages",
        pa.list_(
            pa.struct([pa.field("language", pa.string(), False), pa.field("share", pa.float32(), False)])
        ),
        False,
        "every language with at least 5% of the text and its share (CJK characters and other words "
        "count one token each), largest first; empty when und",
    ),
    ("text", pa.string(), False, "article text: paragraphs separated by one blank line"),
    ("text_hash", pa.string(), False, "sha256 hex of the text with white space folded"),
    ("text_chars", pa.int32(), False, "length of text in characters"),
    ("http_status", pa.int16(), False, "HTTP status of the fetched page"),
    ("content_type", pa.string(), True, "Content-Type header of the fetched page"),
    ("charset", pa.string(), False, "encoding the page was decoded with (Python codec name)"),
    ("crawl_id", pa.string(), False, "id of the run that archived the row"),
    (
        "extractor",
        pa.string(),
        False,
        "how the text was extracted: `trafilatura+readability` "
        "(trafilatura's lines checked against readability-lxml)",
    ),
    (
        "extractor_version",
        pa.string(),
        False,
        "newsarchive's version and the digest of its own extraction and language rules, then the "
        "libraries': `newsarchive 0.1.0 rules 1a2b3c4d5e6f, trafilatura 2.3.1, readability-lxml 0.9` "
        "(older rows: the libraries' only); rows not of today's value are those `reextract` may change",
    ),
    (
        "version",
        pa.int32(),
        True,
        "1 for an article's first text; a later fetch that finds the text changed (a correction) "
        "adds a row with the same article_id and version + 1; null in files of schema 1",
    ),
    (
        "duplicate_of",
        pa.string(),
        True,
        "article_id of the row first archived with the same text (text_hash) at another URL, in this "
        "outlet or another (a syndicated or wire copy); null when the text was new",
    ),
    (
        "text_simhash",
        pa.int64(),
        True,
        "64-bit SimHash of the text (3-grams of tokens; a CJK character or a word is a token): a copy "
        "with small edits differs in a few bits, unrelated texts in about 32; "
        "`bit_count(xor(a.text_simhash, b.text_simhash)) <= 8` in DuckDB finds copies",
    ),
    ("redirected_from", pa.string(), True, "the URL the crawl requested, when a redirect led to url"),
    (
        "warc_file",
        pa.string(),
        True,
        "key of the WARC holding the page's HTTP response as received, relative to the archive root "
        "(`_warc/<crawl_id>-<n>.warc.gz`); null when the crawl kept no WARC (`--no-warc`)",
    ),
    (
        "warc_offset",
        pa.int64(),
        True,
        "byte offset of the response record in warc_file: a range read of warc_length bytes from "
        "here is one gzip member, the whole record",
    ),
    ("warc_length", pa.int64(), True, "length in bytes of the response record in warc_file, compressed"),
]

SCHEMA = pa.schema(
    [pa.field(name, type_, nullable, metadata={"doc": doc}) for name, type_, nullable, doc in _COLUMNS],
    metadata={VERSION_KEY: SCHEMA_VERSION},
)

# The archive's index (pipelines/archive/index.py): one entry per URL that led to a row, or per article
# where no URL is known (rows of archives older than the index).
_INDEX_COLUMNS: list[tuple[str, pa.DataType, bool, str]] = [
    ("url_key", pa.string(), True, "sha256 hex of the canonicalised URL; null when no URL is known"),
    ("url", pa.string(), True, "the URL: a row's url, or its redirected_from"),
    (
        "article_id",
        pa.string(),
        True,
        "the article the URL led to; null when its fetch archived no row (`outcome`)",
    ),
    ("canonical_url", pa.string(), True, "the article's canonical URL"),
    ("text_hash", pa.string(), True, "text_hash of that version"),
    (
        "version",
        pa.int32(),
        True,
        "the version of the article that row holds (earlier versions keep their entries)",
    ),
    (
        "file",
        pa.string(),
        True,
        "key of the part that holds that version, relative to the archive root; null with an `outcome`",
    ),
    ("first_fetched", _UTC, True, "first fetch of the article through this URL"),
    ("last_fetched", _UTC, True, "last fetch, including fetches that found the text unchanged"),
    ("crawl_id", pa.string(), True, "the run that wrote the entry"),
    (
        "outcome",
        pa.string(),
        True,
        "null: the URL led to an archived row; else why its last fetch archived none "
        "(`not_article`, `noarchive`, `refused`, `failed`), which sets when it is fetched again",
    ),
]
INDEX_SCHEMA = pa.schema(
    [pa.field(name, type_, nullable, metadata={"doc": doc}) for name, type_, nullable, doc in _INDEX_COLUMNS]
)
# The index's columns before `outcome` was added (article_id and file then never null): still read.
FORMER_INDEX_SCHEMA = pa.schema(
    [
        field.with_nullable(field.name not in ("article_id", "file"))
        for field in INDEX_SCHEMA
        if field.name != "outcome"
    ]
)


def statistics_columns(schema: pa.Schema) -> list[str]:
    """The columns whose min/max statistics every file carries, for readers to skip files and row
    groups by: every scalar column but the article's text, whose min and max no filter uses (they
    were a sixth of a part of 13 rows). Lists and structs carry none."""
    return [field.name for field in schema if not pa.types.is_nested(field.type) and field.name != "text"]


def _table(columns: list[tuple[str, pa.DataType, bool, str]]) -> str:
    return "\n".join(
        f"| `{name}` | `{type_}` | {'yes' if nullable else 'no'} | {doc} |"
        for name, type_, nullable, doc in columns
    )


def markdown() -> str:
    """The schema as the Markdown table of ``docs/SCHEMA.md``."""
    return f"""# Archive schema (version {SCHEMA_VERSION})

Generated from `pipelines/archive/schema.py` by `python -m pipelines.archive.schema > docs/SCHEMA.md`.

The archive is a Hive-partitioned Parquet dataset (zstd, plain encoding, min/max statistics for
every scalar column but `text`):
`outlet=<outlet_id>/published=<YYYY-MM>/part-<crawl_id>-<n>.parquet`, with `published={UNKNOWN_MONTH}`
for rows without a publication date. Readers that use Hive partitioning get two more columns,
`outlet` and `published`, from the directory names. Every file carries the schema version in its
key-value metadata as `newsarchive.schema_version`, and each column's description as field
metadata `doc`. Each run is sealed by `_manifests/<crawl_id>.json`, which lists the files it
published, their rows, bytes, sha256, rows per language and article ids (see docs/archivists.md,
"Reading the archive"); a compaction's manifest also lists the files its own replace
(`supersedes`), which are no longer part of the dataset. Its `warcs` list the run's WARC files
under `_warc/` (key, bytes, sha256, records, and the `cdxj` index beside each): every HTTP
exchange of the run as received, which `warc_file`, `warc_offset` and `warc_length` point into.

| column | type | nullable | meaning |
|---|---|---|---|
{_table(_COLUMNS)}

## The index

`_index/` holds what the archive holds, for runs to read before they fetch anything (see
docs/operating.md, "Incremental runs"): `_index/delta-<crawl_id>.parquet-index`, one per run, published
before its manifest, and `_index/base-<crawl_id>.parquet-index`, deltas and smaller bases merged in
tiers (its key-value metadata `newsarchive.index.merged` lists the index files it replaces, and
`newsarchive.index.through` the newest manifest it accounts for: a run lists only the manifests
after it). A row with an `outcome` is no article: a URL whose last fetch archived no row, kept so
that it is not fetched again before its time. `_index/open-<crawl_id>.json` marks a run that has
published parts and is not sealed yet. They are Parquet, named so
that no `*.parquet` glob reads them: the article parts are the only files of the archive whose
names end in `.parquet` (but for parts of an unfinished run waiting in a local archive's hidden
`.spool/`), so `read_parquet('ARCHIVE/**/*.parquet')` reads the article rows alone. Archives
written before that name hold `_index/*.parquet`, which such a glob reads too: the next crawl, or
`newsarchive reindex`, renames them.

| column | type | nullable | meaning |
|---|---|---|---|
{_table(_INDEX_COLUMNS)}
"""


if __name__ == "__main__":
    print(markdown(), end="")
