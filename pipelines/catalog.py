"""What the archive holds, for the people who read it: runs, files, outlets, months, languages.

Everything here comes from the manifests (``_manifests/<crawl id>.json``): each lists the files
its run published with their rows, bytes, sha256 and rows per language, and a file's key names
its outlet and month (``outlet=<id>/published=<YYYY-MM>/part-...``). A compaction's manifest
also names the files its own replace (``supersedes``): those are out of the dataset from the
moment that manifest exists. So ``newsarchive ls`` and
``pull``'s partition pruning open no Parquet file; ``verify`` (:mod:`pipelines.verify`) checks
the files against what the manifests say.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import date

from pipelines.index import MANIFESTS
from pipelines.schema import UNKNOWN_MONTH
from pipelines.storage import Store, StoreError

COMPACTED = "-compacted-"  # in the name of every file a compaction writes, and of no other


@dataclass(frozen=True)
class ArchivedFile:
    """One Parquet file as its run's manifest lists it."""

    key: str  # relative to the archive root
    crawl_id: str
    rows: int
    bytes: int
    sha256: str
    languages: dict[str, int] | None  # rows per language; None in manifests older than the field

    @property
    def partition(self) -> dict[str, str]:
        """``{"outlet": ..., "published": ...}``, read from the key."""
        parts = dict(part.split("=", 1) for part in self.key.split("/")[:-1] if "=" in part)
        return {"outlet": parts.get("outlet", ""), "published": parts.get("published", UNKNOWN_MONTH)}

    @property
    def outlet(self) -> str:
        return self.partition["outlet"]

    @property
    def month(self) -> str:
        return self.partition["published"]

    def may_hold(
        self,
        outlets: set[str] | None = None,
        since: date | None = None,
        until: date | None = None,
        languages: set[str] | None = None,
    ) -> bool:
        """False when the key or the manifest rules out every row matching the filters (a row
        without a publication date matches no date filter)."""
        if outlets and self.outlet not in outlets:
            return False
        if since or until:
            if self.month == UNKNOWN_MONTH:
                return False
            if since and self.month < f"{since:%Y-%m}":
                return False
            if until and self.month > f"{until:%Y-%m}":
                return False
        return not (languages and self.languages is not None and not languages & set(self.languages))


@dataclass(frozen=True)
class ArchivedWarc:
    """One WARC file, and its CDXJ index, as its run's manifest lists them."""

    key: str
    crawl_id: str
    bytes: int
    sha256: str
    records: int
    cdxj: ArchivedFile  # rows 0: an index, not Parquet


@dataclass(frozen=True)
class Run:
    """One crawl, as its manifest tells it."""

    crawl_id: str
    manifest: str  # its key
    schema_version: str
    started_at: str | None
    finished_at: str | None
    interrupted: bool
    files: tuple[ArchivedFile, ...]
    supersedes: tuple[str, ...] = ()  # a compaction's: the keys its files replace
    compaction: bool = False  # a compaction's manifest, not a crawl's
    warcs: tuple[ArchivedWarc, ...] = ()

    @property
    def rows(self) -> int:
        return sum(file.rows for file in self.files)

    @property
    def bytes(self) -> int:
        return sum(file.bytes for file in self.files)


