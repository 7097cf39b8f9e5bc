"""What the archive holds, for the people who read it: runs, files, outlets, months, languages.

Everything here comes from the manifests (``_manifests/<crawl id>.json``): each lists the files
its run published with their rows, bytes, sha256 and rows per language, and a file's key names
its outlet and month (``outlet=<id>/published=<YYYY-MM>/part-...``). A compaction's manifest
also names the files its own replace (``supersedes``): those are out of the dataset from the
moment that manifest exists. So ``newsarchive ls`` and
``pull``'s partition pruning open no Parquet file; ``verify`` (:mod:`pipelines.tools.verify`) checks
the files against what the manifests say.

A manifest may come from elsewhere or be damaged: each is parsed by
:meth:`pipelines.archive.manifest.Manifest.parse`, where each key it names is checked against its
kind's grammar (:mod:`pipelines.archive.keys`) and an entry whose key fails is left out, named in the
problems. ``supersedes`` is taken only from a compaction's manifest, only for parts of the
partitions its own files are in, and only for a part whose rows its files hold by what the
manifests state (the part's article ids among theirs); what else it names is a problem, never out
of the dataset.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field, replace
from typing import Literal

from pipelines.archive.index import PART_MAX_BYTES, Damaged, read_capped
from pipelines.archive.keys import MANIFESTS, checked, part_of, shown
from pipelines.archive.manifest import (
    MANIFEST_MAX_BYTES,
    ArchivedFile,
    ArchivedWarc,
    Manifest,
    discovery_of,
    loads,
)
from pipelines.archive.storage import Store, StoreError


@dataclass
class Catalog:
    runs: list[Manifest]  # one per manifest read, in the order of their keys
    problems: list[str] = field(default_factory=list)  # manifests or entries not taken, one line each
    unreadable: list[str] = field(default_factory=list)  # keys of manifests that could not be read

    @classmethod
    def read(cls, store: Store) -> Catalog:
        catalog = cls([])
        for key in sorted(store.object_keys(f"{MANIFESTS}/")):
            if not key.endswith(".json"):
                continue
            try:
                catalog.runs.append(
                    Manifest.read(
                        checked(key, "manifest"),
                        read_capped(store, key, MANIFEST_MAX_BYTES),
                        catalog.problems,
                    )
                )
            except (StoreError, ValueError) as exc:  # BadManifest, BadKey, Damaged, JSON's errors
                catalog.unreadable.append(key)
                catalog.problems.append(f"{shown(key)}: unreadable manifest ({type(exc).__name__}: {exc})")
        catalog._drop_second_listings()
        catalog._drop_unbacked_supersedes(store)
        return catalog

    def _drop_second_listings(self) -> None:
        """A file listed more than once counts once: by the manifest of the run its key names (a
        part names the crawl that wrote it, a compacted part its compaction), else by the first
        manifest that lists it. Any other listing is left out and named: a manifest listing
        another run's parts would have readers count their rows twice and compaction write them
        twice."""
        listings: dict[str, list[Manifest]] = defaultdict(list)
        for run in self.runs:
            for file in run.files:
                listings[file.key].append(run)
        keeper = {
            key: next((run for run in runs if run.crawl_id == part_of(key).crawl_id), runs[0])
            for key, runs in listings.items()
            if len(runs) > 1
        }
        for i, run in enumerate(self.runs):
            kept, seen = [], set()
            for file in run.files:
                if file.key in keeper and (keeper[file.key] is not run or file.key in seen):
                    self.problems.append(
                        f"{run.key}: files entry {shown(file.key)} left out: listed again, it counts "
                        f"once, in {keeper[file.key].key}"
                    )
                else:
                    kept.append(file)
                    seen.add(file.key)
            if len(kept) < len(run.files):
                self.runs[i] = replace(run, files=tuple(kept))

    def _drop_unbacked_supersedes(self, store: Store) -> None:
        """A compaction's ``supersedes`` counts only while its own files are there (or replaced
        in turn by a later compaction), and only for the parts whose rows they hold by what the
        manifests state (:meth:`_covered`): a manifest alone takes no row out of the dataset. One
        listing of the archive, and only if a compaction names files it replaces."""
        if not any(run.supersedes for run in self.runs):
            return
        present = set(store.object_keys())
        listings: dict[str, list[ArchivedFile]] = defaultdict(list)
        for file in (file for run in self.runs for file in run.files):
            listings[file.key].append(file)
        replaced: set[str] = set()  # by later compactions
        for i in reversed(range(len(self.runs))):
            run = self.runs[i]
            missing = [f.key for f in run.files if f.key not in present and f.key not in replaced]
            if run.supersedes and missing:
                self.problems.append(f"{run.key}: supersedes ignored: its file {missing[0]} is missing")
                self.runs[i] = replace(run, supersedes=())
            elif run.supersedes:
                self.runs[i] = replace(run, supersedes=self._covered(run, listings))
            replaced.update(self.runs[i].supersedes)

    def _covered(self, run: Manifest, listings: dict[str, list[ArchivedFile]]) -> tuple[str, ...]:
        """The keys ``run`` supersedes whose rows its files of the same partition hold, by what
        the manifests state (no data read): every listing of the part states as many article ids
        as rows (a part of no rows needs none), and those ids are among the ids its files state and
        no part before took. A key no manifest lists holds no row of the dataset (``compact``
        still reads its rows before a delete). The others stay in the dataset, named in the
        problems."""
        unclaimed: dict[str, Counter[str]] = defaultdict(Counter)
        for file in run.files:
            if file.article_ids is not None and len(file.article_ids) == file.rows:
                unclaimed[part_of(file.key).partition].update(file.article_ids)
        covered = []
        for key in run.supersedes:
            needed: Counter[str] = Counter()
            stated = True
            for listed in listings.get(key, []):
                ids = listed.article_ids if listed.article_ids is not None or listed.rows else ()
                stated &= ids is not None and len(ids) == listed.rows
                needed |= Counter(ids or ())
            pool = unclaimed[part_of(key).partition]
            if stated and needed <= pool:
                pool -= needed
                covered.append(key)
            else:
                self.problems.append(
                    f"{run.key}: supersedes {shown(key)} ignored: its files do not state the article "
                    "ids of all its rows"
                )
        return tuple(covered)

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

    def held(self, kind: Literal["outlet", "month", "language"]) -> list[str] | None:
        """The outlets, months or languages the dataset holds rows of, sorted: what a command's
        filters may name. None when that is not known: a manifest could not be read, or (for
        languages) one is older than its files' ``languages``."""
        files = [file for file in self.files if file.rows]
        if self.unreadable or (kind == "language" and any(file.languages is None for file in files)):
            return None
        if kind == "language":
            return sorted({code for file in files for code, rows in (file.languages or {}).items() if rows})
        return sorted({file.outlet if kind == "outlet" else file.month for file in files})

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


