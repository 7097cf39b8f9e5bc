"""A run's cost against the archive's size and age (issue 34), on synthetic archives.

``make bench-archive`` (``python -m benchmarks.bench_archive [--full] [--sizes 10k/100,1M/100]
[--stores local,s3] [--cache DIR] [--rebuild]``). Each archive is built once from a real crawl:
``newsarchive crawl --mirror`` into a fresh folder, whose parts, WARCs and manifest are copied
(hard links) under N hourly crawl ids (its templates under the last one only, as each crawl deletes
the older ones), with index entries up to M in ``INDEX_SCHEMA``,
written as today's code leaves them: a base (naming the deltas it replaces) and the 8 deltas since.
Archives are kept under ``--cache`` (default /tmp/newsarchive-bench-archive), one folder per index
schema, and reused; ``--rebuild`` (or deleting the folder) builds them again.

On each archive (a hard-linked copy, so that the cache stays as built), and on a copy of the crawl
it was built from (a FRESH archive of one run), the mirror is crawled twice more, finding nothing
new; of the second crawl: wall time, time before its first request (its first "Crawled" log line),
peak RSS summed over its processes, and on S3 the store's requests by method (a counting proxy on
loopback in front of SeaweedFS); then ``ls``, ``pull --outlet X`` and ``verify`` times. The code
measured is the tree this module imports ``pipelines`` from (``PYTHONPATH=TREE``: the crawls run
there too), so that one copy of the bench measures a checkout before a change and after it.
Reported, not asserted: a table, then ``RESULT bench_archive ...`` with the targets' figures.
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import pipelines
from benchmarks.bench_crawl import descendants, rss_kb
from pipelines.archive.keys import TEMPLATE_FOLDER, base_key, delta_key, manifest_key
from pipelines.archive.rows import parquet_file
from pipelines.archive.schema import INDEX_SCHEMA
from tests.objectstores import ObjectStore, SeaweedFS

TREE = Path(pipelines.__file__).resolve().parent.parent  # the code under test
CACHE = Path(tempfile.gettempdir()) / "newsarchive-bench-archive"
SIZES = "10k/100,1M/100,1M/10000"
FULL_SIZES = "5M/100"
ESTIMATED_ENTRIES = 20_000_000
DELTAS_OUTSIDE_BASE = 8  # today's code compacts at 16 (index.COMPACT_AFTER): a run half-way
COMPACT_AFTER = 16
# today's base names the index files it replaces in this metadata key (index._MERGED at 45e8170)
MERGED_KEY = b"newsarchive.index.merged"
FIRST_RUN = datetime(2025, 1, 1, tzinfo=UTC)  # runs hourly from here: all before any new crawl
PULL_OUTLET = "gmw-cq"
UPLOAD_THREADS = 16
_OPENAT = re.compile(r'openat\(AT_FDCWD, "(?P<path>[^"]*)", (?P<flags>[A-Z_|]+)')
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "expect"}


@dataclass(frozen=True)
class Size:
    entries: int
    runs: int

    @classmethod
    def parse(cls, text: str) -> Size:
        """``10k/100``, ``1M/10000``: index entries / runs."""
        entries, runs = text.split("/")
        scale = {"k": 1_000, "M": 1_000_000}.get(entries[-1], 1)
        return cls(int(float(entries.rstrip("kM")) * scale), int(runs))

    @property
    def label(self) -> str:
        entries = (
            f"{self.entries // 1_000_000}M" if self.entries >= 1_000_000 else f"{self.entries // 1_000}k"
        )
        return f"{entries} / {self.runs:,}"


def run_id(run: int) -> str:
    """The crawl id of synthetic run ``run``, in ``new_crawl_id``'s form, an hour after the one before."""
    return f"{FIRST_RUN + timedelta(hours=run):%Y%m%dT%H%M%SZ}-{run:06x}"


def link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)
    except OSError:  # another file system
        shutil.copy2(source, target)


