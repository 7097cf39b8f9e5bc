"""Re-extraction: an archive's rows rebuilt from its WARCs with today's stages, offline.

For each row of the source dataset (the files its manifests list, none a compaction replaced),
the response record that ``warc_file``, ``warc_offset`` and ``warc_length`` name is read with
one range read and goes through the crawl's own extraction and language stages, in the worker
pool (:class:`pipelines.stages.page.PageAnalyser`), with its outlet's template as the source holds
it now (an outlet's first crawl extracted without one). The row keeps what the fetch decided: its
``article_id``, ``version``, URLs, ``fetched_at``, ``crawl_id`` (the run that fetched it),
outlet and capture. Extraction gives the rest anew, and ``duplicate_of`` is worked out again
over the new texts, in the order the runs archived them.

The WARCs are copied into the new archive with their indexes, so its rows point into its own
files, and its manifest (``reextracted_from``) names the source and the runs read. A row with
no capture (a run with ``--no-warc``, an archive older than WARCs) is copied as it was, and so
is a row whose page the stages fail on (named in ``failed``). A row whose page today's stages
find no article in is left out, counted by reason.
"""

from __future__ import annotations

import asyncio
import shutil
from collections import Counter, deque
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from pipelines.archive.catalog import Catalog, read_verified
from pipelines.archive.keys import MANIFESTS, BadKey, cdxj_key, checked, checked_outlet, shown
from pipelines.archive.publish import Publisher, PublishReport
from pipelines.archive.rows import PartBuffers, partition, read_parquet, to_row, to_table
from pipelines.archive.schema import SCHEMA
from pipelines.archive.storage import Store, StoreError
from pipelines.archive.templates import stored_templates
from pipelines.archive.warc import RECORD_MAX_BYTES, WarcError, read_body, read_capture
from pipelines.article import Article
from pipelines.runtime.pool import TaskFailed, WorkerPool
from pipelines.stages.charset import header_charset
from pipelines.stages.dedup import simhash, text_hash, trusted_canonical

# What extraction and language give a row; the other columns are the fetch's and stay.
EXTRACTED = (
    "canonical_url",
    "title",
    "authors",
    "editor",
    "source",
    "section",
    "tags",
    "published_at",
    "published_at_raw",
    "language",
    "language_script",
    "language_confidence",
    "languages",
    "text",
    "text_hash",
    "text_chars",
    "charset",
    "extractor",
    "extractor_version",
    "text_simhash",
)


class ReextractError(Exception):
    """The re-extraction cannot start (the target holds an archive, the source none)."""


@dataclass(frozen=True)
class OutletHints:
    """What the registry says of an outlet today: its time zone and extraction hints."""

    timezone: str = "UTC"
    drop_selectors: tuple[str, ...] = ()
    body_selector: str | None = None


@dataclass
class ReextractReport:
    rows: int = 0  # rows the new archive holds
    reextracted: int = 0
    text_changed: int = 0  # of those, rows whose text differs from the source's
    copied: int = 0  # rows without a capture, copied as they were
    dropped: Counter[str] = field(default_factory=Counter)  # no article today, by reason
    failed: list[str] = field(default_factory=list)  # copied as they were; why, one line each
    problems: list[str] = field(default_factory=list)  # source files left out, one line each
    warcs: int = 0
    published: PublishReport = field(default_factory=PublishReport)


