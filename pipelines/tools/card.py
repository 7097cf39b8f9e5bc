"""The dataset card: what the archive holds, for someone who finds it years later.

``newsarchive card`` writes ``README.md`` (Markdown, its charts beside it as PNG files) and
``card.html`` (one self-contained page: the charts are embedded, nothing is fetched) from the
same content: coverage, rows and the distinct articles they hold, outlets with the licence and
crawl policy their registry entries state, the language mix, charts of rows per outlet per
month and of the languages, what the archive does not say (limitations), code that loads it in
DuckDB, Polars and pandas, the extractor versions of its rows, and the schema with each column's
documentation (from :data:`pipelines.archive.schema.SCHEMA`, the one place it is declared).
``README.md`` opens with a YAML header in the Hugging Face dataset-card format (licence,
languages, size, the data files' glob), so the archive's folder with this file at its root can
be published there as it is. Everything comes from the manifests (:mod:`pipelines.archive.catalog`)
and what the caller passes of the registry (this tool reads no registry); no Parquet file is read.

The manifests may come from elsewhere: every string read from them (outlets, months, languages,
dates) is shown as text, never read as markup. :func:`_text` folds it to one line of at most
:data:`MAX_CHARS` characters, entity-encodes HTML's special characters and backslash-escapes
Markdown's, so it cannot open a tag, a link, an image, a heading, a table cell or a code span,
nor become a link by itself (GitHub's autolinks); ``card.html`` is rendered from that Markdown.
In the YAML header such a string is a double-quoted scalar (:func:`_yaml_string`); in the loading
code, a JSON string literal, which Python reads as the same string.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePath

from pipelines.archive.catalog import Catalog
from pipelines.archive.keys import UNKNOWN_MONTH
from pipelines.archive.manifest import ArchivedFile
from pipelines.archive.schema import PARTITIONING, SCHEMA, SCHEMA_VERSION
from pipelines.runtime.jsondata import one_line
from pipelines.stages.extraction.provenance import EXTRACTOR_VERSION
from pipelines.stages.language import SHORT_WORDS

CHARTS = {"per_month": "articles-per-month.png", "languages": "languages.png"}
MAX_CHARS = 200  # of one string from the archive; a longer one is cut, with "…"
MAX_LABEL_CHARS = 40  # of one in a chart, whose layout has room for no more
NOT_STATED = "not stated"  # a licence or crawl policy the outlet's registry entry does not state
NOT_IN_REGISTRY = "not in the registry"  # an outlet of the archive the registry does not know
# the article parts and nothing else (the archive's own files are under "_" folders; a part being
# written has a dot name ending in .tmp): what the loading code and the YAML header's data_files read
DATA_GLOB = "/".join(f"{key}=*" for key in PARTITIONING) + "/*.parquet"
# Hugging Face's size categories, by rows: the first whose bound is above the count
_SIZE_CATEGORIES = [
    (1_000, "n<1K"),
    (10_000, "1K<n<10K"),
    (100_000, "10K<n<100K"),
    (1_000_000, "100K<n<1M"),
    (10_000_000, "1M<n<10M"),
    (100_000_000, "10M<n<100M"),
    (1_000_000_000, "100M<n<1B"),
]
_LANGUAGE_CODE = re.compile(r"[a-z]{2,3}")  # what the YAML header lists of the rows' languages

# Markdown's punctuation, backslash-escaped in text from the archive: all of CommonMark's but
# "-", ",", ";", "%", "?" and "/", which open nothing in the middle of a line (a "-" that starts
# one, a list item, is escaped too); ":", "." and "@" included, so no URL, domain or address is linked
_MARKDOWN_SPECIAL = re.compile(r"([!#$()*+.:=@\[\\\]^_`{|}~])")
# in card.html, the Markdown written here: a backslash escape, a code span, or text
_MARKDOWN_INLINE = re.compile(r"\\([!-/:-@\[-`{-~])|`([^`]*)`")


@dataclass(frozen=True)
class OutletTerms:
    """What the registry states of an outlet: the card shows it beside the outlet's figures."""

    name: str
    timezone: str  # dates printed without an offset were read in it
    licence: str | None = None  # None: not stated
    crawl_policy: str | None = None


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Snippet:
    """Code that loads the archive, shown after a line saying what it does."""

    caption: str
    code: str