def copy_archive(source: Path, target: Path) -> None:
    """``source`` as a new archive at ``target``, its files hard-linked (every writer of the archive
    writes a new file and renames it: a linked file is never changed), without its spool or lock."""
    for folder, subfolders, files in os.walk(source):
        subfolders[:] = [name for name in subfolders if name != ".spool"]
        relative = Path(folder).relative_to(source)
        (target / relative).mkdir(parents=True, exist_ok=True)
        for name in files:
            if name != ".newsarchive.lock":
                link_or_copy(Path(folder) / name, target / relative / name)


def source_crawl(cache: Path) -> Path:
    """The real mirror crawl every archive of this index schema is built from (once)."""
    source = cache / "source"
    if not (source / "_manifests").is_dir():
        shutil.rmtree(source, ignore_errors=True)
        subprocess.run(
            crawl_command(str(source), cache / "source-spool", "WARNING"),
            cwd=TREE,
            env=tree_env(),
            check=True,
            stdout=subprocess.DEVNULL,
        )
        shutil.rmtree(cache / "source-spool", ignore_errors=True)
    return source


def build_archive(source: Path, target: Path, size: Size) -> None:
    """``size.runs`` hourly copies of the crawl in ``source`` and ``size.entries`` index entries,
    at ``target`` (which must not exist yet)."""
    (manifest,) = (source / "_manifests").glob("*.json")
    crawl = manifest.stem
    files = [
        path.relative_to(source).as_posix()
        for path in source.rglob("*")
        if path.is_file()
        and crawl in path.name
        and not path.relative_to(source).as_posix().startswith(("_index/", "_manifests/", ".spool/"))
    ]
    record = json.loads(manifest.read_text(encoding="utf-8"))
    made: set[Path] = set()
    for run in range(size.runs):
        new = run_id(run)
        for name in files:
            if name.startswith(f"{TEMPLATE_FOLDER}/") and run < size.runs - 1:
                continue  # each crawl deletes the older templates: the newest run's alone are left
            copy = target / name.replace(crawl, new)
            if copy.parent not in made:
                copy.parent.mkdir(parents=True, exist_ok=True)
                made.add(copy.parent)
            link_or_copy(source / name, copy)
        rewritten = json.loads(json.dumps(record).replace(crawl, new))
        rewritten["started_at"] = rewritten["finished_at"] = (FIRST_RUN + timedelta(hours=run)).isoformat()
        manifest_path = target / manifest_key(new)
        manifest_path.parent.mkdir(parents=True, exist_ok=True)
        manifest_path.write_text(json.dumps(rewritten, indent=1), encoding="utf-8")
    write_index(source, target, crawl, [f for f in files if f.endswith(".parquet")], size)


def write_index(source: Path, target: Path, crawl: str, parts: list[str], size: Size) -> None:
    """The index as today's code leaves it after ``size.runs`` runs: one base and the
    deltas since. The crawl's own entries are the last run's (so its URLs are known), the rest
    spread over the runs and their parts, one URL each."""
    real = pq.read_table(next((source / "_index").glob("delta-*")))
    ids = [run_id(run) for run in range(size.runs)]
    synthetic = size.entries - real.num_rows
    runs = np.arange(synthetic) * size.runs // synthetic
    table = pa.concat_tables(
        [synthetic_entries(real, crawl, parts, ids, runs), last_run_entries(real, crawl, ids[-1])]
    )
    run_of = np.concatenate([runs, np.full(real.num_rows, size.runs - 1)])
    sealed = max(0, size.runs - 1 - DELTAS_OUTSIDE_BASE)  # the run whose compaction wrote the base
    merged = [delta_key(ids[r]) for r in range(sealed + 1)] + [
        base_key(ids[r]) for r in range(COMPACT_AFTER, sealed, COMPACT_AFTER)
    ]
    index = target / "_index"
    index.mkdir(parents=True, exist_ok=True)
    in_base = run_of <= sealed
    base = table.filter(pa.array(in_base)).replace_schema_metadata({MERGED_KEY: json.dumps(sorted(merged))})
    (target / base_key(ids[sealed])).write_bytes(parquet_file(base))
    for run in range(sealed + 1, size.runs):
        (target / delta_key(ids[run])).write_bytes(parquet_file(table.filter(pa.array(run_of == run))))


