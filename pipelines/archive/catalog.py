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

The checkpoint. Reading every manifest costs a request and a parse per run (at 10,000 hourly runs,
``ls`` read 10,003 objects: 23 s on S3), so what those checks decided is kept in
``_catalog/checkpoint-<crawl id>.parquet-catalog``, covering every manifest up to that crawl's
(its ``through``). It holds no article id (they are most of a manifest's bytes; only a
compaction's checks and the card's article count use them):

- its Parquet footer, one JSON document: the runs (the fields ``ls`` shows, each run's files,
  rows and bytes, its WARCs, what it supersedes), the figures of each partition of the dataset
  (files, rows, bytes, rows per language) and the problems. ``ls`` reads nothing else, so it
  decodes no row of the table;
- its rows, one per file a run lists (key, run, rows, bytes, sha256, languages, extractor
  versions), sorted by key, so a partition's files are together and each row group's key
  statistics say which outlets it holds: ``pull --outlet X`` decodes only the row groups of X
  (checked against the footer's figures of those partitions).

Parquet, not JSON: parsing 10,000 manifests' worth of file entries as JSON and checking each
took longer than ``ls``'s 2 s budget (a checked JSON entry costs ~10 µs, and the bounded parser's
depth scan as much again); the footer alone is ~400 bytes a run.

The checkpoint is written by the run that seals a crawl once :data:`CHECKPOINT_EVERY` manifests
are newer than the newest checkpoint's ``through`` (:func:`seal_checkpoint`: on the other runs, a
listing of ``_catalog/`` and of ``_manifests/`` after that key, nothing read), and by ``compact``
after it seals; the writer deletes only the older checkpoints it listed. An archive without one
is read as before: the first sealing run with enough manifests writes one.

A reader lists ``_manifests/`` after ``through`` (``StartAfter``: listing all 10,000 keys took
SeaweedFS 2 s, ten pages) and reads those, and the manifests the checkpoint could not read. A
manifest published later under an older key (a crawl killed before it sealed is sealed by the
next run under its own, older crawl id) would not be listed: publishing one first deletes the
checkpoints through a later manifest (:func:`drop_stale_checkpoints`), and the writer of a
checkpoint lists ``_manifests/`` whole and reads every manifest the last one does not cover. A
new manifest that lists a file the checkpoint holds or a file a compaction of the checkpoint
replaced, and a new compaction (its ``supersedes`` needs the article ids the checkpoint does not
keep) make that read a full one, as before. A checkpoint that is damaged, too big, or whose
figures disagree with the rows read (``ls`` reads none; ``pull`` those of its outlets) is read
around (every manifest read) and named in the problems; the figures of rows not read are taken as
stated, as a manifest's are (``verify`` checks the files, and the newest checkpoint against the
manifests).