@dataclass
class Section:
    title: str
    text: str = ""  # Markdown paragraphs, separated by a blank line
    table: Table | None = None
    chart: str | None = None  # a key of CHARTS
    snippets: list[Snippet] = field(default_factory=list)


@dataclass
class Articles:
    """Distinct article ids among rows, as the manifests state them."""

    ids: set[str] = field(default_factory=set)
    unstated: int = 0  # rows of files whose manifests do not state their article ids

    def add(self, file: ArchivedFile) -> None:
        if file.article_ids is not None and len(file.article_ids) == file.rows:
            self.ids.update(file.article_ids)
        else:
            self.unstated += file.rows

    def __str__(self) -> str:
        if not self.unstated:
            return f"{len(self.ids):,}"
        return f"at least {len(self.ids):,}" if self.ids else "not stated"


def write_card(
    catalog: Catalog,
    location: str,
    out: Path,
    title: str | None = None,
    outlets: Mapping[str, OutletTerms] | None = None,
) -> list[Path]:
    """The card of the archive at ``location`` (a folder's absolute path or ``s3://bucket/prefix``,
    no secret in it) in ``out``, titled ``title`` or the archive's name; ``outlets``: what the
    registry states of each outlet. The files written."""
    summary = catalog.summary()
    name = title or archive_name(location)
    sections = _sections(summary, catalog.files, name, location, outlets or {})
    charts = _charts(summary)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, png in charts.items():
        (out / CHARTS[key]).write_bytes(png)
        written.append(out / CHARTS[key])
    (out / "README.md").write_text(
        _header(summary, name, outlets or {}) + _markdown(sections, name), encoding="utf-8"
    )
    (out / "card.html").write_text(_html(sections, name, charts), encoding="utf-8")
    return [*written, out / "README.md", out / "card.html"]


def archive_name(location: str) -> str:
    """What a card is titled by: a folder's name, or an S3 archive's bucket and prefix."""
    if location.startswith("s3://"):
        return location.removeprefix("s3://")
    return PurePath(location).name or location