def synthetic_entries(
    real: pa.Table, crawl: str, parts: list[str], ids: list[str], runs: np.ndarray
) -> pa.Table:
    """An archived URL per element of ``runs`` (the run that wrote it), on the hosts of the
    crawl's outlets, each in one of its run's parts in turn; keys and text hashes sha256 hex."""
    hosts = {
        file.split("/")[0]: urlsplit(url).netloc
        for file, url in zip(real.column("file").to_pylist(), real.column("url").to_pylist(), strict=True)
        if file
    }
    numbers = range(len(runs))
    file = [parts[n % len(parts)].replace(crawl, ids[r]) for n, r in zip(numbers, runs.tolist(), strict=True)]
    url = [
        f"https://{hosts.get(f.split('/')[0], 'news.example')}/{ids[r][:8]}/{n}.html"
        for n, r, f in zip(numbers, runs.tolist(), file, strict=True)
    ]
    url_keys = [hashlib.sha256(u.encode()).hexdigest() for u in url]
    fetched = np.datetime64(FIRST_RUN.replace(tzinfo=None), "us") + runs.astype("timedelta64[h]")
    columns = {
        "url_key": url_keys,
        "url": url,
        "article_id": url_keys,
        "canonical_url": url,
        "text_hash": [hashlib.sha256(b"text %d" % n).hexdigest() for n in numbers],
        "version": np.ones(len(runs), np.int32),
        "file": file,
        "first_fetched": fetched.astype("datetime64[us]"),
        "last_fetched": fetched.astype("datetime64[us]"),
        "crawl_id": [ids[r] for r in runs.tolist()],
    }
    return pa.table(
        {
            f.name: pa.array(columns[f.name], f.type) if f.name in columns else pa.nulls(len(runs), f.type)
            for f in INDEX_SCHEMA
        },
        schema=INDEX_SCHEMA,
    )


def last_run_entries(real: pa.Table, crawl: str, last: str) -> pa.Table:
    """The crawl's own index entries (visits included, where the schema has them) as run ``last``'s."""
    columns = {
        f.name: real.column(f.name).cast(f.type)
        if f.name in real.column_names
        else pa.nulls(len(real), f.type)
        for f in INDEX_SCHEMA
    }
    columns["file"] = pa.array(
        [f and f.replace(crawl, last) for f in real.column("file").to_pylist()], pa.string()
    )
    columns["crawl_id"] = pa.array([last] * len(real), pa.string())
    return pa.table(columns, schema=INDEX_SCHEMA)


def cached_archive(cache: Path, size: Size, rebuild: bool) -> Path:
    """The archive of ``size``, built if the cache has none (or ``rebuild``)."""
    folder = cache / f"{size.entries}-{size.runs}"
    if rebuild or not (folder / "complete").exists():
        shutil.rmtree(folder, ignore_errors=True)
        start = time.perf_counter()
        build_archive(source_crawl(cache), folder / "archive", size)
        (folder / "complete").write_text(f"{time.perf_counter() - start:.0f} s to build\n")
        print(f"built {size.label}: {(folder / 'complete').read_text().strip()}", flush=True)
    return folder / "archive"


