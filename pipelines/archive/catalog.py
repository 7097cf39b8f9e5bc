"""What the archive holds, for the people who read it: runs, files, outlets, months, languages.

Everything here comes from the manifests (``_manifests/<crawl id>.json``): each lists the files
its run published with their rows, bytes, sha256 and rows per language, and a file's key names
its outlet and month (``outlet=<id>/published=<YYYY-MM>/part-...``). A compaction's manifest
also names the files its own replace (``supersedes``): those are out of the dataset from the
moment that manifest exists. So ``newsarchive ls`` and
``pull``'s partition pruning open no Parquet file; ``verify`` (:mod:`pipelines.tools.verify`) checks
the files against what the manifests say.

A manifest may come from elsewhere or be damaged: each key it names is checked against its
kind's grammar (:mod:`pipelines.archive.keys`) and an entry whose key fails is left out, named in the
problems. ``supersedes`` is taken only from a compaction's manifest, only for parts of the
partitions its own files are in, and only for a part whose rows its files hold by what the
manifests state (the part's article ids among theirs); what else it names is a problem, never out
of the dataset.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import date
from typing import TypeVar

from pipelines.archive.index import MANIFEST_MAX_BYTES, PART_MAX_BYTES, Damaged, read_capped
from pipelines.archive.keys import (
    COMPACTED,
    MANIFESTS,
    UNKNOWN_MONTH,
    BadKey,
    cdxj_key,
    checked,
    checked_crawl,
    part_of,
    shown,
)
from pipelines.archive.storage import Store, StoreError
from pipelines.runtime.jsondata import is_count, loads_bounded

__all__ = ["COMPACTED", "ArchivedFile", "ArchivedWarc", "BadManifest", "Catalog", "Run"]

T = TypeVar("T")


@dataclass(frozen=True)
class ArchivedFile:
    """One Parquet file as its run's manifest lists it."""

    key: str  # relative to the archive root
    crawl_id: str
    rows: int
    bytes: int
    sha256: str
    languages: dict[str, int] | None  # rows per language; None in manifests older than the field
    article_ids: tuple[str, ...] | None = None  # its rows', as its manifest states them (None: not stated)

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
                    manifest_run(
                        checked(key, "manifest"),
                        loads_bounded(read_capped(store, key, MANIFEST_MAX_BYTES), MANIFEST_MAX_BYTES, key),
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
        listings: dict[str, list[Run]] = defaultdict(list)
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
                        f"{run.manifest}: files entry {shown(file.key)} left out: listed again, it counts "
                        f"once, in {keeper[file.key].manifest}"
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
                self.problems.append(f"{run.manifest}: supersedes ignored: its file {missing[0]} is missing")
                self.runs[i] = replace(run, supersedes=())
            elif run.supersedes:
                self.runs[i] = replace(run, supersedes=self._covered(run, listings))
            replaced.update(self.runs[i].supersedes)

    def _covered(self, run: Run, listings: dict[str, list[ArchivedFile]]) -> tuple[str, ...]:
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
                    f"{run.manifest}: supersedes {shown(key)} ignored: its files do not state the article "
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


class BadManifest(ValueError):
    """A manifest, or an entry of it, whose fields are not of their types: named, never used."""


def manifest_run(key: str, manifest: object, problems: list[str]) -> Run:
    """The run a manifest tells, each field checked here, once: :class:`BadManifest` when the
    manifest itself is not one; an entry naming a key of the wrong kind or holding a field of the
    wrong type is left out, and named in ``problems``."""
    manifest = _object(manifest, "the manifest")
    crawl_id = checked_crawl(manifest.get("crawl_id"))
    files = _entries(key, manifest, "files", lambda entry: manifest_file(entry, crawl_id, "part"), problems)
    warcs = _entries(key, manifest, "warcs", lambda entry: manifest_warc(entry, crawl_id), problems)
    compaction = manifest.get("compaction") is True
    return Run(
        crawl_id=crawl_id,
        manifest=key,
        schema_version=_optional(manifest, "schema_version", str) or "",
        started_at=_optional(manifest, "started_at", str),
        finished_at=_optional(manifest, "finished_at", str),
        interrupted=bool(_optional(manifest, "interrupted", bool)),
        files=files,
        supersedes=_supersedes(key, crawl_id, _list(manifest, "supersedes"), compaction, files, problems),
        compaction=compaction,
        warcs=warcs,
    )


def _entries(
    manifest_key: str, manifest: dict, name: str, parse: Callable[[dict], T], problems: list[str]
) -> tuple[T, ...]:
    """The manifest's entries under ``name`` that ``parse`` takes; the others named in ``problems``."""
    parsed = []
    for entry in _list(manifest, name):
        try:
            parsed.append(parse(_object(entry, "the entry")))
        except (BadKey, BadManifest) as exc:
            problems.append(f"{manifest_key}: {name} entry left out: {exc}")
    return tuple(parsed)


def manifest_file(entry: dict, crawl_id: str, kind: str) -> ArchivedFile:
    languages = _optional(entry, "languages", dict)
    if languages is not None and not all(isinstance(k, str) and is_count(n) for k, n in languages.items()):
        raise BadManifest(f"languages {shown(languages)} are not counts of rows by language")
    return ArchivedFile(
        key=checked(entry.get("key"), kind),
        crawl_id=crawl_id,
        rows=_count(entry, "rows") if kind == "part" else 0,
        bytes=_count(entry, "bytes"),
        sha256=_string(entry, "sha256"),
        languages=languages,
        article_ids=_article_ids(entry),
    )


def _article_ids(entry: dict) -> tuple[str, ...] | None:
    ids = _optional(entry, "article_ids", list)
    if ids is not None and not all(isinstance(article, str) for article in ids):
        raise BadManifest("article_ids are not a list of strings")
    return None if ids is None else tuple(ids)


def manifest_warc(entry: dict, crawl_id: str) -> ArchivedWarc:
    key = checked(entry.get("key"), "warc")
    cdxj = manifest_file(_object(entry.get("cdxj"), "its cdxj"), crawl_id, "cdxj")
    if cdxj.key != cdxj_key(key):
        raise BadKey(f"{cdxj.key} is not the CDXJ of {key}; not used")
    return ArchivedWarc(
        key, crawl_id, _count(entry, "bytes"), _string(entry, "sha256"), _count(entry, "records"), cdxj
    )


def _object(value: object, what: str) -> dict:
    if not isinstance(value, dict):
        raise BadManifest(f"{what} is a {type(value).__name__}, not an object")
    return value


def _list(manifest: dict, name: str) -> list:
    value = manifest.get(name, [])
    if not isinstance(value, list):
        raise BadManifest(f"{name} is a {type(value).__name__}, not a list")
    return value


def _optional(table: dict, name: str, kind: type[T]) -> T | None:
    value = table.get(name)
    if value is not None and not isinstance(value, kind):
        raise BadManifest(f"{name} {shown(value)} is not a {kind.__name__}")
    return value


def _string(table: dict, name: str) -> str:
    value = table.get(name)
    if not isinstance(value, str):
        raise BadManifest(f"{name} {shown(value)} is not a string")
    return value


def _count(table: dict, name: str) -> int:
    value = table.get(name)
    if not is_count(value):
        raise BadManifest(f"{name} {shown(value)} is not a count")
    return value


def _supersedes(
    manifest_key: str,
    crawl_id: str,
    keys: list,
    compaction: bool,
    files: tuple[ArchivedFile, ...],
    problems: list[str],
) -> tuple[str, ...]:
    """The keys a manifest may take out of the dataset: parts of the partitions its own files are
    in, and only if it is a compaction's."""
    own = {file.key for file in files}
    partitions = {
        part.partition
        for part in map(part_of, own)
        if part.compacted and part.crawl_id == crawl_id  # its own files, not another run's
    }
    honoured = []
    for key in keys:
        part = part_of(key)
        if not compaction:
            reason = "only a compaction's manifest replaces files"
        elif part is None:
            reason = "not a part's key"
        elif part.partition not in partitions or key in own:
            reason = "not a part of a partition its files are in"
        else:
            honoured.append(key)
            continue
        problems.append(f"{manifest_key}: supersedes {shown(key)} ignored: {reason}")
    return tuple(honoured)


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