def discovery_in(store: Store, key: str, damaged: list[str]) -> dict[str, dict]:
    """The discovery validators the manifest ``key`` keeps (none if its run left any page
    unread, or the store cannot read it; see :func:`pipelines.archive.manifest.discovery_of`); a
    manifest that does not read is named in ``damaged``."""
    try:
        stated = loads(key, read_capped(store, key, MANIFEST_MAX_BYTES))
    except StoreError:
        return {}
    except ValueError as exc:  # Damaged, DamagedJSON
        damaged.append(f"{exc}; its discovery validators are not used")
        return {}
    return discovery_of(key, stated, damaged)


def _languages(file: ArchivedFile) -> dict[str, int]:
    """Rows per language; the rows of a manifest older than the field count as ``?``."""
    return file.languages if file.languages is not None else {"?": file.rows}


def _ranked(counts: Counter[str]) -> dict[str, int]:
    return dict(counts.most_common())


def digest_problems(data: bytes, file: ArchivedFile) -> list[str]:
    """What is wrong with the bytes read for ``file``: its size or sha256 (none: they are the
    bytes the run published)."""
    return digest_mismatch(file.key, len(data), file.bytes, hashlib.sha256(data).hexdigest(), file.sha256)


def read_verified(store: Store, file: ArchivedFile) -> tuple[bytes | None, list[str]]:
    """The file's bytes when they are what its manifest says; else None, and what is wrong. No
    more than its manifest's size (nor :data:`PART_MAX_BYTES`) is read: a bigger object is not."""
    limit = min(file.bytes, PART_MAX_BYTES)
    try:
        data = read_capped(store, file.key, limit)
    except StoreError as exc:
        return None, [f"{file.key}: cannot be read ({exc})"]
    except Damaged:
        return None, [f"{file.key}: over {limit} bytes (the manifest says {file.bytes}); not read"]
    problems = digest_problems(data, file)
    return (None if problems else data), problems


def digest_mismatch(key: str, size: int, listed_size: int, sha256: str, listed_sha256: str) -> list[str]:
    if size != listed_size:
        return [f"{key}: {size} bytes, the manifest says {listed_size}"]
    if sha256 != listed_sha256:
        return [f"{key}: sha256 differs from the manifest's (the file changed since it was published)"]
    return []
