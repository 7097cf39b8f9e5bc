"""Hostile input at full size: what the crawl makes of it, what it loses, and its peak memory.

``make bench`` runs it (``python -m benchmarks.bench_hostile [CASE ...]``). Each case changes the
offline mirror (``crawler/mirror``) the way a broken or hostile site would, then runs
``newsarchive crawl`` on it in a fresh process, on loopback, and reports: the run's exit code,
what became of the articles (archived, and lost: an article of the mirror that is neither archived
nor logged with its URL as refused or failed), the counted refusals and failures, and the peak RSS of the
crawl process alone and of its whole tree (the extraction workers included), sampled every 20 ms.
The inputs are built at the sizes the issue reported, not the small ones of the tests.

Then hostile archive content (``--archive-content``, or with no case named): a WARC whose record
is a gzip bomb, left in the spool by a killed crawl, published by the next crawl and checked by
``verify``; and index files of a few KB that claim, or expand to, gigabytes. ``--tree`` runs
another checkout's code on the same inputs (``git archive <commit> | tar -x -C DIR``): the
figures before a change.

Reported, not asserted; the last line is ``RESULT max_rss_mb=... max_tree_rss_mb=... lost=...``.
"""

from __future__ import annotations

import argparse
import dataclasses
import gzip
import json
import sys
import tempfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from benchmarks.baselines import FETCH_SETTINGS
from benchmarks.bench_crawl import REPO, Run, measure
from crawler.mirror.server import MirrorServer
from crawler.mirror.sites import Mirror, MirroredArticle, Page, build_mirror
from pipelines.archive.keys import delta_key
from pipelines.archive.schema import INDEX_SCHEMA
from pipelines.archive.spool import Spool
from pipelines.archive.warc import Exchange, WarcWriter

LISTING, SITEMAP = "sxkjt", "hangzhou-net"  # an outlet found through listings, one through sitemaps
LISTING_PATH = ("kjt.shanxi.gov.cn", "/zxzx/ywyl/index.shtml")
SITEMAP_INDEX = ("hznews.hangzhou.com.cn", "/sitemap_index.xml")


@dataclass
class Case:
    name: str
    outlet: str
    spoil: Callable[[Mirror], set[str]]  # changes the mirror; returns the URLs it makes unarchivable


def articles(mirror: Mirror, outlet: str) -> list[MirroredArticle]:
    return [a for a in mirror.articles if a.outlet_id == outlet and a.expect == "archived"]