def tree_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Our environment, with the tree under test first on the path (its crawls and their workers)."""
    path = os.pathsep.join(p for p in (str(TREE), os.environ.get("PYTHONPATH", "")) if p)
    return {**os.environ, "PYTHONPATH": path, **(extra or {})}


def crawl_command(archive: str, spool: Path, log_level: str = "DEBUG") -> list[str]:
    return [
        sys.executable,
        "-m",
        "crawler",
        "crawl",
        "--mirror",
        "--archive",
        archive,
        "--spool",
        str(spool),
        "--log-level",
        log_level,
    ]


@dataclass
class Measured:
    seconds: float
    first_request: float | None  # seconds from the start to the first "Crawled" line
    peak_rss_mb: float  # the process and its descendants together
    requests: Counter = field(default_factory=Counter)


def measure(command: list[str], env: dict[str, str]) -> Measured:
    """Run ``command`` in the tree under test: its wall time, the time of its first request (from
    its log, read as it comes) and its peak RSS summed over its processes (sampled every 20 ms)."""
    start = time.perf_counter()
    process = subprocess.Popen(
        command, cwd=TREE, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    peak, first, tail = 0, None, []
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        tree, looked_up = {process.pid}, 0.0
        while not done.wait(0.02):
            if time.monotonic() - looked_up > 0.2:
                tree, looked_up = descendants(process.pid), time.monotonic()
            peak = max(peak, sum(rss_kb(pid) for pid in tree))

    sampler = threading.Thread(target=sample)
    sampler.start()
    for line in process.stdout:
        if first is None and "Crawled (" in line:
            first = time.perf_counter() - start
        tail = [*tail[-40:], line]
    process.wait()
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    if process.returncode:
        raise RuntimeError(f"{command[3:5]} failed ({process.returncode}):\n{''.join(tail)}")
    return Measured(seconds, first, peak / 1024)


def local_requests(archive: str, spool: Path, env: dict[str, str]) -> Counter:
    """What a crawl opens in a local archive: folders (LIST, and the entries they hold: keys),
    files read (GET) and written (PUT); counted on one more crawl, under strace, not timed."""
    trace = spool.with_name(f"{spool.name}.strace")
    command = ["strace", "-f", "-qq", "--seccomp-bpf", "-e", "trace=openat", "-o", str(trace)]
    subprocess.run(
        [*command, *crawl_command(archive, spool, "WARNING")],
        cwd=TREE,
        env=env,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    counts: Counter = Counter()
    with trace.open(encoding="utf-8", errors="replace") as lines:
        for line in lines:
            opened = _OPENAT.search(line)
            if opened and opened["path"].startswith(f"{archive}/") and "/.spool" not in opened["path"]:
                flags = opened["flags"]
                counts["LIST" if "O_DIRECTORY" in flags else "PUT" if "O_RDONLY" not in flags else "GET"] += 1
                if "O_DIRECTORY" in flags and os.path.isdir(opened["path"]):
                    counts["keys listed"] += len(os.listdir(opened["path"]))
    trace.unlink()
    return counts


class CountingProxy:
    """A reverse proxy on loopback in front of an S3 endpoint, counting requests by kind (LIST:
    a GET of a bucket; else the method). The Host header goes through as signed."""

    def __init__(self, upstream: str):
        target = urlsplit(upstream)
        self.counts: Counter = Counter()
        lock = threading.Lock()
        counts = self.counts

        class Forward(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed ACK

            def setup(self) -> None:
                super().setup()
                self.upstream = http.client.HTTPConnection(target.hostname, target.port, timeout=300)

            def log_message(self, *args: object) -> None:
                return None

            def forward(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                path = urlsplit(self.path).path.strip("/")
                kind = "LIST" if self.command == "GET" and "/" not in path else self.command
                with lock:
                    counts[kind] += 1
                headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
                try:
                    response, data = self.relay(body, headers)
                except (http.client.HTTPException, OSError):  # the store closed a kept-alive connection
                    self.upstream.close()
                    response, data = self.relay(body, headers)
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_BY_HOP and (
                        name.lower() != "content-length" or self.command == "HEAD"
                    ):
                        self.send_header(name, value)
                if self.command != "HEAD":
                    self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)

            def relay(
                self, body: bytes | None, headers: dict[str, str]
            ) -> tuple[http.client.HTTPResponse, bytes]:
                self.upstream.request(self.command, self.path, body=body, headers=headers)
                response = self.upstream.getresponse()
                return response, response.read()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self) -> Counter:
        """The counts since the last call."""
        taken = Counter(self.counts)
        self.counts.clear()
        return taken

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def upload(store: ObjectStore, archive: Path) -> str:
    """``archive``'s files into a new bucket of ``store`` (a thread pool); its ``s3://`` URI."""
    bucket = store.create_bucket()
    client = store.client()
    files = [
        p
        for p in archive.rglob("*")
        if p.is_file() and ".spool" not in p.parts and p.name != ".newsarchive.lock"
    ]

    def put(path: Path) -> None:
        client.put_object(
            Bucket=bucket, Key=f"news/{path.relative_to(archive).as_posix()}", Body=path.read_bytes()
        )

    with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
        list(pool.map(put, files))
    return f"s3://{bucket}/news"


