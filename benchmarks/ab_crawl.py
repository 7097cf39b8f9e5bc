"""Interleaved crawls of two or more working trees on one loopback site: is a change faster?

``python -m benchmarks.ab_crawl [--copies 1] [--rounds 8] TREE[:NAME=VALUE,...] ...``, each TREE a
checkout (``git worktree add /tmp/before HEAD~1``), optionally with environment variables of its
own. Each round crawls the site (``make bench``'s N site, or 5N with ``--copies 5``) once with
every tree, in turn, the order reversed every other round, so that the host's slow minutes fall
on all of them alike; each crawl runs its tree's code (``python -m`` from the tree, whose worker
processes inherit it). Prints every crawl, then each tree's median pages/s and CPU per page and
highest peak RSS. Reported, not asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
from pathlib import Path

from benchmarks.bench_crawl import Run, Site, build_site, crawl_command, measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("trees", nargs="+", help="TREE or TREE:NAME=VALUE,... (a checkout, its environment)")
    parser.add_argument("--copies", type=int, default=1, help="copies of each page (5: the 5N site)")
    parser.add_argument("--rounds", type=int, default=8, help="crawls of each tree")
    args = parser.parse_args()
    variants = []
    for spec in args.trees:
        tree, _, assignments = spec.partition(":")
        extra = dict(pair.split("=", 1) for pair in assignments.split(",") if pair)
        variants.append((spec, Path(tree).resolve(), os.environ | extra))
    runs: dict[str, list[Run]] = {spec: [] for spec, _, _ in variants}
    with tempfile.TemporaryDirectory(prefix="newsarchive-ab-") as tmp:
        root = Path(tmp)
        pages = build_site(root / "site", args.copies)
        site = Site(root / "site")
        try:
            for round_ in range(args.rounds):
                for number, (spec, tree, env) in enumerate(variants if round_ % 2 == 0 else variants[::-1]):
                    archive = root / f"archive-{round_}-{number}"
                    run = measure(crawl_command(site, root, archive), cwd=tree, env=env)
                    runs[spec].append(run)
                    print(
                        f"round {round_ + 1} {spec}: {pages / run.seconds:.1f} pages/s, "
                        f"{run.cpu_seconds / pages * 1000:.1f} ms CPU a page, {run.peak_rss_mb:.0f} MB",
                        flush=True,
                    )
        finally:
            site.stop()
    for spec, measured in runs.items():
        print(
            f"{spec}: median {statistics.median(pages / r.seconds for r in measured):.1f} pages/s, "
            f"{statistics.median(r.cpu_seconds for r in measured) / pages * 1000:.1f} ms CPU a page, "
            f"peak {max(r.peak_rss_mb for r in measured):.0f} MB ({len(measured)} crawls)"
        )


if __name__ == "__main__":
    main()