def key(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.netloc, parts.path


def replace_page(mirror: Mirror, url: str, change: Callable[[bytes], bytes], **fields: object) -> None:
    page = mirror.pages[key(url)]
    mirror.pages[key(url)] = dataclasses.replace(page, body=change(page.body), **fields)


def before_body_end(addition: bytes) -> Callable[[bytes], bytes]:
    return lambda body: body.replace(b"</body>", addition + b"</body>", 1)


def links_list(count: int) -> bytes:
    return (
        "<ul>"
        + "".join(f'<li><a href="/zhuanti/{n}.shtml">专题报道 {n}</a></li>' for n in range(count))
        + "</ul>"
    ).encode()


def links_inline(count: int) -> bytes:
    return (
        "<div>" + "".join(f'<a href="/zhuanti/{n}.shtml">专题 {n}</a> ' for n in range(count)) + "</div>"
    ).encode()


def control(mirror: Mirror) -> set[str]:
    return set()


def article_200k_links_list(mirror: Mirror) -> set[str]:
    replace_page(mirror, articles(mirror, LISTING)[0].url, before_body_end(links_list(200_000)))
    return set()


def article_200k_links_inline(mirror: Mirror) -> set[str]:
    replace_page(mirror, articles(mirror, LISTING)[0].url, before_body_end(links_inline(200_000)))
    return set()


def listing_200k_links(mirror: Mirror) -> set[str]:
    replace_page(mirror, f"https://{''.join(LISTING_PATH)}", before_body_end(links_list(200_000)))
    return set()


def listing_trap(mirror: Mirror) -> set[str]:
    """Every listing page links 8 more, 800 in all (after the real next page)."""
    host, base = LISTING_PATH[0], "/zxzx/ywyl/"

    def next_pages(n: int) -> bytes:
        return "".join(f'<a href="{base}index_{8 * n + k}.shtml">{k}</a>' for k in range(1, 9)).encode()

    replace_page(mirror, f"https://{host}{base}index.shtml", before_body_end(next_pages(1)))
    start = mirror.pages[(host, f"{base}index.shtml")]
    for n in range(2, 800):  # index_1 is the real second page
        body = b"<html><body><p>listing</p>" + next_pages(n) + b"</body></html>"
        mirror.pages[(host, f"{base}index_{n}.shtml")] = dataclasses.replace(start, body=body)
    return set()


def sitemap_index_4x200k(mirror: Mirror) -> set[str]:
    """Four children of 200,000 URLs each, the outlet's real articles first in the first."""
    host = SITEMAP_INDEX[0]
    real = [a.url for a in articles(mirror, SITEMAP)]
    children = [f"/sitemap/huge-{n}.xml" for n in range(4)]
    index = "".join(f"<sitemap><loc>https://{host}{c}</loc></sitemap>" for c in children)
    xml = '<?xml version="1.0" encoding="UTF-8"?>'
    namespace = 'xmlns="http://www.sitemaps.org/schemas/sitemap/0.9"'
    page = mirror.pages[SITEMAP_INDEX]
    mirror.pages[SITEMAP_INDEX] = dataclasses.replace(
        page, body=f"{xml}<sitemapindex {namespace}>{index}</sitemapindex>".encode()
    )
    for n, child in enumerate(children):
        urls = (real if n == 0 else []) + [
            f"https://{host}/xinzheng/content/2026-11/23/content_{n}{i:07d}.htm" for i in range(200_000)
        ]
        body = "".join(f"<url><loc>{u}</loc></url>" for u in urls)
        mirror.pages[(host, child)] = Page(
            200, "application/xml", f"{xml}<urlset {namespace}>{body}</urlset>".encode()
        )
    return set()


def nested(depth: int) -> Callable[[Mirror], set[str]]:
    def spoil(mirror: Mirror) -> set[str]:
        url = articles(mirror, LISTING)[0].url
        replace_page(
            mirror,
            url,
            lambda body: body.replace(b"<body>", b"<body>" + b"<div>" * depth, 1).replace(
                b"</body>", b"</div>" * depth + b"</body>", 1
            ),
        )
        return set()  # past libxml2's limit too: read flattened (pipelines/stages/extraction/nesting.py)

    return spoil


def unclosed_font(mirror: Mirror) -> set[str]:
    replace_page(
        mirror,
        articles(mirror, LISTING)[0].url,
        lambda body: body.replace(b"<body>", b"<body>" + b'<font color="red">' * 3000, 1),
    )
    return set()


def huge_article(mirror: Mirror) -> set[str]:
    """15 MB of paragraphs, under DOWNLOAD_MAXSIZE."""
    paragraph = "<p>" + "山西省科技厅组织专家对重点实验室开展评估，" * 20 + "</p>"
    replace_page(mirror, articles(mirror, LISTING)[0].url, before_body_end((paragraph * 12_000).encode()))
    return set()


def gzip_bomb(mirror: Mirror) -> set[str]:
    """1 GB of zeros in 1 MB on the wire, as Content-Encoding: gzip."""
    url = articles(mirror, LISTING)[0].url
    bomb = gzip.compress(b"\0" * (1 << 30), compresslevel=9)
    replace_page(mirror, url, lambda body: bomb, headers=(("Content-Encoding", "gzip"),))
    return {url}


def redirect_loop(mirror: Mirror) -> set[str]:
    url = articles(mirror, LISTING)[0].url
    replace_page(mirror, url, lambda body: b"", status=302, headers=(("Location", url),))
    return {url}


def offsite_redirect(mirror: Mirror) -> set[str]:
    url = articles(mirror, LISTING)[0].url
    replace_page(
        mirror, url, lambda body: b"", status=302, headers=(("Location", "https://elsewhere.test/a"),)
    )
    return {url}


def noarchive(mirror: Mirror) -> set[str]:
    url = articles(mirror, LISTING)[0].url
    replace_page(
        mirror,
        url,
        lambda body: body.replace(b"<head>", b'<head><meta name="robots" content="noarchive">', 1),
    )
    return {url}


CASES = [
    Case("control: the mirror as it is", LISTING, control),
    Case("an article with 200,000 links in a list (11 MB)", LISTING, article_200k_links_list),
    Case("an article with 200,000 links inline (8 MB)", LISTING, article_200k_links_inline),
    Case("a listing page with 200,000 links (11 MB)", LISTING, listing_200k_links),
    Case("listing trap: every listing page links 8 more", LISTING, listing_trap),
    Case("a sitemap index of 4 children of 200,000 URLs", SITEMAP, sitemap_index_4x200k),
    Case("an article 1,000 elements deep", LISTING, nested(1000)),
    Case("an article 2,500 elements deep", LISTING, nested(2500)),
    Case("an article 10,000 elements deep", LISTING, nested(10_000)),
    Case("an article 100,000 elements deep", LISTING, nested(100_000)),
    Case("an article 1,000,000 elements deep (11 MB)", LISTING, nested(1_000_000)),
    Case("an article after 3,000 unclosed <font>", LISTING, unclosed_font),
    Case("an article of 15 MB", LISTING, huge_article),
    Case("a gzip bomb (1 GB in 1 MB)", LISTING, gzip_bomb),
    Case("a redirect loop", LISTING, redirect_loop),
    Case("an offsite redirect", LISTING, offsite_redirect),
    Case("a page that says noarchive", LISTING, noarchive),
]


@dataclass
class Outcome:
    run: Run
    archived: int
    lost: int
    counted: dict[str, int]


def run_case(case: Case, folder: Path) -> Outcome:
    mirror = build_mirror()
    unarchivable = case.spoil(mirror)
    expected = {a.url for a in articles(mirror, case.outlet)} - unarchivable
    archive, summary, log = folder / "archive", folder / "run.json", folder / "crawl.log"
    settings = [arg for name, value in FETCH_SETTINGS.items() for arg in ("-s", f"{name}={value}")]
    with MirrorServer(mirror) as server:
        command = [
            *(sys.executable, "-m", "crawler", "crawl", "--mirror-url", server.url),
            *("--archive", str(archive), "--outlet", case.outlet, "--summary-json", str(summary)),
            *("--log-level", "INFO", "-s", f"LOG_FILE={log}"),
            *settings,
        ]
        run = measure(command, check=False)
    archived = set()
    if archive.exists() and any(archive.rglob("*.parquet")):
        table = ds.dataset(archive, format="parquet", partitioning="hive", exclude_invalid_files=True)
        archived = set(table.to_table(columns=["url"]).column("url").to_pylist())
    totals = json.loads(summary.read_text())["totals"]
    counted = {f"refused/{k}": v for k, v in totals["refused_by_reason"].items()}
    counted |= {f"failed/{k}": v for k, v in totals["failed_by_reason"].items()}
    if totals["noarchive"]:
        counted["noarchive"] = totals["noarchive"]
    told = log.read_text(encoding="utf-8", errors="replace")  # a page not archived is logged with its URL
    lost = len(expected - archived) + sum(url not in told for url in unarchivable)
    return Outcome(run, len(archived & expected), lost, counted)


LATER = "29991231T235959Z-ffffff"  # a crawl id that sorts after every real one: read first


def gzipped_zeros(size: int) -> bytes:
    """``size`` zero bytes gzipped (about a thousandth of it), compressed a megabyte at a time."""
    compressor, chunk = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS), bytes(1 << 20)
    return b"".join(compressor.compress(chunk) for _ in range(size // len(chunk))) + compressor.flush()


def spool_bomb_warc(spool: Path, crawl_id: str, url: str, size: int) -> None:
    """A crawl's folder in ``spool`` as a killed crawl leaves it: one finished WARC, whose
    response to ``url`` is ``size`` bytes of zeros as ``Content-Encoding: gzip``."""
    crawl = Spool(spool).open_crawl(crawl_id, [LISTING])
    writer = WarcWriter(crawl.folder, crawl_id, 1 << 30, {"software": "newsarchive bench_hostile"})
    writer.write(
        Exchange(
            url=url,
            method="GET",
            request_headers=[("User-Agent", "newsarchive")],
            request_body=b"",
            protocol="HTTP/1.1",
            status=200,
            response_headers=[("Content-Type", "text/html"), ("Content-Encoding", "gzip")],
            body=gzipped_zeros(size),
            ip_address="127.0.0.1",
            fetched_at=datetime(2026, 12, 1, tzinfo=UTC),
        )
    )
    writer.finish()
    crawl.release()  # not finish(): a killed crawl never closed (and a closed one of no row keeps no WARC)


def _parquet(table: pa.Table, **options: object) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink, compression="zstd", **options)
    return sink.getvalue().to_pybytes()


def index_bombs(scale: int) -> dict[str, bytes]:
    """Index files of a few KB each that would take about ``scale`` bytes (or far more) to
    decode, in each way Parquet allows: keyed as deltas of crawls to come, so a crawl reads them."""
    rows = 128
    keys = pa.array([f"{n:064x}" for n in range(rows)])
    one_url = pa.DictionaryArray.from_arrays(
        pa.array([0] * rows, pa.int32()), pa.array(["u" * (scale // rows)])
    )
    dictionary = {"url_key": keys, "url": one_url, "article_id": keys, "file": pa.array(["f"] * rows)}
    many = scale // 512  # entries of nothing but one article: run-length encoded
    repeated = {"article_id": pa.array(["a"] * many), "file": pa.array(["f"] * many)}
    tables = {
        "dictionary": dictionary,  # one URL of scale / 128 bytes in the dictionary, for 128 entries
        "entries": repeated,  # a few hundred bytes of the file per million entries
        "zeros": {
            "url_key": pa.array(["0" * (scale // 4)]),
            "article_id": pa.array(["a"]),
            "file": pa.array(["f"]),
        },
    }
    files = {}
    for n, (name, columns) in enumerate(tables.items()):
        length = len(next(iter(columns.values())))
        schema = pa.schema(
            [f.with_type(columns[f.name].type) if f.name in columns else f for f in INDEX_SCHEMA]
        )
        table = pa.table([columns.get(f.name, pa.nulls(length, f.type)) for f in schema], schema=schema)
        files[delta_key(f"{LATER[:-1]}{n}")] = _parquet(table, use_dictionary=name != "zeros")
    return files


def archive_content(tree: Path) -> list[tuple[str, Run]]:
    """The archive-content cases, on the code in ``tree``: each a step on one archive."""
    steps = []
    with (
        tempfile.TemporaryDirectory(prefix="newsarchive-hostile-") as tmp,
        MirrorServer(build_mirror()) as server,
    ):
        archive = Path(tmp) / "archive"

        def newsarchive(*args: str) -> Run:
            return measure([sys.executable, "-m", "crawler", *args], check=False, cwd=tree)

        crawl = ("crawl", "--mirror-url", server.url, "--archive", str(archive), "--outlet", LISTING)
        newsarchive(*crawl)
        url = f"http://{LISTING_PATH[0]}/bomb.html"
        spool_bomb_warc(archive / ".spool", "20261201T000000Z-b0b0b0", url, 1 << 30)
        steps.append(("a 1 GB gzip-bomb record in a spooled WARC: crawl", newsarchive(*crawl)))
        steps.append(("  the same WARC in the archive: verify", newsarchive("verify", str(archive))))
        bombs = index_bombs(1 << 30)
        for key, data in bombs.items():
            (archive / key).write_bytes(data)
        sizes = "/".join(f"{len(data) / 1000:.0f}" for data in bombs.values())
        steps.append((f"index files of {sizes} KB claiming 1 GB: crawl", newsarchive(*crawl)))
        steps.append(("  the same index files: verify", newsarchive("verify", str(archive))))
    return steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cases", nargs="*", help="numbers of the cases to run (default: all)")
    parser.add_argument("--archive-content", action="store_true", help="only the archive-content cases")
    parser.add_argument("--tree", type=Path, default=REPO, help="the code to run (default: this checkout)")
    args = parser.parse_args()
    if args.archive_content:
        _report_archive_content(args.tree)
        return
    chosen = [CASES[int(n)] for n in args.cases] if args.cases else CASES
    print(
        f"{'input':<52} {'exit':>4} {'s':>6} {'archived':>8} {'lost':>4} "
        f"{'RSS MB':>7} {'tree MB':>7}  counted"
    )
    outcomes = []
    for case in chosen:
        with tempfile.TemporaryDirectory(prefix="newsarchive-hostile-") as tmp:
            outcome = run_case(case, Path(tmp))
        outcomes.append(outcome)
        counted = ", ".join(f"{k}: {v}" for k, v in sorted(outcome.counted.items())) or "-"
        run = outcome.run
        print(
            f"{case.name:<52} {run.returncode:>4} {run.seconds:>6.1f} {outcome.archived:>8} "
            f"{outcome.lost:>4} {run.peak_own_rss_mb:>7.0f} {run.peak_rss_mb:>7.0f}  {counted}",
            flush=True,
        )
    if not args.cases:
        _report_archive_content(args.tree)
    print(
        f"RESULT max_rss_mb={max(o.run.peak_own_rss_mb for o in outcomes):.0f} "
        f"max_tree_rss_mb={max(o.run.peak_rss_mb for o in outcomes):.0f} lost={sum(o.lost for o in outcomes)}"
    )


def _report_archive_content(tree: Path) -> None:
    print(f"\n{'archive content':<52} {'exit':>4} {'s':>6} {'RSS MB':>7}")
    for name, run in archive_content(tree):
        print(f"{name:<52} {run.returncode:>4} {run.seconds:>6.1f} {run.peak_own_rss_mb:>7.0f}", flush=True)


if __name__ == "__main__":
    main()
