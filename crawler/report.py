"""A crawl's report from its stats: each outlet's figures, computed once here, and what is made
of them: the summary printed at the end (:func:`summary`), the ``--summary-json`` verdict
(:func:`run_verdict`) and the live table on a terminal (:mod:`crawler.progress`). The three show
the figures of :data:`FIGURES`, by the same names and in the same order.

Plain Python: a function of the stats dict and the outlets' ids, no Scrapy.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from pipelines.archive.storage import LocalStore, Store

NOT_ARTICLE = ("empty", "too_short", "not_html")  # extraction's drops of pages that hold no article


@dataclass(frozen=True)
class Figure:
    """One figure the run reports per outlet: ``name`` is the summary's column, the JSON's key and
    the live table's column alike; ``meaning`` is what the operators' guide says of it (in its
    table, which a test holds to this list)."""

    name: str
    meaning: str
    in_summary: bool = True  # a column of the printed summary (the others have a line by reason there)
    in_live_table: bool = False


# Every per-outlet figure, in the order each output shows them.
FIGURES = (
    Figure(
        "discovered",
        "article pages discovery led to: `known` + `revisit_later` + `refused` + `fetched`",
        in_summary=False,
        in_live_table=True,
    ),
    Figure("known", "article pages not fetched: the archive holds their article"),
    Figure(
        "revisit_later",
        "article pages not fetched: their last fetch archived no row (not an article, noarchive, "
        "refused) and is less than `REVISIT_AFTER_DAYS` old (the summary's line `not fetched again yet`)",
        in_summary=False,
    ),
    Figure(
        "refused",
        "article pages not fetched: an HTTP error, robots.txt, off-site, too large... (by reason: the "
        "summary's line `article pages not fetched, by reason`)",
        in_summary=False,
    ),
    Figure("fetched", "article pages fetched", in_live_table=True),
    Figure("archived", "rows archived: new articles, their new versions and copies", in_live_table=True),
    Figure(
        "copies", "archived rows whose text the archive holds at another URL (`duplicate_of` names the first)"
    ),
    Figure("changed", "archived rows that are a known article's next version (its text changed)"),
    Figure(
        "unchanged",
        "known articles fetched again (`--refetch-after`) with the text the archive holds: no row, the "
        "index notes the fetch",
    ),
    Figure("not_article", "pages without an article (empty, too short, not HTML): no row"),
    Figure(
        "noarchive",
        "pages that say `noarchive`: no row (the summary's line `not archived, the page says noarchive`)",
        in_summary=False,
    ),
    Figure("duplicates", "the same article URL reached twice in one run: archived once"),
    Figure(
        "failed",
        "pages extraction gave up on (a timeout, a worker that died, markup too deep...): no row, "
        "fetched again next run",
        in_live_table=True,
    ),
    Figure(
        "seconds",
        "from the outlet's first article page to its last (in `totals`: the whole run)",
        in_summary=False,
    ),
)
COUNTED_BY_REASON = ("refused", "failed")  # the JSON has their counts by reason too: <name>_by_reason
# the version of the --summary-json document's shape; changed when a key goes or changes meaning
VERDICT_SCHEMA = 2


@dataclass(frozen=True)
class OutletFigures:
    """One outlet's :data:`FIGURES` from its ``outlet/<id>/...`` stats (an attribute per figure)."""

    outlet_id: str
    known: int
    revisit_later: int  # held back: their last fetch archived no row, and is not old enough
    fetched: int
    archived: int
    copies: int
    changed: int
    unchanged: int
    not_article: int  # extraction's NOT_ARTICLE drops
    noarchive: int
    duplicates: int
    failed_by_reason: dict[str, int]
    refused_by_reason: dict[str, int]
    found: int  # article pages discovery led to, as the run's health check counts them (pages_found)
    seconds: float

    @property
    def refused(self) -> int:
        return sum(self.refused_by_reason.values())

    @property
    def failed(self) -> int:
        return sum(self.failed_by_reason.values())

    @property
    def discovered(self) -> int:
        return self.known + self.revisit_later + self.refused + self.fetched

    def figure(self, name: str) -> int | float:
        """The value of the figure ``name`` (one of :data:`FIGURES`)."""
        return getattr(self, name)


def pages_found(stats: Mapping[str, Any], outlet_id: str) -> int:
    """Article pages the outlet's discovery led to: fetched, known already (held or fetched lately
    with no row), or behind a 304."""
    return sum(
        int(stats.get(f"outlet/{outlet_id}/{what}", 0))
        for what in ("article_pages", "known", "revisit_later", "not_modified")
    )