@dataclass
class Row:
    store: str
    size: Size | None  # None: the fresh archive
    crawl: Measured
    first_crawl: float
    commands: dict[str, Measured]


def measure_archive(
    store: str, size: Size | None, archive: str, work: Path, env: dict[str, str], proxy: CountingProxy | None
) -> Row:
    """Two crawls of the mirror (finding nothing new) on ``archive``, the second measured; then
    ls, pull and verify."""
    name = "fresh" if size is None else f"{size.entries}-{size.runs}"
    work.mkdir(parents=True, exist_ok=True)
    first = measure(crawl_command(archive, work / f"spool-{name}"), env)
    if proxy:
        proxy.take()
    crawl = measure(crawl_command(archive, work / f"spool-{name}"), env)
    crawl.requests = proxy.take() if proxy else local_requests(archive, work / f"spool-{name}", env)
    commands = {}
    dest = work / f"pull-{name}"
    for command, args in (
        ("ls", ["ls", archive]),
        ("pull", ["pull", "--outlet", PULL_OUTLET, archive, str(dest)]),
        *([("verify", ["verify", archive])] if proxy is None else []),  # every object: local only
    ):
        commands[command] = measure([sys.executable, "-m", "crawler", *args], env)
        commands[command].requests = proxy.take() if proxy else Counter()
    shutil.rmtree(dest, ignore_errors=True)
    row = Row(store, size, crawl, first.seconds, commands)
    print(describe(row), flush=True)
    return row


def requests_text(counts: Counter) -> str:
    return ", ".join(f"{counts[kind]} {kind}" for kind in sorted(counts)) or "-"


def describe(row: Row) -> str:
    first = f"{row.crawl.first_request:.1f}" if row.crawl.first_request is not None else "-"
    size = "fresh (1 run)" if row.size is None else row.size.label
    return (
        f"| {row.store} | {size} | {row.crawl.seconds:.1f} (first crawl {row.first_crawl:.1f}) | {first} | "
        f"{row.crawl.peak_rss_mb:.0f} | {requests_text(row.crawl.requests)} | "
        f"{requests_text(row.commands['ls'].requests)} | "
        + " | ".join(
            f"{row.commands[c].seconds:.1f}" if c in row.commands else "-" for c in ("ls", "pull", "verify")
        )
        + " |"
    )


def estimate(rows: list[Row], fresh: Row) -> str:
    """20M entries: the slope per entry between the two largest sizes of 100 runs, added to the
    row of most runs at the larger of them (1M / 10,000: the runs' own cost counted in)."""
    at_100 = sorted((r for r in rows if r.size and r.size.runs == 100), key=lambda r: r.size.entries)
    if len(at_100) < 2:
        return "20M: not estimated (two sizes of 100 runs needed)"
    low, high = at_100[-2], at_100[-1]
    anchor = max(
        (r for r in rows if r.size and r.size.entries == high.size.entries), key=lambda r: r.size.runs
    )
    span = high.size.entries - low.size.entries
    mb = (high.crawl.peak_rss_mb - low.crawl.peak_rss_mb) / span
    seconds = (high.crawl.seconds - low.crawl.seconds) / span
    extra = ESTIMATED_ENTRIES - anchor.size.entries
    return (
        f"20M / {anchor.size.runs:,} estimated ({low.size.label} to {high.size.label}: "
        f"{mb * 1e6 / 1024:.2f} KB and {seconds * 1e6:.1f} us an entry, from {anchor.size.label}): "
        f"crawl {anchor.crawl.seconds + seconds * extra:.0f} s, "
        f"peak RSS {anchor.crawl.peak_rss_mb + mb * extra:.0f} MB (fresh {fresh.crawl.peak_rss_mb:.0f} MB)"
    )


