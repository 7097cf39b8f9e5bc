"""Benchmarks, reported not asserted: the mirror crawl into each archive back end, and the
publication of a large part (s3transfer multipart, then the HEAD check) on each real store.

Run with ``make bench``; starts SeaweedFS and Ceph RGW on loopback as the tests do.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pipelines.archive.storage import S3Store
from tests.objectstores import CephRGW, ObjectStore, SeaweedFS

REPO = Path(__file__).resolve().parent.parent
RUNS = 3
LARGE_MIB = 64


def crawl_seconds(archive: str, spool: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "crawler",
            "crawl",
            "--mirror",
            "--archive",
            archive,
            "--spool",
            str(spool),
            "--quiet",
        ],
        cwd=REPO,
        check=True,
        env={**os.environ, **env},
    )
    return time.perf_counter() - start


def report(name: str, runs: list[float]) -> None:
    print(
        f"{name:<44} median {statistics.median(runs):.2f} s over {len(runs)} runs "
        f"(min {min(runs):.2f}, max {max(runs):.2f})"
    )


def bench_store(store: ObjectStore, folder: Path) -> None:
    runs = [  # a spool serves one archive (it refuses another's crawls): one spool per bucket
        crawl_seconds(f"s3://{store.create_bucket()}/news", folder / f"spool-{run}", store.env)
        for run in range(RUNS)
    ]
    report(f"mirror crawl into {store.name}", runs)
    large = folder / "large.parquet"
    large.write_bytes(os.urandom(LARGE_MIB << 20))
    os.environ.update(store.env)
    target = S3Store(f"s3://{store.create_bucket()}/news")
    start = time.perf_counter()
    target.publish(large, "large.parquet")
    seconds = time.perf_counter() - start
    print(
        f"{'publish ' + str(LARGE_MIB) + ' MiB to ' + store.name:<44} {seconds:.2f} s "
        f"({LARGE_MIB / seconds:.0f} MiB/s, multipart 8 MiB parts, verified)"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        runs = [
            crawl_seconds(str(folder / f"local{i}"), folder / f"local{i}" / ".spool", {}) for i in range(RUNS)
        ]
        report("mirror crawl into a local folder", runs)
        for kind in (SeaweedFS, CephRGW):
            store = kind(folder / kind.__name__)
            try:
                bench_store(store, folder / f"{kind.__name__}-work")
            finally:
                store.stop()


if __name__ == "__main__":
    main()