def _sections(
    summary: dict, files: list[ArchivedFile], name: str, location: str, outlets: Mapping[str, OutletTerms]
) -> list[Section]:
    dated = sorted(m for m in summary["months"] if m != UNKNOWN_MONTH)
    undated = summary["months"].get(UNKNOWN_MONTH, 0)
    runs = [run for run in summary["runs"] if not run["compaction"]]
    coverage = f"published {_text(dated[0])} to {_text(dated[-1])}" if dated else "no dated article"
    crawled = (
        f"crawled from {_text(min(str(r['started_at'] or '') for r in runs)[:10])} to "
        f"{_text(max(str(r['finished_at'] or r['started_at'] or '') for r in runs)[:10])} in {len(runs)} runs"
        if runs
        else "no run yet"
    )
    articles, per_outlet = Articles(), defaultdict(Articles)
    for file in files:
        articles.add(file)
        per_outlet[file.outlet].add(file)
    overview = (
        f"{_text(name)}: {summary['rows']:,} rows of {articles} articles in {summary['files']:,} Parquet "
        f"files ({summary['bytes'] / 1e6:,.1f} MB), {len(summary['outlets'])} outlets, {coverage}"
        f"{f' ({undated:,} without a date)' if undated else ''}; {crawled}. Schema version {SCHEMA_VERSION}."
        "\n\nA row is one text of one article: when a later fetch finds an article's text changed, the "
        "new text is one more row with the same `article_id` and the next `version`, so an archive holds "
        "more rows than articles; the same text found at another URL is an article of its own, whose "
        "`duplicate_of` names the first."
        + (
            f" The manifests of {articles.unstated:,} rows do not state their article ids: not counted."
            if articles.unstated
            else ""
        )
    )
    total = summary["rows"] or 1
    return [
        Section("Overview", overview),
        Section(
            "Outlets",
            table=Table(
                ["outlet", "name", "rows", "articles", "files", "months", "languages"],
                [
                    [
                        _text(outlet),
                        _text(outlets[outlet].name) if outlet in outlets else NOT_IN_REGISTRY,
                        f"{o['rows']:,}",
                        str(per_outlet[outlet]),
                        f"{o['files']:,}",
                        _span(sorted(o["months"])),
                        ", ".join(f"{_text(code)} {rows:,}" for code, rows in o["languages"].items()),
                    ]
                    for outlet, o in summary["outlets"].items()
                ],
            ),
        ),
        Section(
            "Licence and crawl policy",
            "What each outlet's entry in the registry of the crawl states of reusing its articles and of "
            f"crawling its site ({NOT_STATED}: the entry says nothing, and nothing is assumed: ask the "
            "outlet before republishing its text); and the time zone its dates printed without one were "
            "read in.",
            Table(
                ["outlet", "licence", "crawl policy", "time zone"],
                [_terms(outlet, outlets.get(outlet)) for outlet in summary["outlets"]],
            ),
        ),
        Section("Rows per outlet and month", chart="per_month"),
        Section(
            "Languages",
            "The language of each row's text (ISO 639-1; `und`: undetermined; `?`: counted "
            "before manifests recorded languages).",
            Table(
                ["language", "rows", "share"],
                [
                    [_text(code), f"{rows:,}", f"{rows / total:.1%}"]
                    for code, rows in summary["languages"].items()
                ],
            ),
            chart="languages",
        ),
        Section(
            "Loading",
            f"Every row is in a Parquet part under `{DATA_GLOB}` (Hive-partitioned: `outlet` and "
            "`published`, the month of publication in UTC or `unknown`); the archive's own files are in "
            "folders whose names start with `_`, which these read nothing of. Each block loads all rows "
            "as `rows`, then the latest version of each article as `articles`.",
            snippets=_snippets(location),
        ),
        Section("Limitations", _LIMITATIONS),
        Section(
            "Provenance",
            "How the rows were extracted (`extractor_version`: newsarchive's version and the digest of its "
            "extraction and language rules, then the libraries'), by the files that hold them. The "
            f"newsarchive that wrote this card extracts with `{EXTRACTOR_VERSION}`: rows of another value "
            "are those `newsarchive reextract` would extract again with other rules or libraries.",
            Table(["extractor version", "files"], _provenance(files)),
        ),
        Section(
            "Schema",
            "Hive-partitioned: `outlet=<outlet_id>/published=<YYYY-MM>/part-*.parquet` (zstd); each run "
            "sealed by `_manifests/<crawl_id>.json`, which lists its files with their sha256.",
            Table(
                ["column", "type", "nullable", "meaning"],
                [
                    [f"`{f.name}`", f"`{f.type}`", "yes" if f.nullable else "no", f.metadata[b"doc"].decode()]
                    for f in SCHEMA
                ],
            ),
        ),
    ]