Only the readers use it (``ls``, ``pull``): ``verify``, ``compact``, ``reindex`` and
``reextract`` check or delete, and no derived object decides what they delete, so they read every
manifest (``Catalog.read``'s default); ``card`` too, as it counts the distinct articles, whose
ids only the manifests hold.
"""

from __future__ import annotations

import contextlib
import gc
import hashlib
import io
import json
import logging
from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import pyarrow as pa
import pyarrow.parquet as pq

from pipelines.archive.index import PART_MAX_BYTES, Damaged, read_capped
from pipelines.archive.keys import (
    CATALOG,
    MANIFESTS,
    BadKey,
    cdxj_key,
    checked,
    checked_crawl,
    checkpoint_key,
    checkpoint_through,
    is_key,
    part_of,
    partition_key,
    shown,
)
from pipelines.archive.manifest import (
    MANIFEST_MAX_BYTES,
    ArchivedFile,
    ArchivedWarc,
    BadManifest,
    Manifest,
    discovery_of,
    file_entry,
    loads,
)
from pipelines.archive.storage import KeyTaken, Store, StoreError, write_atomically
from pipelines.runtime.jsondata import is_count, loads_bounded

logger = logging.getLogger(__name__)

CHECKPOINT_EVERY = 64  # manifests newer than the newest checkpoint before a sealing run writes one
CHECKPOINT_MAX_BYTES = 512 << 20  # ~70 bytes a file and its run: 7 million files
_CHECKPOINT_FORMAT = 1
_FOOTER = b"newsarchive.catalog"
_ROW_GROUP = 4096  # files: a partition's are in one or two row groups
_EXPANSION = 32  # the bytes of decoded columns a checkpoint may claim per byte of its own
_RUN_FIELDS = (
    "key",
    "crawl_id",
    "compaction",
    "schema_version",
    "started_at",
    "finished_at",
    "interrupted",
    "files",
    "rows",
    "bytes",
    "supersedes",
)
# what a checkpoint that does not read raises: the store's error, Damaged, BadManifest, BadKey
# (ValueErrors), and Arrow's (a damaged Parquet file)
_NOT_READ = (StoreError, ValueError, pa.ArrowException, OSError)
_WARC_FIELDS = ("run", "key", "bytes", "sha256", "records", "cdxj_bytes", "cdxj_sha256")
_FILE_SCHEMA = pa.schema(
    [
        ("key", pa.string()),
        ("run", pa.int32()),  # the listing run's place in the footer's runs
        ("rows", pa.int64()),
        ("bytes", pa.int64()),
        ("sha256", pa.string()),
        ("languages", pa.map_(pa.string(), pa.int64())),
        ("extractor_versions", pa.list_(pa.string())),
    ]
)


@dataclass
class Figures:
    """A partition's files, rows, bytes and rows per language (``?``: a manifest older than the
    field), as ``ls`` adds them up; ``stated``: every file of rows states its languages."""

    files: int = 0
    rows: int = 0
    bytes: int = 0
    languages: Counter[str] = field(default_factory=Counter)
    stated: bool = True

    def add(self, file: ArchivedFile) -> None:
        self.files += 1
        self.rows += file.rows
        self.bytes += file.bytes
        for language, rows in _languages(file).items():  # not Counter.update: a catalog adds every file
            self.languages[language] += rows
        self.stated &= file.languages is not None or not file.rows

    def to_json(self) -> dict:
        return {
            "files": self.files,
            "rows": self.rows,
            "bytes": self.bytes,
            "languages": dict(self.languages),
            "stated": self.stated,
        }

    @classmethod
    def parse(cls, value: object) -> Figures:
        """Figures as a checkpoint states them; BadManifest when they are not counts."""
        if not isinstance(value, dict) or value.keys() != {"files", "rows", "bytes", "languages", "stated"}:
            raise BadManifest("a partition's figures are not files, rows, bytes, languages, stated")
        languages = value["languages"]
        if not (
            all(is_count(value[name]) for name in ("files", "rows", "bytes"))
            and isinstance(value["stated"], bool)
            and isinstance(languages, dict)
            and all(is_count(rows) for rows in languages.values())
        ):
            raise BadManifest("a partition's figures are not counts")
        return cls(value["files"], value["rows"], value["bytes"], Counter(languages), value["stated"])


@dataclass
class Catalog:
    runs: list[Manifest]  # one per manifest read, in the order of their keys
    problems: list[str] = field(default_factory=list)  # manifests or entries not taken, one line each
    unreadable: list[str] = field(default_factory=list)  # keys of manifests that could not be read
    # read through a checkpoint: the runs it covers, with their files, rows and bytes (their
    # ``files`` hold only the partitions asked for), and its figures of the dataset by partition
    summarised: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    checkpointed: dict[str, Figures] = field(default_factory=dict)
    passing: list[str] = field(default_factory=list)  # problems of this read alone: never checkpointed

    @classmethod
    def read(cls, store: Store, checkpoint: bool = False, outlets: Collection[str] | None = None) -> Catalog:
        """Every manifest's runs and files, as the checks below decide; with ``checkpoint``, the
        newest readable checkpoint and the manifests listed after its ``through`` (see the
        module), with the files of ``outlets`` only (None: all of them; empty: none, the figures
        suffice)."""
        with _collector_paused():
            return cls._read(store, checkpoint, outlets, every_key=False)

    @classmethod
    def _read(
        cls, store: Store, checkpoint: bool, outlets: Collection[str] | None, every_key: bool
    ) -> Catalog:
        """As :meth:`read`; ``every_key``: through a checkpoint, every manifest it does not cover
        read, whatever its key (the writer of the next one: see :func:`seal_checkpoint`)."""
        around: list[str] = []  # checkpoints that did not read
        if checkpoint:
            catalog = cls._through_checkpoint(store, outlets, around, every_key)
            if catalog is not None:
                return catalog
        catalog = cls([], problems=list(around), passing=list(around))
        catalog._read_manifests(store, _manifest_keys(store))
        catalog._drop_second_listings()
        catalog._drop_unbacked_supersedes(store)
        return catalog

    def _read_manifests(self, store: Store, keys: Iterable[str]) -> None:
        for key in keys:
            try:
                self.runs.append(
                    Manifest.read(
                        checked(key, "manifest"), read_capped(store, key, MANIFEST_MAX_BYTES), self.problems
                    )
                )
            except (StoreError, ValueError) as exc:  # BadManifest, BadKey, Damaged, JSON's errors
                self.unreadable.append(key)
                self.problems.append(f"{shown(key)}: unreadable manifest ({type(exc).__name__}: {exc})")
                self.passing.append(self.problems[-1])  # read again next time

    @classmethod
    def _through_checkpoint(
        cls, store: Store, outlets: Collection[str] | None, around: list[str], every_key: bool
    ) -> Catalog | None:
        """The catalog from the newest checkpoint that reads and the manifests after it (all it
        does not cover, with ``every_key``); None when there is none, or when those manifests need
        the full read (see the module). Each checkpoint that does not read is named in ``around``."""
        for key in sorted(
            (k for k in store.object_keys(f"{CATALOG}/") if is_key(k, "checkpoint")), reverse=True
        ):
            try:
                catalog, held, unread = _read_checkpoint(store, key, outlets)
                newer = _manifests_since(store, catalog, checkpoint_through(key), every_key) + unread
                break
            except _NOT_READ as exc:
                _read_around(key, exc, around)
        else:
            return None
        catalog.problems[:0] = around
        catalog.passing += around
        new = len(catalog.runs)
        catalog._read_manifests(store, sorted(set(newer)))
        superseded = catalog.superseded
        for run in catalog.runs[new:]:
            # a compaction's supersedes is decided on the article ids of the files it replaces,
            # which the checkpoint does not keep; a file listed again counts by rules that need
            # the listings the checkpoint resolved: both are rare, and read in full
            if run.supersedes or any(f.key in superseded for f in run.files):
                return None
        since = {file.key for run in catalog.runs[new:] for file in run.files}
        try:
            if since and since & held():
                return None
        except _NOT_READ as exc:
            _read_around(key, exc, around)
            return None
        catalog.runs.sort(key=lambda run: run.key)
        catalog._drop_second_listings()
        return catalog

    def _drop_second_listings(self) -> None:
        """A file listed more than once counts once: by the manifest of the run its key names (a
        part names the crawl that wrote it, a compacted part its compaction), else by the first
        manifest that lists it. Any other listing is left out and named: a manifest listing
        another run's parts would have readers count their rows twice and compaction write them
        twice."""
        keys = [file.key for run in self.runs for file in run.files]
        if len(set(keys)) == len(keys):
            return
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

    def partitions(self) -> dict[str, Figures]:
        """The dataset's figures by partition: the checkpoint's, and those of the files of the
        runs read from their manifests."""
        figures = {name: replace(f, languages=Counter(f.languages)) for name, f in self.checkpointed.items()}
        superseded = self.superseded
        for run in self.runs:
            if run.key in self.summarised:
                continue
            for file in run.files:
                if file.key not in superseded:
                    name = partition_key(file.outlet, file.month)
                    if name not in figures:  # not setdefault: no Figures made per file
                        figures[name] = Figures()
                    figures[name].add(file)
        return figures

    def held(self, kind: Literal["outlet", "month", "language"]) -> list[str] | None:
        """The outlets, months or languages the dataset holds rows of, sorted: what a command's
        filters may name. None when that is not known: a manifest could not be read, or (for
        languages) one is older than its files' ``languages``."""
        figures = {name: f for name, f in self.partitions().items() if f.rows}
        if self.unreadable or (kind == "language" and not all(f.stated for f in figures.values())):
            return None
        if kind == "language":
            return sorted({code for f in figures.values() for code, rows in f.languages.items() if rows})
        return sorted({_partition_of(name)[0 if kind == "outlet" else 1] for name in figures})

    def summary(self) -> dict:
        """Runs, outlets, months, languages, rows and bytes: what ``ls --json`` prints."""
        outlets: dict[str, dict] = {}
        for name, figures in self.partitions().items():
            outlet_id, month = _partition_of(name)
            outlet = outlets.setdefault(
                outlet_id, {"files": 0, "rows": 0, "bytes": 0, "months": Counter(), "languages": Counter()}
            )
            outlet["files"] += figures.files
            outlet["rows"] += figures.rows
            outlet["bytes"] += figures.bytes
            outlet["months"][month] += figures.rows
            outlet["languages"].update(figures.languages)
        return {
            "runs": [
                {
                    "crawl_id": run.crawl_id,
                    "started_at": run.started_at,
                    "finished_at": run.finished_at,
                    "interrupted": run.interrupted,
                    "compaction": run.compaction,
                    "schema_version": run.schema_version,
                    **dict(zip(("files", "rows", "bytes"), self._figures_of(run), strict=True)),
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
            "files": sum(o["files"] for o in outlets.values()),
            "rows": sum(o["rows"] for o in outlets.values()),
            "bytes": sum(o["bytes"] for o in outlets.values()),
            "warcs": len(self.warcs),
            "warc_bytes": sum(warc.bytes + warc.cdxj.bytes for warc in self.warcs),
            "problems": self.problems,
        }

    def _figures_of(self, run: Manifest) -> tuple[int, int, int]:
        """A run's files, rows and bytes (of all its files, even where only some are read)."""
        return self.summarised.get(run.key) or (len(run.files), run.rows, run.bytes)

    def write_checkpoint(self, store: Store, workdir: Path) -> str | None:
        """This catalog (read whole: every file of every run) as a checkpoint through its newest
        manifest, published unless one through it is there already; its key, or None when no
        manifest read."""
        if not self.runs:
            return None
        through = max(run.key for run in self.runs)
        key = checkpoint_key(through.removeprefix(f"{MANIFESTS}/").removesuffix(".json"))
        spooled = workdir / f".{Path(key).name}"
        write_atomically(spooled, lambda handle: handle.write(self._checkpoint_bytes(through)))
        try:
            store.publish(spooled, key)
        except KeyTaken:  # one through that manifest already: the manifests since were late ones,
            if f"{key}: catalog checkpoint read around" in " ".join(self.passing):  # or it is damaged
                store.delete(key)
                store.publish(spooled, key)
        finally:
            spooled.unlink(missing_ok=True)
        return key

    def _checkpoint_bytes(self, through: str) -> bytes:
        footer = {
            "format": _CHECKPOINT_FORMAT,
            "through": through,
            "runs": _columns(
                [(*_run_fields(run), *self._figures_of(run), list(run.supersedes)) for run in self.runs],
                _RUN_FIELDS,
            ),
            "warcs": _columns(
                [
                    (place, w.key, w.bytes, w.sha256, w.records, w.cdxj.bytes, w.cdxj.sha256)
                    for place, run in enumerate(self.runs)
                    for w in run.warcs
                ],
                _WARC_FIELDS,
            ),
            "partitions": {name: figures.to_json() for name, figures in sorted(self.partitions().items())},
            "problems": [problem for problem in self.problems if problem not in self.passing],
            "unreadable": self.unreadable,  # read again by every reader
        }
        files = sorted((file.key, place, file) for place, run in enumerate(self.runs) for file in run.files)
        table = pa.Table.from_pydict(
            {
                "key": [key for key, _, _ in files],
                "run": [place for _, place, _ in files],
                "rows": [file.rows for _, _, file in files],
                "bytes": [file.bytes for _, _, file in files],
                "sha256": [file.sha256 for _, _, file in files],
                "languages": [
                    None if f.languages is None else list(f.languages.items()) for _, _, f in files
                ],
                "extractor_versions": [_listed(file.extractor_versions) for _, _, file in files],
            },
            schema=_FILE_SCHEMA.with_metadata({_FOOTER: json.dumps(footer)}),
        )
        sink = io.BytesIO()
        pq.write_table(table, sink, row_group_size=_ROW_GROUP, use_dictionary=False, compression="zstd")
        return sink.getvalue()


def seal_checkpoint(store: Store, workdir: Path, every: int | None = None) -> str | None:
    """After a run sealed: a new checkpoint when ``every`` (:data:`CHECKPOINT_EVERY`) manifests
    or more are newer than the newest checkpoint's ``through`` (counted with a listing after
    it: nothing read otherwise), then the older checkpoints listed now deleted (a checkpoint is
    derived; the new one holds all they held). Its key, or None when none was due."""
    checkpoints = sorted(key for key in store.object_keys(f"{CATALOG}/") if is_key(key, "checkpoint"))
    after = checkpoint_through(checkpoints[-1]) if checkpoints else None
    newer = len(_manifest_keys(store, after))
    if newer < (every or CHECKPOINT_EVERY):
        return None
    key = Catalog._read(store, checkpoint=True, outlets=None, every_key=True).write_checkpoint(store, workdir)
    for old in checkpoints:
        if key is not None and old < key:
            store.delete(old)
    return key


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """A catalog is made of tens of thousands of objects at once, kept, and none in a cycle: the
    cyclic collector would walk them again and again and free nothing (a third of the read at
    10,000 runs). Garbage without cycles is freed as ever."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _read_around(key: str, exc: Exception, around: list[str]) -> None:
    around.append(f"{key}: catalog checkpoint read around ({type(exc).__name__}: {exc})")
    logger.warning("%s; every manifest is read", around[-1])


def _manifest_keys(store: Store, after: str | None = None) -> list[str]:
    keys = (
        store.object_keys(f"{MANIFESTS}/", start_after=after) if after else store.object_keys(f"{MANIFESTS}/")
    )
    return sorted(key for key in keys if key.endswith(".json"))


def _manifests_since(store: Store, catalog: Catalog, through: str, every_key: bool) -> list[str]:
    """The manifests a checkpoint through ``through`` does not cover: listed after it, or (for
    its writer, ``every_key``) listed anywhere, the listing holding every manifest it covers (else
    Damaged: a checkpoint of manifests that are gone)."""
    if not every_key:
        return _manifest_keys(store, through)
    listed = _manifest_keys(store)
    gone = catalog.summarised.keys() - set(listed)
    if gone:
        raise Damaged(f"it covers {min(gone)}, which is not in the archive (any more)")
    return [key for key in listed if key not in catalog.summarised]


def drop_stale_checkpoints(store: Store, manifest: str) -> None:
    """Before ``manifest`` is published: the checkpoints through a later manifest deleted (a
    crawl killed before it sealed is sealed by a later run under its own, older id; readers list
    the manifests after a checkpoint's ``through``, and would not see it). One listing of
    ``_catalog/``; a checkpoint is derived, and the next one covers the manifest."""
    for key in store.object_keys(f"{CATALOG}/"):
        if is_key(key, "checkpoint") and checkpoint_through(key) > manifest:
            store.delete(key)


def _read_checkpoint(
    store: Store, key: str, outlets: Collection[str] | None
) -> tuple[Catalog, Callable[[], set[str]], list[str]]:
    """The catalog a checkpoint holds, with the files of ``outlets`` (None: all), the keys of
    every file it holds (read when asked), and the manifests it could not read; Damaged,
    BadManifest or BadKey when it is not one, is too big, or disagrees with itself."""
    data = read_capped(store, key, CHECKPOINT_MAX_BYTES)
    parquet = pq.ParquetFile(io.BytesIO(data))
    schema = parquet.schema_arrow  # made anew on each call: megabytes of footer at 10,000 runs
    if schema.remove_metadata() != _FILE_SCHEMA:
        raise Damaged("not a checkpoint's columns")
    metadata = parquet.metadata
    claimed = sum(
        metadata.row_group(g).column(c).total_uncompressed_size
        for g in range(metadata.num_row_groups)
        for c in range(metadata.num_columns)
    )
    if claimed > _EXPANSION * len(data):
        raise Damaged(f"{claimed} bytes of columns claimed in {len(data)} bytes; not decoded")
    footer = loads_bounded((schema.metadata or {}).get(_FOOTER, b""), len(data), key)
    if not isinstance(footer, dict) or footer.get("format") != _CHECKPOINT_FORMAT:
        raise Damaged("no checkpoint of this version")
    through = checkpoint_through(key)
    runs = _runs(footer)
    summarised = {fields["key"]: figures for fields, figures in runs}
    if footer.get("through") != through or max(summarised, default=None) != through:
        raise Damaged(f"its newest manifest is not {through}, which its key names")
    partitions = footer.get("partitions")
    if not isinstance(partitions, dict):
        raise Damaged("its partitions are no object")
    checkpointed = {_checked_partition(name): Figures.parse(value) for name, value in partitions.items()}
    problems = _list_of(footer, "problems")
    if not all(isinstance(problem, str) for problem in problems):
        raise Damaged("its problems are not lines")
    unread = [checked(manifest, "manifest") for manifest in _list_of(footer, "unreadable")]
    groups = [
        group
        for group in range(metadata.num_row_groups)
        if outlets is None or any(_may_hold(metadata.row_group(group), outlet) for outlet in outlets)
    ]
    files: dict[int, list[ArchivedFile]] = defaultdict(list)
    columns = (
        parquet.read_row_groups(groups).to_pydict() if groups else _FILE_SCHEMA.empty_table().to_pydict()
    )
    prefixes = None if outlets is None else tuple(f"outlet={outlet}/" for outlet in outlets)
    for key, place, rows, size, sha256, languages, versions in zip(
        *(columns[name] for name in _FILE_SCHEMA.names), strict=True
    ):
        if not (isinstance(place, int) and 0 <= place < len(runs)):
            raise Damaged(f"{shown(key)} is listed by no run of it")
        if prefixes is not None and isinstance(key, str) and not key.startswith(prefixes):
            checked(key, "part")  # a row group may hold the next outlet's first files: parts still
            continue
        entry = {
            "key": key,
            "rows": rows,
            "bytes": size,
            "sha256": sha256,
            "languages": None if languages is None else dict(languages),
            "extractor_versions": versions,
        }
        files[place].append(file_entry(entry, runs[place][0]["crawl_id"], "part"))
    catalog = Catalog(
        runs=[Manifest(**fields, files=tuple(files[place])) for place, (fields, _) in enumerate(runs)],
        problems=list(problems),
        summarised=summarised,
        checkpointed=checkpointed,
    )
    _check_figures(catalog, outlets)

    def held() -> set[str]:
        """Every file's key, read only when a manifest since may list one again."""
        keys = parquet.read(columns=["key"]).column("key").to_pylist()
        if keys != sorted(set(keys)):
            raise Damaged("its files are not sorted by key, once each")
        return set(keys)

    return catalog, held, unread


def _check_figures(catalog: Catalog, outlets: Collection[str] | None) -> None:
    """The footer's figures of the partitions read, and of the runs read whole, are their rows':
    a checkpoint that says otherwise is lying, or damaged."""
    read = Catalog(catalog.runs).partitions()
    for name, figures in read.items():
        if catalog.checkpointed.get(name, Figures()) != figures:
            raise Damaged(f"its figures of {name} are not those of its files")
    for name in catalog.checkpointed:
        if (outlets is None or _partition_of(name)[0] in outlets) and name not in read:
            raise Damaged(f"its figures of {name} are those of no file")
    if outlets is None:
        for run in catalog.runs:
            if catalog.summarised[run.key] != (len(run.files), run.rows, run.bytes):
                raise Damaged(f"its figures of {run.key} are not those of its files")


def _runs(footer: dict) -> list[tuple[dict, tuple[int, int, int]]]:
    """The runs a checkpoint keeps (the fields of manifests without their files, with their
    figures) and their WARCs, each field checked as a manifest's is (:meth:`Manifest.parse`)."""
    runs = []
    for key, crawl_id, compaction, schema, started, finished, interrupted, *figures, supersedes in _rows(
        footer, "runs", _RUN_FIELDS
    ):
        if not (
            isinstance(compaction, bool)
            and isinstance(interrupted, bool)
            and isinstance(schema, str)
            and all(value is None or isinstance(value, str) for value in (started, finished))
            and all(is_count(count) for count in figures)
            and isinstance(supersedes, list)
        ):
            raise Damaged(f"its run {shown(key)} is not one a manifest tells")
        fields = {
            "crawl_id": checked_crawl(crawl_id),
            "key": checked(key, "manifest"),
            "schema_version": schema,
            "started_at": started,
            "finished_at": finished,
            "interrupted": interrupted,
            "supersedes": tuple(checked(part, "part") for part in supersedes),
            "compaction": compaction,
        }
        runs.append((fields, tuple(figures)))
    warcs: dict[int, list[ArchivedWarc]] = defaultdict(list)
    for place, *entry in _rows(footer, "warcs", _WARC_FIELDS):
        if not (is_count(place) and place < len(runs)):
            raise Damaged(f"its WARC {shown(entry[0])} is of no run of it")
        key, size, sha256, records, cdxj_bytes, cdxj_sha256 = entry
        # what warc_entry checks, without building its entry: a checkpoint holds a WARC a run
        digests = isinstance(sha256, str) and isinstance(cdxj_sha256, str)
        if not (digests and all(is_count(count) for count in (size, records, cdxj_bytes))):
            raise Damaged(f"its WARC {shown(key)} is not one a manifest tells")
        crawl_id = runs[place][0]["crawl_id"]
        cdxj = ArchivedFile(cdxj_key(checked(key, "warc")), crawl_id, 0, cdxj_bytes, cdxj_sha256, None)
        warcs[place].append(ArchivedWarc(key, crawl_id, size, sha256, records, cdxj))
    for place, (run, _) in enumerate(runs):
        run["warcs"] = tuple(warcs.get(place, ()))
    return runs


def _run_fields(run: Manifest) -> tuple:
    return (
        run.key,
        run.crawl_id,
        run.compaction,
        run.schema_version,
        run.started_at,
        run.finished_at,
        run.interrupted,
    )


def _columns(rows: list[tuple], names: tuple[str, ...]) -> dict[str, list]:
    """Rows as JSON columns: a few values a run, not an object each (the footer parses faster)."""
    return {name: [row[place] for row in rows] for place, name in enumerate(names)}


def _rows(footer: dict, name: str, names: tuple[str, ...]) -> Iterable[tuple]:
    """The rows of the footer's columns ``name``; Damaged unless they are those, of one length."""
    columns = footer.get(name)
    if not (
        isinstance(columns, dict)
        and columns.keys() == set(names)
        and all(isinstance(column, list) for column in columns.values())
        and len({len(column) for column in columns.values()}) == 1
    ):
        raise Damaged(f"its {name} are not columns of one length")
    return zip(*(columns[column] for column in names), strict=True)


def _list_of(footer: dict, name: str) -> list:
    value = footer.get(name)
    if not isinstance(value, list):
        raise Damaged(f"its {name} are no list")
    return value


def _checked_partition(name: object) -> str:
    """A partition's name (``outlet=<id>/published=<month>``) read from a checkpoint."""
    part = part_of(f"{name}/part-a-00001.parquet") if isinstance(name, str) else None
    if part is None or part.partition != name:
        raise BadKey(f"{shown(name)} is no partition; not used")
    return name


def _partition_of(name: str) -> tuple[str, str]:
    """A partition's outlet and month."""
    part = part_of(f"{name}/part-a-00001.parquet")
    return part.outlet, part.month


def _may_hold(group: pq.RowGroupMetaData, outlet: str) -> bool:
    """Whether a row group's keys may include the files of ``outlet``, by their statistics (no
    statistics: it may)."""
    statistics = group.column(0).statistics
    if statistics is None or not statistics.has_min_max:
        return True
    prefix = f"outlet={outlet}/"
    return statistics.min < prefix + "\U0010ffff" and statistics.max >= prefix


def _listed(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


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
    """Most rows first; a tie by code, so that the order does not depend on the files' order."""
    return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))


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
