"""What an archive costs in storage per 1,000 articles, with WARC and with ``--no-warc``.

Two crawls each (with and without WARC) of the offline mirrors and of every page of
``../shared/eval`` served on loopback (as ``bench_crawl`` serves them). Run with
``make bench``; reported, not asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from benchmarks.bench_crawl import REPO, Site, build_site, crawl_command


def _sizes(archive: Path) -> dict[str, int]:
    """Bytes of the archive by kind, and its rows (from the manifests)."""
    sizes = {"parquet": 0, "index and manifests": 0, "warc": 0, "cdxj": 0, "rows": 0}
    for path in archive.rglob("*"):
        relative = path.relative_to(archive).as_posix()
        if not path.is_file() or relative.startswith("."):
            continue
        if relative.endswith(".warc.gz"):
            sizes["warc"] += path.stat().st_size
        elif relative.endswith(".cdxj"):
            sizes["cdxj"] += path.stat().st_size
        elif relative.startswith("outlet="):
            sizes["parquet"] += path.stat().st_size
        else:
            sizes["index and manifests"] += path.stat().st_size
    for manifest in (archive / "_manifests").glob("*.json"):
        sizes["rows"] += json.loads(manifest.read_text(encoding="utf-8"))["rows"]
    return sizes


def _crawl(command: list[str], warc: bool) -> None:
    subprocess.run([*command, *([] if warc else ["--no-warc"])], cwd=REPO, check=True, capture_output=True)


def _report(name: str, with_warc: dict[str, int], without: dict[str, int]) -> None:
    def per_thousand(sizes: dict[str, int], kinds: tuple[str, ...]) -> float:
        return sum(sizes[k] for k in kinds) / sizes["rows"] * 1000 / 1e6

    text_only = per_thousand(without, ("parquet", "index and manifests"))
    parquet = per_thousand(with_warc, ("parquet", "index and manifests"))
    warcs = per_thousand(with_warc, ("warc", "cdxj"))
    warc, cdxj = per_thousand(with_warc, ("warc",)), per_thousand(with_warc, ("cdxj",))
    print(
        f"{name}: {with_warc['rows']} articles; per 1,000 articles: --no-warc {text_only:.2f} MB; "
        f"with WARC {parquet + warcs:.2f} MB (Parquet, index and manifests {parquet:.2f} MB, "
        f"WARC {warc:.2f} MB, CDXJ {cdxj:.2f} MB): x{(parquet + warcs) / text_only:.1f}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="newsarchive-storage-") as tmp:
        root = Path(tmp)
        mirror = [sys.executable, "-m", "crawler", "crawl", "--mirror", "--quiet", "--archive"]
        for warc in (True, False):
            _crawl([*mirror, str(root / f"mirror-{warc}")], warc)
        _report("offline mirrors", _sizes(root / "mirror-True"), _sizes(root / "mirror-False"))
        pages = build_site(root / "site", 1)
        site = Site(root / "site")
        try:
            for warc in (True, False):
                _crawl(crawl_command(site, root, root / f"eval-{warc}"), warc)
        finally:
            site.stop()
        _report(f"../shared/eval ({pages} pages)", _sizes(root / "eval-True"), _sizes(root / "eval-False"))


if __name__ == "__main__":
    main()