# facts of this pipeline a reader of the rows cannot see in them
_LIMITATIONS = "\n\n".join(
    [
        "Coverage: a run reads what the outlets' sitemaps, feeds and listing pages link to when it runs "
        "(each bounded: listing pages, links per run); an article no longer linked, or removed, before a "
        "run is not in the archive, and a time without runs is a gap. The crawl obeys robots.txt: pages it "
        "disallows are missing, and so are pages that ask not to be archived (robots `noarchive`).",
        "Extraction: the text is the lines trafilatura and readability-lxml agree on, after rules that "
        "remove page furniture; a page can lose a paragraph or keep a caption or a line of furniture. A "
        "page with less paragraph text than the crawl's `EXTRACT_MIN_CHARS` holds no article: no row.",
        f"Language: detected from the text itself; a text of fewer than {SHORT_WORDS} words is guessed "
        "from little (`language_confidence` says how sure), and a text of no language is `und`.",
        "Dates: `published_at` is what the page states, in UTC; a date printed without an offset was read "
        "in the outlet's time zone (above), and one printed without a time is midnight there: east of UTC, "
        "an article dated the first of a month is in the previous month's `published` partition. A page "
        "that states no date has none: its rows are in `published=unknown`.",
        "Versions and copies: an article fetched again gets a row only when its text changed, so edits "
        "between two fetches are not seen. `duplicate_of` marks the same text exactly; a copy with small "
        "edits is found by `text_simhash`.",
        "Files: while a `newsarchive compact` runs, or after one was stopped before its deletions, a "
        "partition holds its old and new parts together and a glob reads both (the next `compact` deletes "
        "the old); `newsarchive pull` goes by the manifests and reads each row once.",
    ]
)


def _terms(outlet: str, terms: OutletTerms | None) -> list[str]:
    if terms is None:
        return [_text(outlet), NOT_IN_REGISTRY, NOT_IN_REGISTRY, NOT_IN_REGISTRY]
    return [
        _text(outlet),
        _text(terms.licence) if terms.licence else NOT_STATED,
        _text(terms.crawl_policy) if terms.crawl_policy else NOT_STATED,
        _text(terms.timezone),
    ]


def _provenance(files: Iterable[ArchivedFile]) -> list[list[str]]:
    counts = Counter(version for file in files for version in file.extractor_versions or ("not recorded",))
    return [[_text(version), f"{count:,}"] for version, count in counts.most_common()]


# The loading code, per library: for a folder, and for an S3 archive (keys, region and
# AWS_ENDPOINT_URL from the environment, as a crawl reads them); ARCHIVE: the location, GLOB:
# DATA_GLOB. Each reads every row as ``rows``, then the latest version of each article as ``articles``.
_DUCKDB_ROWS = """rows = duckdb.read_parquet(f"{archive}/GLOB", hive_partitioning=True)
articles = duckdb.sql(
    "SELECT * FROM rows QUALIFY row_number() OVER (PARTITION BY article_id ORDER BY version DESC) = 1"
)
"""
_POLARS_ARTICLES = 'articles = rows.sort("version").group_by("article_id").last().collect()\n'
_PANDAS_ARTICLES = 'articles = rows.sort_values("version").drop_duplicates("article_id", keep="last")\n'
_LOADING = {
    "DuckDB": (
        "import duckdb\n\narchive = ARCHIVE\n" + _DUCKDB_ROWS,
        """import duckdb

archive = ARCHIVE
# httpfs and aws, downloaded on first use, read the bucket with the keys the AWS tools find; another
# store: CREATE SECRET (TYPE s3, KEY_ID '...', SECRET '...', ENDPOINT 'host:port', URL_STYLE 'path')
duckdb.sql("INSTALL httpfs; LOAD httpfs; INSTALL aws; LOAD aws")
duckdb.sql("CREATE SECRET (TYPE s3, PROVIDER credential_chain)")
"""
        + _DUCKDB_ROWS,
    ),
    "Polars": (
        """import polars as pl

archive = ARCHIVE
rows = pl.scan_parquet(f"{archive}/GLOB", hive_partitioning=True)
"""
        + _POLARS_ARTICLES,
        """import os

import polars as pl

archive = ARCHIVE
endpoint = os.environ.get("AWS_ENDPOINT_URL")  # None: AWS itself
options = {"aws_endpoint_url": endpoint, "aws_allow_http": "true"} if endpoint else {}
rows = pl.scan_parquet(f"{archive}/GLOB", hive_partitioning=True, storage_options=options)
"""
        + _POLARS_ARTICLES,
    ),
    "pandas (with pyarrow)": (
        """import pandas as pd

archive = ARCHIVE
rows = pd.read_parquet(archive)  # pyarrow skips the folders whose names start with "_"
"""
        + _PANDAS_ARTICLES,
        """import os

import pandas as pd
import pyarrow.fs

archive = ARCHIVE
s3 = pyarrow.fs.S3FileSystem(endpoint_override=os.environ.get("AWS_ENDPOINT_URL"))  # None: AWS itself
rows = pd.read_parquet(archive.removeprefix("s3://"), filesystem=s3)  # skips the folders named "_..."
"""
        + _PANDAS_ARTICLES,
    ),
}