async def reextract(
    source: Store,
    target: Publisher,
    pool: WorkerPool,
    run_id: str,
    hints: dict[str, OutletHints],
    outlets: set[str] | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReextractReport:
    """Rebuild ``source``'s rows (of ``outlets``, or all) into ``target``, a store that holds
    no archive yet, as the run ``run_id``. ``progress`` is called with each row's count."""
    catalog = Catalog.read(source)
    if not catalog.runs:
        raise ReextractError(f"no archive at {source.uri}: it has no manifest")
    if any(True for _ in target.store.object_keys(f"{MANIFESTS}/")):
        raise ReextractError(f"{target.store.uri} holds an archive already; reextract writes a new one")
    files = [file for file in catalog.files if not outlets or file.outlet in outlets]
    report = ReextractReport(problems=list(catalog.problems))
    outlet_ids = sorted({file.outlet for file in files})
    # each outlet's template as the source holds it now: what its crawls learned since its rows
    # were extracted (an outlet's first crawl had none)
    templates = await asyncio.to_thread(stored_templates, source, outlet_ids, report.problems)
    await asyncio.to_thread(target.open, run_id, outlet_ids)
    buffers = PartBuffers(5000, 32 << 20, float("inf"), 64 << 20)
    first_texts: dict[str, str] = {}  # text hash -> article id first archived with it
    warcs: set[str] = set()
    async for row in _rebuilt(source, files, pool, hints, templates, report):
        if row["warc_file"]:
            warcs.add(row["warc_file"])
        first = first_texts.setdefault(row["text_hash"], row["article_id"])
        row["duplicate_of"] = first if first != row["article_id"] else None
        report.rows += 1
        for part in buffers.add(partition(row["outlet_id"], row["published_at"]), row):
            await asyncio.to_thread(target.write_part, part.partition, to_table(part.rows), False)
        if progress:
            progress(report.rows)
    for part in buffers.drain():
        await asyncio.to_thread(target.write_part, part.partition, to_table(part.rows), False)
    for key in sorted(warcs):
        await asyncio.to_thread(_copy_warc, source, key, target.crawl.folder, report)
    origin = {
        "archive": source.uri,
        "runs": [run.key for run in catalog.runs],
        "outlets": sorted(outlets or ()),
    }
    report.published = await asyncio.to_thread(target.close, reextracted_from=origin)
    return report


async def _rebuilt(
    source: Store,
    files: list,
    pool: WorkerPool,
    hints: dict[str, OutletHints],
    templates: dict[str, frozenset[int]],
    report: ReextractReport,
) -> AsyncIterator[dict]:
    """Each source row, re-extracted or copied, in the order of the source's runs; a few
    pages ahead in the pool."""
    ahead: deque[asyncio.Future[dict | None]] = deque()
    try:
        for row in _source_rows(source, files, report):
            ahead.append(asyncio.ensure_future(_rebuild(source, row, pool, hints, templates, report)))
            if len(ahead) >= 4 * pool.size and (done := await ahead.popleft()) is not None:
                yield done
        while ahead:
            if (done := await ahead.popleft()) is not None:
                yield done
    finally:
        for task in ahead:
            task.cancel()


def _source_rows(source: Store, files: list, report: ReextractReport) -> Iterator[dict]:
    """The rows of ``files`` whose bytes are what their manifest says; the others are named."""
    for file in files:
        data, problems = read_verified(source, file)
        if data is None:
            report.problems += [f"{p}; its rows are not in the new archive" for p in problems]
            continue
        for row in read_parquet(data).to_pylist():
            try:  # keys are data: the row's outlet names its partition, warc_file a source object
                if checked_outlet(row.get("outlet_id")) != file.outlet:
                    raise BadKey(f"outlet id {shown(row['outlet_id'])} is not its file's")
                if row.get("warc_file"):
                    checked(row["warc_file"], "warc")
            except BadKey as exc:
                report.problems.append(f"{file.key}: a row left out of the new archive: {exc}")
                continue
            yield row


async def _rebuild(
    source: Store,
    row: dict,
    pool: WorkerPool,
    hints: dict[str, OutletHints],
    templates: dict[str, frozenset[int]],
    report: ReextractReport,
) -> dict | None:
    """The row with today's extraction of its capture; as it was when it has none, or when the
    capture or the stages fail; None when today's stages find no article in the page."""
    full = {name: row.get(name) for name in SCHEMA.names}
    if not row.get("warc_file"):
        report.copied += 1
        return full
    try:
        data = await asyncio.to_thread(source.read_range, row["warc_file"], *_record_range(row))
        item = _article(row, data, hints.get(row["outlet_id"], OutletHints()))
        item.site_template = templates.get(row["outlet_id"], frozenset())
        item = await pool.run(item)
    except (StoreError, WarcError, TaskFailed) as exc:
        report.failed.append(f"{row['url']}: {exc}; copied as it was")
        return full
    if item.not_article:
        report.dropped[item.not_article] += 1
        return None
    item.canonical_url = trusted_canonical(item.url, item.canonical_url)
    item.text_hash = text_hash(item.text or "")
    item.text_simhash = simhash(item.text or "")
    new = to_row(item)
    full.update({name: new[name] for name in EXTRACTED})
    report.reextracted += 1
    report.text_changed += full["text_hash"] != row.get("text_hash")
    return full


def _record_range(row: dict) -> tuple[int, int]:
    """The offset and length of the row's response record; :class:`WarcError` for a range no
    record can have (the row is data: never a read of gigabytes)."""
    offset, length = row.get("warc_offset"), row.get("warc_length")
    if not (
        isinstance(offset, int) and offset >= 0 and isinstance(length, int) and 0 < length <= RECORD_MAX_BYTES
    ):
        raise WarcError(
            f"{row['warc_file']}: no record is {shown(length)} bytes at {shown(offset)} "
            f"(a record takes 1 to {RECORD_MAX_BYTES} bytes); not read"
        )
    return offset, length


def _article(row: dict, capture: bytes, hints: OutletHints) -> Article:
    """The item the crawl made of the page, from the row and its response record."""
    record = read_capture(capture)
    if record.rec_type != "response" or record.rec_headers.get_header("WARC-Target-URI") != row["url"]:
        raise WarcError(f"{row['warc_file']} at {row['warc_offset']}: not the response to {row['url']}")
    http = record.http_headers
    content_type = http.get_header("Content-Type") or ""
    return Article(
        url=row["url"],
        outlet_id=row["outlet_id"],
        outlet_name=row["outlet_name"],
        region=row["region"],
        outlet_timezone=hints.timezone,
        body=read_body(record),
        http_status=int(http.get_statuscode()),
        content_type=content_type,
        header_charset=header_charset(content_type),
        fetched_at=row["fetched_at"],
        crawl_id=row["crawl_id"],
        drop_selectors=hints.drop_selectors,
        body_selector=hints.body_selector,
        redirected_from=row.get("redirected_from"),
        robots_headers=tuple(value for name, value in http.headers if name.lower() == "x-robots-tag"),
        warc_file=row["warc_file"],
        warc_offset=row["warc_offset"],
        warc_length=row["warc_length"],
    )


def _copy_warc(source: Store, key: str, folder: Path, report: ReextractReport) -> None:
    """A WARC the rows point into, and its index, copied into the new archive's spool."""
    for name in (key, cdxj_key(key)):
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            with source.stream(name) as stream, (folder / f"{name}.part").open("wb") as copy:
                shutil.copyfileobj(stream, copy, 1 << 20)
        except StoreError as exc:
            report.problems.append(f"{name}: cannot be copied ({exc}); rows point to it")
            return
        (folder / f"{name}.part").replace(target)
    report.warcs += 1