def outlet_figures(stats: Mapping[str, Any], outlet_ids: Iterable[str]) -> list[OutletFigures]:
    """Each outlet's figures, in the order of ``outlet_ids``."""
    reasons = _reasons_by_outlet(stats)
    return [_figures(stats, outlet_id, reasons.get(outlet_id, {})) for outlet_id in outlet_ids]


def _reasons_by_outlet(stats: Mapping[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``outlet/<id>/failed/<reason>`` and ``.../refused/<reason>`` by outlet, kind and reason, in
    one pass over the stats: the live table is made of them twice a second, for every outlet."""
    grouped: dict[str, dict[str, dict[str, Any]]] = {}
    for key, value in stats.items():
        parts = key.split("/", 3)
        if len(parts) == 4 and parts[0] == "outlet" and parts[2] in ("failed", "refused"):
            grouped.setdefault(parts[1], {}).setdefault(parts[2], {})[parts[3]] = value
    return grouped


def _figures(stats: Mapping[str, Any], outlet_id: str, reasons: dict[str, dict[str, Any]]) -> OutletFigures:
    def count(key: str) -> int:
        return int(stats.get(f"outlet/{outlet_id}/{key}", 0))

    first, last = (
        stats.get(f"outlet/{outlet_id}/first_page_at"),
        stats.get(f"outlet/{outlet_id}/last_page_at"),
    )
    return OutletFigures(
        outlet_id=outlet_id,
        known=count("known"),
        revisit_later=count("revisit_later"),
        fetched=count("article_pages"),
        archived=count("archived"),
        copies=count("copies"),
        changed=count("changed"),
        unchanged=count("dropped/unchanged"),
        not_article=sum(count(f"dropped/{reason}") for reason in NOT_ARTICLE),
        noarchive=count("dropped/noarchive"),
        duplicates=count("dropped/duplicate_url"),
        failed_by_reason=reasons.get("failed", {}),
        refused_by_reason=reasons.get("refused", {}),
        found=pages_found(stats, outlet_id),
        seconds=round(last - first, 3) if first is not None and last is not None else 0.0,
    )


def under(stats: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The stats named ``prefix<what>``, by what."""
    return {key.removeprefix(prefix): value for key, value in stats.items() if key.startswith(prefix)}


def by_reason(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items()))


def run_verdict(
    outlet_ids: Iterable[str], stats: Mapping[str, Any], crawl_id: str | None, code: int, reason: str
) -> dict[str, Any]:
    """The run as ``--summary-json`` writes it, for scripts and alerting, on every exit: ``code``
    and ``reason`` (made one line) say how it ended. A run that ended before its crawl began (a
    usage error, the archive busy) has no times, and its figures are nought. ``schema`` is
    :data:`VERDICT_SCHEMA`: scripts can tell a document of another shape."""
    outlets = {figures.outlet_id: _verdict_figures(figures) for figures in outlet_figures(stats, outlet_ids)}
    totals: dict[str, Any] = _verdict_figures(None)
    for figures in outlets.values():
        for name, value in figures.items():
            if isinstance(value, dict):
                for why, n in value.items():
                    totals[name][why] = totals[name].get(why, 0) + n
            else:
                totals[name] += value
    started, finished = stats.get("start_time"), stats.get("finish_time")
    totals["seconds"] = round((finished - started).total_seconds(), 3) if started and finished else 0.0
    return {
        "schema": VERDICT_SCHEMA,
        "crawl_id": crawl_id,
        "exit_code": int(code),
        "reason": " ".join(reason.split()),
        "started_at": started.isoformat() if started else None,
        "finished_at": finished.isoformat() if finished else None,
        "outlets": outlets,
        "totals": totals,
        "pending_uploads": int(stats.get("publish/pending_files", 0)),
    }


def _verdict_figures(figures: OutletFigures | None) -> dict[str, Any]:
    """Every figure of :data:`FIGURES` by name, then the counts by reason (all nought for None)."""
    return {figure.name: figures.figure(figure.name) if figures else 0 for figure in FIGURES} | {
        f"{name}_by_reason": dict(getattr(figures, f"{name}_by_reason")) if figures else {}
        for name in COUNTED_BY_REASON
    }


SUMMARY_COLUMNS = tuple(figure.name for figure in FIGURES if figure.in_summary)


def summary(outlet_ids: Iterable[str], stats: Mapping[str, Any], store: Store) -> tuple[str, bool]:
    """The run's per-outlet table from the crawl stats, and whether the run was healthy."""
    rows, problems = [], []
    for figures in outlet_figures(stats, outlet_ids):
        outlet_id = figures.outlet_id
        rows.append((outlet_id, *(figures.figure(name) for name in SUMMARY_COLUMNS)))
        found = figures.found
        if "redis/last_worker" in stats:  # a shared crawl: judged on all its workers, by the last
            found = stats.get(f"redis/crawl_found/{outlet_id}", 0) if stats["redis/last_worker"] else 1
        if found == 0:
            problems.append(f"{outlet_id}: no article page found{nothing_found_because(stats, outlet_id)}")
    header = ("outlet", *SUMMARY_COLUMNS)
    totals = ("total", *(sum(r[i] for r in rows) for i in range(1, len(header))))
    widths = [max(len(str(r[i])) for r in [header, *rows, totals]) for i in range(len(header))]

    def line(row: Sequence[object]) -> str:
        return "  ".join(
            str(v).ljust(w) if i == 0 else str(v).rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )

    if stats.get("finish_reason") not in ("finished", None):
        why = stats["finish_reason"]
        if why == "closespider_timeout":
            why = "it reached its time bound, --max-runtime or CLOSESPIDER_TIMEOUT"
        problems.append(
            f"the crawl was stopped before its end ({why}): what it fetched is archived, "
            "its manifest says interrupted, the next run fetches the rest"
        )
    if bugs := under(stats, "bugs/"):
        problems.append(
            f"our own code raised ({by_reason(bugs)}): a bug, with its traceback in the log; please report it"
        )
    if dropped := under(stats, "redis/dropped/"):
        problems.append(
            f"{sum(dropped.values())} item(s) of the Redis queue dropped unread, no request of this crawl "
            f"({by_reason(dropped)}): does something else write to this Redis database?"
        )
    if failures := under(stats, "extract/failed/"):
        problems.append(
            f"{sum(failures.values())} page(s) failed in extraction ({by_reason(failures)}); not archived, "
            "the next run fetches them again"
        )
    errors = int(stats.get("log_count/ERROR", 0))
    if errors:
        problems.append(f"{errors} error(s) logged; rerun with --log-level INFO for details")
    http_errors = {
        k.rsplit("/", 1)[-1]: v
        for k, v in stats.items()
        if k.startswith("httperror/response_ignored_status_count/")
    }
    lines = [line(header), *(line(r) for r in rows), line(totals), ""]
    lines.append(
        published_line(
            *(stats.get(f"publish/{name}", 0) for name in ("files", "bytes", "manifests")),
            store.uri,
            *(stats.get(f"publish/{name}", 0) for name in ("duplicate_rows", "warc_files", "warc_bytes")),
        )
    )
    if stats.get("publish/pending_crawls"):
        problems.append(
            pending_line(
                stats["publish/pending_files"],
                stats["publish/pending_crawls"],
                stats.get("publish/spool", "the spool"),
                stats.get("publish/error"),
            )
        )
    if stats.get("publish/quarantined"):
        problems.append(quarantined_line(stats["publish/quarantined"], stats["publish/quarantine"]))
    problems += stats.get("archive/damaged", [])
    if http_errors:
        lines.append("HTTP errors: " + ", ".join(f"{code}: {n}" for code, n in sorted(http_errors.items())))
    if stats.get("discovery/not_modified") or stats.get("discovery/sitemap_unchanged"):
        lines.append(
            "unchanged since the last run, not read again: "
            f"{stats.get('discovery/not_modified', 0)} discovery page(s) (304), "
            f"{stats.get('discovery/sitemap_unchanged', 0)} sitemap(s) (lastmod)"
        )
    if refused := under(stats, "refused/"):
        lines.append(f"article pages not fetched, by reason: {by_reason(refused)}")
    over = {k.split("/")[1]: v for k, v in stats.items() if k.endswith("/links_over_budget")}
    if over:
        lines.append(
            "over max_article_links, left for the next run: "
            + ", ".join(f"{outlet}: {n}" for outlet, n in sorted(over.items()))
        )
    cut = {k.split("/")[1]: v for k, v in stats.items() if k.endswith("/links_cut")}
    if cut:
        lines.append(
            "pages of over max_links_per_page links, the rest not read: "
            + ", ".join(f"{outlet}: {n}" for outlet, n in sorted(cut.items()))
        )
    if stats.get("discovery/sitemap_cut"):
        lines.append(f"sitemaps cut at max_sitemap_urls, the rest not read: {stats['discovery/sitemap_cut']}")
    if stats.get("discovery/revisit_later"):
        lines.append(
            "not fetched again yet, their last fetch archived no row (not an article, noarchive, "
            f"refused): {stats['discovery/revisit_later']}"
        )
    if stats.get("extract/dropped/noarchive"):
        lines.append(f"not archived, the page says noarchive: {stats['extract/dropped/noarchive']}")
    if stats.get("robotstxt/forbidden"):
        lines.append(f"not fetched, forbidden by robots.txt: {stats['robotstxt/forbidden']}")
    if isinstance(store, LocalStore):
        lines.append("query it with DuckDB: " + duckdb_command(store.uri))
    lines += [f"PROBLEM {p}" for p in problems]
    return "\n".join(lines), not problems


def nothing_found_because(stats: Mapping[str, Any], outlet_id: str) -> str:
    """Why an outlet's discovery led to no article page, from the spider's ``discovery/<id>/``
    stats, to follow "no article page found": its start points unreachable, their links matching
    no article pattern, or no links at all."""
    mine = under(stats, f"discovery/{outlet_id}/")
    pages, links = under(mine, "pages/"), under(mine, "links/")
    reasons = []
    if first := mine.get("first_unreachable"):
        kind, url, reason = first["kind"], first["url"], first["reason"]
        if reason == "dns":
            said = f"start point unreachable: DNS lookup failed for {urlsplit(url).hostname} ({kind} {url})"
        elif reason.startswith("http_"):
            said = f"HTTP {reason.removeprefix('http_')} on the {kind} {url}"
        else:
            said = f"start point unreachable ({reason}): {kind} {url}"
        more = sum(under(mine, "unreachable/").values()) - 1
        reasons.append(said + (f", and {more} more discovery page(s) unreachable" if more > 0 else ""))
    if pages:
        read = " and ".join(f"{n} {kind} page(s)" for kind, n in sorted(pages.items()))
        total = sum(links.values())
        if not total:
            reasons.append(f"no links on its {read}")
        elif not links.get("article"):
            elsewhere = f", {links['offsite']} of them off-site" if links.get("offsite") else ""
            example = mine.get("unmatched_example")
            reasons.append(
                f"{read} gave {total} link(s){elsewhere}, none matched article_patterns"
                + (f" (e.g. {example})" if example else "")
            )
        else:
            reasons.append(f"{read} gave {links['article']} article link(s), none fetched")
    return ": " + "; ".join(reasons) if reasons else " (discovery broken or site down?)"


def published_line(
    files: int, size: int, manifests: int, uri: str, duplicate_rows: int, warc_files: int, warc_bytes: int
) -> str:
    """What a crawl or ``flush`` published."""
    warcs = f", {warc_files} WARC(s) with their indexes, {warc_bytes} bytes" if warc_files else ""
    return f"published: {files} file(s), {size} bytes{warcs}, {manifests} manifest(s) to {uri}" + (
        f"; {duplicate_rows} row(s) were in the archive already, not published again"
        if duplicate_rows
        else ""
    )


def quarantined_line(parts: int, where: str) -> str:
    return (
        f"{parts} spooled file(s) or crawl(s) set aside in {where} (unreadable, links, or not what a crawl "
        "writes; kept for a look); the rest was published"
    )


def pending_line(files: int, crawls: int, spool: str, error: str | None) -> str:
    return (
        f"{files} part file(s) of {crawls} crawl(s) wait in {spool}"
        + (f" ({error})" if error else "")
        + "; the next crawl or `newsarchive flush` publishes them"
    )


def duckdb_command(archive: str) -> str:
    """A shell command that shows the archive's articles per outlet and language."""
    files = f"{archive.rstrip('/')}/outlet=*/published=*/*.parquet"  # not the spool's parts
    sql = (
        "SELECT outlet_id, language, language_script, count(*) AS articles "
        f"FROM read_parquet('{files}', hive_partitioning = true) "
        "GROUP BY ALL ORDER BY ALL"
    )
    program = f"import duckdb; duckdb.sql({sql!r}).show()"
    return f"{shlex.quote(sys.executable)} -c {shlex.quote(program)}"
