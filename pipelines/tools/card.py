"""The dataset card: what the archive holds, for someone who finds it years later.

``newsarchive card`` writes ``README.md`` (Markdown, its charts beside it as PNG files) and
``card.html`` (one self-contained page: the charts are embedded, nothing is fetched) from the
same content: coverage, rows and bytes, outlets, the language mix, charts of articles per outlet
per month and of the languages, and the schema with each column's documentation (from
:data:`pipelines.archive.schema.SCHEMA`, the one place it is declared). Everything comes from the
manifests (:mod:`pipelines.archive.catalog`); no Parquet file is read.

The manifests may come from elsewhere: every string read from them (outlets, months, languages,
dates) is shown as text, never read as markup. :func:`_text` folds it to one line of at most
:data:`MAX_CHARS` characters, entity-encodes HTML's special characters and backslash-escapes
Markdown's, so it cannot open a tag, a link, an image, a heading, a table cell or a code span,
nor become a link by itself (GitHub's autolinks); ``card.html`` is rendered from that Markdown.
"""

from __future__ import annotations

import base64
import html
import io
import re
from dataclasses import dataclass
from pathlib import Path

from pipelines.archive.catalog import Catalog
from pipelines.archive.keys import UNKNOWN_MONTH
from pipelines.archive.schema import SCHEMA, SCHEMA_VERSION
from pipelines.runtime.jsondata import one_line

CHARTS = {"per_month": "articles-per-month.png", "languages": "languages.png"}
MAX_CHARS = 200  # of one string from the archive; a longer one is cut, with "…"
MAX_LABEL_CHARS = 40  # of one in a chart, whose layout has room for no more

# Markdown's punctuation, backslash-escaped in text from the archive: all of CommonMark's but
# "-", ",", ";", "%", "?" and "/", which open nothing in the middle of a line (a "-" that starts
# one, a list item, is escaped too); ":", "." and "@" included, so no URL, domain or address is linked
_MARKDOWN_SPECIAL = re.compile(r"([!#$()*+.:=@\[\\\]^_`{|}~])")
# in card.html, the Markdown written here: a backslash escape, a code span, or text
_MARKDOWN_INLINE = re.compile(r"\\([!-/:-@\[-`{-~])|`([^`]*)`")


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    title: str
    text: str = ""
    table: Table | None = None
    chart: str | None = None  # a key of CHARTS


def write_card(catalog: Catalog, uri: str, out: Path) -> list[Path]:
    """The card of the archive at ``uri`` in ``out``; the files written."""
    summary = catalog.summary()
    sections = _sections(summary, uri)
    charts = _charts(summary)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for key, png in charts.items():
        (out / CHARTS[key]).write_bytes(png)
        written.append(out / CHARTS[key])
    (out / "README.md").write_text(_markdown(sections, uri), encoding="utf-8")
    (out / "card.html").write_text(_html(sections, uri, charts), encoding="utf-8")
    return [*written, out / "README.md", out / "card.html"]


def _sections(summary: dict, uri: str) -> list[Section]:
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
    overview = (
        f"{_text(uri)}: {summary['rows']:,} articles in {summary['files']:,} Parquet files "
        f"({summary['bytes'] / 1e6:,.1f} MB), {len(summary['outlets'])} outlets, {coverage}"
        f"{f' ({undated:,} without a date)' if undated else ''}; {crawled}. Schema version {SCHEMA_VERSION}."
    )
    total = summary["rows"] or 1
    return [
        Section("Overview", overview),
        Section(
            "Outlets",
            table=Table(
                ["outlet", "articles", "files", "months", "languages"],
                [
                    [
                        _text(name),
                        f"{o['rows']:,}",
                        f"{o['files']:,}",
                        _span(sorted(o["months"])),
                        ", ".join(f"{_text(code)} {rows:,}" for code, rows in o["languages"].items()),
                    ]
                    for name, o in summary["outlets"].items()
                ],
            ),
        ),
        Section("Articles per outlet and month", chart="per_month"),
        Section(
            "Languages",
            "The language of each article's text (ISO 639-1; `und`: undetermined; `?`: counted "
            "before manifests recorded languages).",
            Table(
                ["language", "articles", "share"],
                [
                    [_text(code), f"{rows:,}", f"{rows / total:.1%}"]
                    for code, rows in summary["languages"].items()
                ],
            ),
            chart="languages",
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


def _charts(summary: dict) -> dict[str, bytes]:
    """The PNG charts: articles per month, stacked by outlet; and the language mix."""
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
    axes.set_ylabel("articles")
    axes.set_xlabel("month of publication (UTC)")
    axes.tick_params(axis="x", labelrotation=60)
    if summary["outlets"]:  # an archive with no article yet has no outlet to name
        axes.legend(fontsize="small", ncols=2)
    axes.set_title("Articles per outlet and month")
    per_month = _png(figure)

    languages = summary["languages"]
    figure, axes = plt.subplots(figsize=(6, 1.6 + 0.35 * len(languages)), dpi=100)
    axes.barh([_label(code) for code in languages][::-1], list(languages.values())[::-1], color="tab:green")
    axes.set_xlabel("articles")
    axes.set_title("Language mix")
    return {"per_month": per_month, "languages": _png(figure)}


def _png(figure: object) -> bytes:
    import matplotlib.pyplot as plt

    sink = io.BytesIO()
    figure.tight_layout()
    figure.savefig(sink, format="png")
    plt.close(figure)
    return sink.getvalue()


def _markdown(sections: list[Section], uri: str) -> str:
    lines = [f"# Dataset card: {_text(uri)}", ""]
    for section in sections:
        lines += [f"## {section.title}", ""]
        if section.text:
            lines += [section.text, ""]
        if section.chart:
            lines += [f"![{section.title}]({CHARTS[section.chart]})", ""]
        if section.table:
            lines.append(_markdown_row(section.table.headers))
            lines.append("|" + "---|" * len(section.table.headers))
            lines += [_markdown_row(row) for row in section.table.rows]
            lines.append("")
    return "\n".join(lines)


def _html(sections: list[Section], uri: str, charts: dict[str, bytes]) -> str:
    body = [f"<h1>Dataset card: {_inline(_text(uri))}</h1>"]
    for section in sections:
        body.append(f"<h2>{html.escape(section.title)}</h2>")
        if section.text:
            body.append(f"<p>{_inline(section.text)}</p>")
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
        "code{background:#f3f3f3}img{max-width:100%}"
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>Dataset card: {_inline(_text(uri))}</title><style>{style}</style></head>"
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