@dataclass
class Catalog:
    runs: list[Run]
    problems: list[str] = field(default_factory=list)  # manifests that could not be read, one line each

    @classmethod
    def read(cls, store: Store) -> Catalog:
        runs, problems = [], []
        for key in sorted(store.object_keys(f"{MANIFESTS}/")):
            if not key.endswith(".json"):
                continue
            try:
                runs.append(_run(key, json.loads(store.read(key))))
            except (StoreError, ValueError, KeyError, TypeError, AttributeError) as exc:
                problems.append(f"{key}: unreadable manifest ({type(exc).__name__}: {exc})")
        return cls(runs, problems)

    @property
    def superseded(self) -> set[str]:
        """Keys a compaction replaced: no longer part of the dataset, deleted or soon to be."""
        return {key for run in self.runs for key in run.supersedes}

    @property
    def listed(self) -> set[str]:
        """Every key a manifest lists, superseded or not."""
        return {file.key for run in self.runs for file in run.files}

    @property
    def warcs(self) -> list[ArchivedWarc]:
        """Every WARC of the archive: the HTTP exchanges the rows' ``warc_file`` point into."""
        return [warc for run in self.runs for warc in run.warcs]

    @property
    def files(self) -> list[ArchivedFile]:
        """The dataset: every file a manifest lists and no compaction superseded."""
        superseded = self.superseded
        return [file for run in self.runs for file in run.files if file.key not in superseded]

    def summary(self) -> dict:
        """Runs, outlets, months, languages, rows and bytes: what ``ls --json`` prints."""
        files = self.files
        outlets: dict[str, dict] = {}
        for file in files:
            outlet = outlets.setdefault(
                file.outlet, {"files": 0, "rows": 0, "bytes": 0, "months": Counter(), "languages": Counter()}
            )
            outlet["files"] += 1
            outlet["rows"] += file.rows
            outlet["bytes"] += file.bytes
            outlet["months"][file.month] += file.rows
            outlet["languages"].update(_languages(file))
        return {
            "runs": [
                {
                    "crawl_id": run.crawl_id,
                    "started_at": run.started_at,
                    "finished_at": run.finished_at,
                    "interrupted": run.interrupted,
                    "compaction": run.compaction,
                    "schema_version": run.schema_version,
                    "files": len(run.files),
                    "rows": run.rows,
                    "bytes": run.bytes,
                }
                for run in self.runs
            ],
            "outlets": {
                name: {
                    **figures,
                    "months": dict(sorted(figures["months"].items())),
                    "languages": _ranked(figures["languages"]),
                }
                for name, figures in sorted(outlets.items())
            },
            "months": dict(sorted(sum((o["months"] for o in outlets.values()), Counter()).items())),
            "languages": _ranked(sum((o["languages"] for o in outlets.values()), Counter())),
            "files": len(files),
            "rows": sum(file.rows for file in files),
            "bytes": sum(file.bytes for file in files),
            "warcs": len(self.warcs),
            "warc_bytes": sum(warc.bytes + warc.cdxj.bytes for warc in self.warcs),
            "problems": self.problems,
        }


def _run(key: str, manifest: dict) -> Run:
    crawl_id = manifest["crawl_id"]
    files = tuple(
        ArchivedFile(
            key=entry["key"],
            crawl_id=crawl_id,
            rows=int(entry["rows"]),
            bytes=int(entry["bytes"]),
            sha256=entry["sha256"],
            languages=entry.get("languages"),
        )
        for entry in manifest.get("files", [])
    )
    warcs = tuple(
        ArchivedWarc(
            key=entry["key"],
            crawl_id=crawl_id,
            bytes=int(entry["bytes"]),
            sha256=entry["sha256"],
            records=int(entry["records"]),
            cdxj=ArchivedFile(
                entry["cdxj"]["key"], crawl_id, 0, int(entry["cdxj"]["bytes"]), entry["cdxj"]["sha256"], None
            ),
        )
        for entry in manifest.get("warcs", [])
    )
    return Run(
        crawl_id=crawl_id,
        manifest=key,
        schema_version=str(manifest.get("schema_version", "")),
        started_at=manifest.get("started_at"),
        finished_at=manifest.get("finished_at"),
        interrupted=bool(manifest.get("interrupted")),
        files=files,
        supersedes=tuple(manifest.get("supersedes", ())),
        compaction=bool(manifest.get("compaction")),
        warcs=warcs,
    )


def _languages(file: ArchivedFile) -> dict[str, int]:
    """Rows per language; the rows of a manifest older than the field count as ``?``."""
    return file.languages if file.languages is not None else {"?": file.rows}


def _ranked(counts: Counter[str]) -> dict[str, int]:
    return dict(counts.most_common())
