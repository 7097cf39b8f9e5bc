"""Benchmarks, reported not asserted: a whole mirror crawl, and the stages per page.

Run with ``make bench``. Prints wall time of ``newsarchive crawl --mirror`` (median of 3) and the
median and p95 milliseconds per page of extraction and language detection over the mirror pages.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from crawler.mirror.sites import build_mirror
from pipelines.stages.extraction.extractor import extract
from pipelines.stages.language import LanguageDetector

REPO = Path(__file__).resolve().parent.parent


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def crawl_seconds() -> float:
    with tempfile.TemporaryDirectory() as archive:
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "crawler", "crawl", "--mirror", "--archive", archive, "--quiet"],
            cwd=REPO,
            check=True,
        )
        return time.perf_counter() - start


def main() -> None:
    runs = [crawl_seconds() for _ in range(3)]
    print(
        f"mirror crawl (31 article pages, 6 outlets): median {statistics.median(runs):.2f} s "
        f"over {len(runs)} runs"
    )
    mirror = build_mirror()
    detector = LanguageDetector()
    extract_ms, language_ms = [], []
    for _ in range(5):
        for article in mirror.articles:
            host, path = article.url.split("/", 3)[2], "/" + article.url.split("/", 3)[3]
            page = mirror.page(host, path)
            start = time.perf_counter()
            result = extract(page.body, article.url, page.content_type.partition("charset=")[2] or None)
            extract_ms.append((time.perf_counter() - start) * 1000)
            start = time.perf_counter()
            detector.detect(result.text or "")
            language_ms.append((time.perf_counter() - start) * 1000)
    for name, values in (("extraction", extract_ms), ("language", language_ms)):
        median, p95 = statistics.median(values), percentile(values, 0.95)
        print(f"{name:<10} ms/page: median {median:.2f}, p95 {p95:.2f} ({len(values)} pages)")


if __name__ == "__main__":
    main()
