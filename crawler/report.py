"""A crawl's report from its stats: each outlet's figures, computed once here, and what is made
of them: the summary printed at the end (:func:`summary`), the ``--summary-json`` verdict
(:func:`run_verdict`) and the live table on a terminal (:mod:`crawler.progress`).

Plain Python: a function of the stats dict and the outlets' ids, no Scrapy.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pipelines.archive.storage import LocalStore, Store

NOT_ARTICLE = ("empty", "too_short", "not_html")  # extraction's drops of pages that hold no article


@dataclass(frozen=True)
class OutletFigures:
    """One outlet's ``outlet/<id>/...`` stats."""

    outlet_id: str
    known: int  # article pages not fetched: the archive holds them
    fetched: int  # article pages fetched
    archived: int  # rows archived
    copies: int
    changed: int  # fetched again, archived as a new version
    unchanged: int  # fetched again, same text
    not_article: int  # fetched, no article in it (NOT_ARTICLE)
    noarchive: int  # the page says noarchive
    duplicates: int  # a URL archived already in this crawl
    failed: int  # pages that failed, all reasons
    failed_by_reason: dict[str, int]
    refused: dict[str, int]  # article pages not fetched, by reason
    found: int  # article pages discovery led to (see pages_found)
    seconds: float  # from its first page to its last

    @property
    def discovered(self) -> int:
        return self.known + self.fetched


def pages_found(stats: Mapping[str, Any], outlet_id: str) -> int:
    """Article pages the outlet's discovery led to: fetched, known already, or behind a 304."""
    return sum(
        int(stats.get(f"outlet/{outlet_id}/{what}", 0)) for what in ("article_pages", "known", "not_modified")
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
        fetched=count("article_pages"),
        archived=count("archived"),
        copies=count("copies"),
        changed=count("changed"),
        unchanged=count("dropped/unchanged"),
        not_article=sum(count(f"dropped/{reason}") for reason in NOT_ARTICLE),
        noarchive=count("dropped/noarchive"),
        duplicates=count("dropped/duplicate_url"),
        failed=count("failed"),
        failed_by_reason=reasons.get("failed", {}),
        refused=reasons.get("refused", {}),
        found=pages_found(stats, outlet_id),
        seconds=round(last - first, 3) if first is not None and last is not None else 0.0,
    )


def under(stats: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The stats named ``prefix<what>``, by what."""
    return {key.removeprefix(prefix): value for key, value in stats.items() if key.startswith(prefix)}


def by_reason(counts: dict[str, int]) -> str:
    return ", ".join(f"{reason}: {n}" for reason, n in sorted(counts.items()))


def run_verdict(
    outlet_ids: Iterable[str], stats: Mapping[str, Any], crawl_id: str, code: int
) -> dict[str, Any]:
    """The run as ``--summary-json`` writes it, for scripts and alerting."""
    outlets = {
        figures.outlet_id: {
            "discovered": figures.discovered,
            "fetched": figures.fetched,
            "skipped_known": figures.known,
            "archived": figures.archived,
            "copies": figures.copies,
            "changed": figures.changed,
            "unchanged": figures.unchanged,
            "not_article": figures.not_article,
            "noarchive": figures.noarchive,
            "duplicates": figures.duplicates,
            "failed": figures.failed_by_reason,
            "refused": figures.refused,
            "seconds": figures.seconds,
        }
        for figures in outlet_figures(stats, outlet_ids)
    }
    totals: dict[str, Any] = {}
    for figures in outlets.values():
        for name, value in figures.items():
            if isinstance(value, dict):
                failed = totals.setdefault(name, {})
                for reason, n in value.items():
                    failed[reason] = failed.get(reason, 0) + n
            else:
                totals[name] = totals.get(name, 0) + value
    totals["seconds"] = round((stats["finish_time"] - stats["start_time"]).total_seconds(), 3)
    return {
        "crawl_id": crawl_id,
        "started_at": stats["start_time"].isoformat(),
        "finished_at": stats["finish_time"].isoformat(),
        "outlets": outlets,
        "totals": totals,
        "pending_uploads": int(stats.get("publish/pending_files", 0)),
        "exit_code": code,
    }


_COLUMNS = (
    "outlet",
    "known",
    "pages",
    "archived",
    "copies",
    "changed",
    "unchanged",
    "not articles",
    "duplicates",
    "failed",
)


def summary(outlet_ids: Iterable[str], stats: Mapping[str, Any], store: Store) -> tuple[str, bool]:
    """The run's per-outlet table from the crawl stats, and whether the run was healthy."""
    rows, problems = [], []
    for figures in outlet_figures(stats, outlet_ids):
        outlet_id = figures.outlet_id
        rows.append(
            (
                outlet_id,
                figures.known,
                figures.fetched,
                figures.archived,
                figures.copies,
                figures.changed,
                figures.unchanged,
                figures.not_article,
                figures.duplicates,
                figures.failed,
            )
        )
        found = figures.found
        if "redis/last_worker" in stats:  # a shared crawl: judged on all its workers, by the last
            found = stats.get(f"redis/crawl_found/{outlet_id}", 0) if stats["redis/last_worker"] else 1
        if found == 0:
            problems.append(f"{outlet_id}: no article page found (discovery broken or site down?)")
    totals = ("total", *(sum(r[i] for r in rows) for i in range(1, len(_COLUMNS))))
    widths = [max(len(str(r[i])) for r in [_COLUMNS, *rows, totals]) for i in range(len(_COLUMNS))]

    def line(row: Sequence[object]) -> str:
        return "  ".join(
            str(v).ljust(w) if i == 0 else str(v).rjust(w)
            for i, (v, w) in enumerate(zip(row, widths, strict=True))
        )

    if stats.get("finish_reason") not in ("finished", None):
        problems.append(
            f"the crawl was stopped before its end ({stats['finish_reason']}): what it fetched is archived, "
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
    lines = [line(_COLUMNS), *(line(r) for r in rows), line(totals), ""]
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
    if stats.get("extract/dropped/noarchive"):
        lines.append(f"not archived, the page says noarchive: {stats['extract/dropped/noarchive']}")
    if stats.get("robotstxt/forbidden"):
        lines.append(f"not fetched, forbidden by robots.txt: {stats['robotstxt/forbidden']}")
    if isinstance(store, LocalStore):
        lines.append("query it with DuckDB: " + duckdb_command(store.uri))
    lines += [f"PROBLEM {p}" for p in problems]
    return "\n".join(lines), not problems


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