def result_line(rows: list[Row], fresh: dict[str, Row]) -> str:
    """The targets' figures, at the largest archive of 10,000 runs measured (else the largest)."""
    figures = []
    for store, base in fresh.items():
        measured = [r for r in rows if r.store == store and r.size]
        if not measured:
            continue
        row = max(measured, key=lambda r: (r.size.runs, r.size.entries))
        prefix = f"{store}_"
        figures += [
            f"{prefix}size={row.size.entries}/{row.size.runs}",
            f"{prefix}mem_delta_mb={row.crawl.peak_rss_mb - base.crawl.peak_rss_mb:.0f}",
            f"{prefix}time_ratio={(row.crawl.seconds - 3) / base.crawl.seconds:.2f}",
            f"{prefix}crawl_s={row.crawl.seconds:.1f}",
            f"{prefix}fresh_crawl_s={base.crawl.seconds:.1f}",
            f"{prefix}ls_s={row.commands['ls'].seconds:.1f}",
            f"{prefix}pull_ratio={row.commands['pull'].seconds / base.commands['pull'].seconds:.2f}",
        ]
        if store == "s3":
            figures.append(f"{prefix}requests={sum(row.crawl.requests.values())}")
            figures.append(f"{prefix}fresh_requests={sum(base.crawl.requests.values())}")
    return "RESULT bench_archive " + " ".join(figures)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default=SIZES, help=f"entries/runs, comma-separated (default {SIZES})")
    parser.add_argument("--full", action="store_true", help=f"also {FULL_SIZES} (a long build)")
    parser.add_argument("--stores", default="local,s3", help="local, s3 (SeaweedFS), or both")
    parser.add_argument(
        "--cache", type=Path, default=CACHE, help=f"where built archives are kept (default {CACHE})"
    )
    parser.add_argument("--rebuild", action="store_true", help="build the archives again")
    args = parser.parse_args()
    sizes = [Size.parse(s) for s in (args.sizes + (f",{FULL_SIZES}" if args.full else "")).split(",") if s]
    stores = args.stores.split(",")
    schema = hashlib.sha256(INDEX_SCHEMA.to_string(show_field_metadata=False).encode()).hexdigest()[:8]
    cache = args.cache / f"schema-{schema}"
    cache.mkdir(parents=True, exist_ok=True)
    print(f"code under test: {TREE}; cache {cache}", flush=True)
    archives = {size: cached_archive(cache, size, args.rebuild) for size in sizes}
    source = source_crawl(cache)
    print(
        "| store | entries / runs | crawl s | before the first request s | peak RSS MB | requests "
        "| ls requests | ls s | pull s | verify s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    rows: list[Row] = []
    fresh: dict[str, Row] = {}
    with tempfile.TemporaryDirectory(dir=cache, prefix="work-") as scratch:
        work = Path(scratch)
        if "local" in stores:
            copy_archive(source, work / "fresh")
            fresh["local"] = measure_archive("local", None, str(work / "fresh"), work, tree_env(), None)
            for size, archive in archives.items():
                copy_archive(archive, work / f"local-{size.entries}-{size.runs}")
                rows.append(
                    measure_archive(
                        "local", size, str(work / f"local-{size.entries}-{size.runs}"), work, tree_env(), None
                    )
                )
                shutil.rmtree(work / f"local-{size.entries}-{size.runs}")
        if "s3" in stores:
            store = SeaweedFS(work / "seaweedfs")
            proxy = CountingProxy(store.endpoint)
            try:
                env = tree_env({**store.env, "AWS_ENDPOINT_URL": proxy.endpoint})
                fresh["s3"] = measure_archive("s3", None, upload(store, source), work / "s3", env, proxy)
                for size, archive in archives.items():
                    start = time.perf_counter()
                    uri = upload(store, archive)
                    print(f"uploaded {size.label} in {time.perf_counter() - start:.0f} s", flush=True)
                    rows.append(measure_archive("s3", size, uri, work / "s3", env, proxy))
            finally:
                proxy.stop()
                store.stop(grace=0)
    if fresh:
        print(
            estimate(
                [r for r in rows if r.store == "local"], fresh.get("local") or next(iter(fresh.values()))
            )
        )
    print(result_line(rows, fresh))


if __name__ == "__main__":
    main()