def _snippets(location: str) -> list[Snippet]:
    """Code that loads the rows at ``location``: Python source in which the location is a JSON
    string literal (any character escaped that could end the string or the line)."""
    on_s3 = location.startswith("s3://")
    literal = json.dumps(location)  # after GLOB is replaced: the location may hold the word
    return [
        Snippet(
            f"{library}:", (s3 if on_s3 else local).replace("GLOB", DATA_GLOB).replace("ARCHIVE", literal, 1)
        )
        for library, (local, s3) in _LOADING.items()
    ]


def _span(months: list[str]) -> str:
    if not months:
        return ""
    return _text(months[0]) if len(months) == 1 else f"{_text(months[0])} to {_text(months[-1])}"


def _text(value: object) -> str:
    """A string from the archive as Markdown text that shows it and does nothing else."""
    text = html.escape(_MARKDOWN_SPECIAL.sub(r"\\\1", one_line(value, MAX_CHARS)))
    return "\\" + text if text.startswith("-") else text


def _label(value: object) -> str:
    """A string from the archive as a chart label: one line, no mathtext (``$...$``)."""
    return one_line(value, MAX_LABEL_CHARS).replace("$", r"\$")


def _header(summary: dict, name: str, outlets: Mapping[str, OutletTerms]) -> str:
    """The YAML header of a Hugging Face dataset card: ``unknown`` licence unless every outlet's
    entry states one (then ``other``: the card's table says which), the rows' languages, size,
    and the data files (the article parts: the archive's own files do not match)."""
    stated = summary["outlets"] and all(
        outlet in outlets and outlets[outlet].licence for outlet in summary["outlets"]
    )
    languages = [code for code in summary["languages"] if _LANGUAGE_CODE.fullmatch(code) and code != "und"]
    size = next((label for bound, label in _SIZE_CATEGORIES if summary["rows"] < bound), "n>1B")
    lines = ["---", f"pretty_name: {_yaml_string(one_line(name, MAX_CHARS))}"]
    lines.append(f"license: {'other' if stated else 'unknown'}")
    if languages:
        lines += ["language:", *(f"- {code}" for code in languages)]
    lines += ["size_categories:", f"- {_yaml_string(size)}", "tags:", "- news"]
    lines += ["configs:", "- config_name: default", "  data_files:", "  - split: train"]
    lines += [f"    path: {_yaml_string(DATA_GLOB)}", "---", "", ""]
    return "\n".join(lines)


def _yaml_string(value: str) -> str:
    """``value`` as a double-quoted YAML scalar: printable characters as they are, ``"`` and
    ``\\`` escaped, anything else (controls, line and paragraph separators) as ``\\u``/``\\U``."""
    out = []
    for char in value:
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        else:
            out.append(f"\\u{ord(char):04x}" if ord(char) <= 0xFFFF else f"\\U{ord(char):08x}")
    return '"' + "".join(out) + '"'


def _charts(summary: dict) -> dict[str, bytes]:
    """The PNG charts: rows per month, stacked by outlet; and the language mix."""
    import matplotlib

    matplotlib.use("Agg")  # no display: files only
    import matplotlib.pyplot as plt

    months = sorted(summary["months"])
    figure, axes = plt.subplots(figsize=(10, 4.5), dpi=100)
    bottom = [0] * len(months)
    for name, outlet in summary["outlets"].items():
        counts = [outlet["months"].get(month, 0) for month in months]
        axes.bar([_label(month) for month in months], counts, bottom=bottom, label=_label(name))
        bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
    axes.set_ylabel("rows")
    axes.set_xlabel("month of publication (UTC)")
    axes.tick_params(axis="x", labelrotation=60)
    if summary["outlets"]:  # an archive with no article yet has no outlet to name
        axes.legend(fontsize="small", ncols=2)
    axes.set_title("Rows per outlet and month")
    per_month = _png(figure)

    languages = summary["languages"]
    figure, axes = plt.subplots(figsize=(6, 1.6 + 0.35 * len(languages)), dpi=100)
    axes.barh([_label(code) for code in languages][::-1], list(languages.values())[::-1], color="tab:green")
    axes.set_xlabel("rows")
    axes.set_title("Language mix")
    return {"per_month": per_month, "languages": _png(figure)}


def _png(figure: object) -> bytes:
    import matplotlib.pyplot as plt

    sink = io.BytesIO()
    figure.tight_layout()
    figure.savefig(sink, format="png")
    plt.close(figure)
    return sink.getvalue()


def _markdown(sections: list[Section], name: str) -> str:
    lines = [f"# {_text(name)}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        for snippet in section.snippets:
            fence = "`" * max(3, 1 + max(map(len, re.findall("`+", snippet.code)), default=0))
            lines += [snippet.caption, "", f"{fence}python", snippet.code.rstrip("\n"), fence, ""]
        if section.chart:
            lines += [f"![{section.title}]({CHARTS[section.chart]})", ""]
        if section.table:
            lines.append(_markdown_row(section.table.headers))
            lines.append("|" + "---|" * len(section.table.headers))
            lines += [_markdown_row(row) for row in section.table.rows]
            lines.append("")
    return "\n".join(lines)


def _html(sections: list[Section], name: str, charts: dict[str, bytes]) -> str:
    body = [f"<h1>{_inline(_text(name))}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        body += [f"<p>{_inline(paragraph)}</p>" for paragraph in section.text.split("\n\n") if paragraph]
        for snippet in section.snippets:
            body.append(
                f"<p>{_inline(snippet.caption)}</p><pre><code>{html.escape(snippet.code)}</code></pre>"
            )
        if section.chart:
            data = base64.b64encode(charts[section.chart]).decode()
            body.append(f'<img alt="{html.escape(section.title)}" src="data:image/png;base64,{data}">')
        if section.table:
            head = "".join(f"<th>{html.escape(h)}</th>" for h in section.table.headers)
            rows = "".join(_html_row(row) for row in section.table.rows)
            body.append(f"<table><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>")
    style = (
        "body{font-family:sans-serif;max-width:70em;margin:2em auto;color:#222}"
        "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}"
        "code{background:#f3f3f3}pre{background:#f3f3f3;padding:.6em;overflow-x:auto}img{max-width:100%}"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>{_inline(_text(name))}: dataset card</title><style>{style}</style></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )


def _markdown_row(cells: list[str]) -> str:
    """A table row; its cells are Markdown already, any "|" of the archive's escaped by _text."""
    return "| " + " | ".join(cells) + " |"


def _html_row(cells: list[str]) -> str:
    return "<tr>" + "".join(f"<td>{_inline(cell)}</td>" for cell in cells) + "</tr>"


def _inline(text: str) -> str:
    """The Markdown written here as HTML: backslash escapes, code spans, text (whose entities
    stay as they are, and whose other "&", "<" and ">" are escaped)."""
    out, position = [], 0
    for match in _MARKDOWN_INLINE.finditer(text):
        out.append(html.escape(html.unescape(text[position : match.start()])))
        escaped, code = match.groups()
        out.append(html.escape(escaped) if escaped is not None else f"<code>{html.escape(code)}</code>")
        position = match.end()
    out.append(html.escape(html.unescape(text[position:])))
    return "".join(out)
