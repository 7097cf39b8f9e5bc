"""The manifest, ``_manifests/<run id>.json``: what one run published, the archive's second
contract after the schema (:mod:`pipelines.archive.schema`). This module is its one owner:
:class:`Manifest` is built here, written here and parsed here.

A run publishes its manifest last, and from that moment its files are part of the dataset: a
crawl's is built from its record in the spool (:meth:`Manifest.of_crawl`, sealed by
:mod:`pipelines.archive.publish`), a compaction's from the files it wrote and those they replace
(:meth:`Manifest.of_compaction`, :mod:`pipelines.tools.compact`). Readers go by manifests: the
catalog (:mod:`pipelines.archive.catalog`), the index for archives older than it
(:func:`listed_article_ids`), the next crawl for its conditional requests (:func:`discovery_of`).

A manifest may come from elsewhere or be damaged: it is parsed bounded (:data:`MANIFEST_MAX_BYTES`,
:func:`pipelines.runtime.jsondata.loads_bounded`) and each field a reader uses is checked once,
here (:meth:`Manifest.parse`): an entry naming a key of the wrong kind or holding a field of the
wrong type is left out and named; a manifest whose own fields are wrong is :class:`BadManifest`.
The fields no reader acts on (its outlets, versions, discovery, origin and index) are taken when
they are of their type and otherwise ignored: :func:`discovery_of` checks the discovery where
it is used.
"""

from __future__ import annotations

import functools
import json
import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import version
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit

from pipelines.archive.keys import (
    OUTLET,
    UNKNOWN_MONTH,
    BadKey,
    cdxj_key,
    checked,
    checked_crawl,
    delta_key,
    is_key,
    manifest_key,
    part_of,
    shown,
)
from pipelines.archive.schema import SCHEMA_VERSION
from pipelines.runtime.jsondata import is_count, loads_bounded

if TYPE_CHECKING:
    from datetime import date

    import pyarrow as pa

T = TypeVar("T")

# A manifest lists each part's article ids (about 70 bytes each): 256 MiB is 3.5 million rows
# in one run (a reextract's run holds the whole archive).
MANIFEST_MAX_BYTES = 256 << 20
_DISCOVERY_FIELDS = {"etag", "last_modified", "read_at"}
# what a header's value may be, as the spider read it (Latin-1, no control character), kept short
_HEADER_VALUE = re.compile(r"[\x20-\x7e\xa0-\xff]{0,1024}")
# the order of a manifest's fields as each kind of run has always written them
_CRAWL_FIELDS = (
    "crawl_id",
    "schema_version",
    "newsarchive_version",
    "started_at",
    "finished_at",
    "outlets",
    "discovery",
    "reextracted_from",
    "interrupted",
    "extractor_versions",
    "rows",
    "bytes",
    "files",
    "warcs",
    "index",
)
_COMPACTION_FIELDS = (
    "crawl_id",
    "compaction",
    "schema_version",
    "newsarchive_version",
    "started_at",
    "finished_at",
    "interrupted",
    "outlets",
    "discovery",
    "rows",
    "bytes",
    "files",
    "supersedes",
    "index",
)


class BadManifest(ValueError):
    """A manifest, or an entry of it, whose fields are not of their types: named, never used."""


@dataclass(frozen=True)
class ArchivedFile:
    """One file as its run's manifest lists it: a Parquet part (an entry of ``files``), or a
    WARC's CDXJ index (``rows`` 0)."""

    key: str  # relative to the archive root
    crawl_id: str  # the run whose manifest lists it
    rows: int
    bytes: int
    sha256: str
    languages: dict[str, int] | None  # rows per language; None in manifests older than the field
    article_ids: tuple[str, ...] | None = None  # its rows', as its manifest states them (None: not stated)
    extractor_versions: tuple[str, ...] | None = None  # of its rows (a crawl's parts); not read back

    @functools.cached_property
    def partition(self) -> dict[str, str]:
        """``{"outlet": ..., "published": ...}``, read from the key (once: a catalog asks a file
        several times)."""
        partition = {"outlet": "", "published": UNKNOWN_MONTH}
        for folder in self.key.split("/")[:-1]:
            name, equals, value = folder.partition("=")
            if equals and name in partition:
                partition[name] = value
        return partition

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

    def entry(self) -> dict:
        """Its entry in a manifest's ``files``; the fields not known are left out."""
        entry = {
            "key": self.key,
            "rows": self.rows,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "languages": self.languages,
            "extractor_versions": _listed(self.extractor_versions),
            "article_ids": _listed(self.article_ids),
        }
        return {name: value for name, value in entry.items() if value is not None}


@dataclass(frozen=True)
class ArchivedWarc:
    """One WARC file, and its CDXJ index, as its run's manifest lists them (``warcs``)."""

    key: str
    crawl_id: str
    bytes: int
    sha256: str
    records: int
    cdxj: ArchivedFile  # rows 0: an index, not Parquet

    def entry(self) -> dict:
        """Its entry in a manifest's ``warcs``."""
        return {
            "key": self.key,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "records": self.records,
            "cdxj": {"key": self.cdxj.key, "bytes": self.cdxj.bytes, "sha256": self.cdxj.sha256},
        }


@dataclass(frozen=True)
class Manifest:
    """One run's manifest: a crawl's, or a compaction's (``compaction``)."""

    crawl_id: str  # the run's id (crawl ids sort by time); a compaction's run id
    key: str  # where it is: its :func:`manifest_key`, or the key it was read from
    schema_version: str  # the schema of the rows it lists ("" if it does not say)
    started_at: str | None  # ISO 8601, UTC
    finished_at: str | None  # None: the crawl never closed
    interrupted: bool  # killed or stopped early: the articles it had not written come again
    files: tuple[ArchivedFile, ...]  # the Parquet parts it published, by key
    supersedes: tuple[str, ...] = ()  # a compaction's: the parts its files replace
    compaction: bool = False  # a compaction's manifest, not a crawl's
    warcs: tuple[ArchivedWarc, ...] = ()  # a crawl's WARCs and their CDXJ indexes, by key
    newsarchive_version: str | None = None  # the version that wrote it
    outlets: tuple[str, ...] = ()  # a crawl's outlets; a compaction's, those of the parts it replaced
    # the validators (etag, last_modified, read_at) of the sitemaps, feeds and listings a crawl
    # read, by URL: the next crawl asks them conditionally (a compaction keeps the newest run's)
    discovery: dict[str, dict] = field(default_factory=dict)
    reextracted_from: dict | None = None  # a reextraction's source: its archive, runs and outlets
    extractor_versions: tuple[str, ...] = ()  # a crawl's: those of all its files' rows
    index: str | None = None  # the key of the run's index delta

    @property
    def rows(self) -> int:
        return sum(file.rows for file in self.files)

    @property
    def bytes(self) -> int:
        return sum(file.bytes for file in self.files)

    @classmethod
    def of_crawl(cls, record: Mapping, journal: Mapping[str, dict]) -> Manifest:
        """A crawl's manifest, from its record in the spool (its ``crawl.json``, checked by
        :func:`check_crawl_record`) and its journal (the entries of the files it published, by
        key, checked as :func:`file_entry` and :func:`warc_entry` read them). A crawl that did not
        close (nobody held its lock: its process died), or stopped early, is ``interrupted``."""
        crawl_id = record["crawl_id"]
        entries = [journal[key] for key in sorted(journal)]
        files = tuple(file_entry(entry, crawl_id, "part") for entry in entries if "kind" not in entry)
        warcs = tuple(warc_entry(entry, crawl_id) for entry in entries if entry.get("kind") == "warc")
        copied = _copied(record)
        return cls(
            crawl_id=crawl_id,
            key=manifest_key(crawl_id),
            schema_version=SCHEMA_VERSION,
            newsarchive_version=version("newsarchive"),
            started_at=copied["started_at"],
            finished_at=copied["finished_at"],
            outlets=tuple(copied["outlets"]),
            discovery=copied["discovery"],
            reextracted_from=copied.get("reextracted_from"),
            interrupted=record.get("finished_at") is None or record.get("stopped_early", False),
            extractor_versions=tuple(sorted({v for file in files for v in file.extractor_versions or ()})),
            files=files,
            warcs=warcs,
            index=delta_key(crawl_id),
        )

    @classmethod
    def of_compaction(
        cls,
        run_id: str,
        files: list[ArchivedFile],
        replaced: list[str],
        discovery: dict[str, dict],
        at: str,
    ) -> Manifest:
        """A compaction's manifest, run at ``at``: the ``files`` it wrote, the parts they replace,
        and the newest run's ``discovery`` validators, which the next crawl reads from the
        newest manifest."""
        return cls(
            crawl_id=run_id,
            key=manifest_key(run_id),
            compaction=True,
            schema_version=SCHEMA_VERSION,
            newsarchive_version=version("newsarchive"),
            started_at=at,
            finished_at=at,
            interrupted=False,
            outlets=tuple(sorted({part_of(key).outlet for key in replaced})),
            discovery=discovery,
            files=tuple(files),
            supersedes=tuple(replaced),
            index=delta_key(run_id),
        )

    def to_bytes(self) -> bytes:
        """The manifest as it is published: JSON, its fields in the order its kind of run has
        always written them."""
        values = {
            "crawl_id": self.crawl_id,
            "compaction": self.compaction,
            "schema_version": self.schema_version,
            "newsarchive_version": self.newsarchive_version,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "outlets": list(self.outlets),
            "discovery": self.discovery,
            "interrupted": self.interrupted,
            "extractor_versions": list(self.extractor_versions),
            "rows": self.rows,
            "bytes": self.bytes,
            "files": [file.entry() for file in self.files],
            "warcs": [warc.entry() for warc in self.warcs],
            "supersedes": list(self.supersedes),
            "index": self.index,
        }
        if self.reextracted_from is not None:
            values["reextracted_from"] = self.reextracted_from
        layout = _COMPACTION_FIELDS if self.compaction else _CRAWL_FIELDS
        return json.dumps({name: values[name] for name in layout if name in values}, indent=1).encode()

    @classmethod
    def read(cls, key: str, data: bytes, problems: list[str]) -> Manifest:
        """The manifest ``key`` from its bytes (see :meth:`parse`)."""
        return cls.parse(key, loads(key, data), problems)

    @classmethod
    def parse(cls, key: str, manifest: object, problems: list[str]) -> Manifest:
        """The run a manifest tells, each field checked here, once: :class:`BadManifest` (or
        :class:`pipelines.archive.keys.BadKey`) when the manifest itself is not one; an entry
        naming a key of the wrong kind or holding a field of the wrong type is left out, and
        named in ``problems``."""
        manifest = _object(manifest, "the manifest")
        crawl_id = checked_crawl(manifest.get("crawl_id"))
        files = _entries(key, manifest, "files", lambda entry: file_entry(entry, crawl_id, "part"), problems)
        warcs = _entries(key, manifest, "warcs", lambda entry: warc_entry(entry, crawl_id), problems)
        compaction = manifest.get("compaction") is True
        return cls(
            crawl_id=crawl_id,
            key=key,
            schema_version=_optional(manifest, "schema_version", str) or "",
            started_at=_optional(manifest, "started_at", str),
            finished_at=_optional(manifest, "finished_at", str),
            interrupted=bool(_optional(manifest, "interrupted", bool)),
            files=files,
            supersedes=_supersedes(key, crawl_id, _list(manifest, "supersedes"), compaction, files, problems),
            compaction=compaction,
            warcs=warcs,
            newsarchive_version=_if_a(manifest.get("newsarchive_version"), str),
            outlets=_strings(manifest.get("outlets")) or (),
            discovery=_if_a(manifest.get("discovery"), dict) or {},
            reextracted_from=_if_a(manifest.get("reextracted_from"), dict),
            extractor_versions=_strings(manifest.get("extractor_versions")) or (),
            index=_if_a(manifest.get("index"), str),
        )


def loads(key: str, data: bytes) -> Any:
    """A manifest's bytes parsed as JSON, bounded (:class:`pipelines.runtime.jsondata.DamagedJSON`
    when it is no JSON, too big or too deep)."""
    return loads_bounded(data, MANIFEST_MAX_BYTES, key)


def check_crawl_record(record: dict) -> None:
    """Each field of a crawl's record (its ``crawl.json``) that :meth:`Manifest.of_crawl` copies,
    as every reader of the manifest checks it (:meth:`Manifest.parse`), and those the catalog
    does not read as the crawl writes them (:meth:`pipelines.archive.publish.Publisher.close`);
    else :class:`BadManifest`."""
    crawl_id = record["crawl_id"]
    Manifest.parse(manifest_key(crawl_id), {"crawl_id": crawl_id} | _copied(record), [])
    for flag in ("stopped_early", "captures_kept"):
        if not isinstance(record.get(flag, False), bool):
            raise BadManifest(f"{flag} {shown(record[flag])} is not a bool")
    discovery = record.get("discovery", {})
    if not isinstance(discovery, dict) or not all(is_discovery_page(*page) for page in discovery.items()):
        raise BadManifest("discovery is no object of pages and their validators")
    origin = record.get("reextracted_from", {})
    if not (
        isinstance(origin, dict)
        and origin.keys() <= {"archive", "runs", "outlets"}
        and isinstance(origin.get("archive", ""), str)
        and isinstance(origin.get("runs", []), list)
        and all(is_key(run, "manifest") for run in origin.get("runs", []))
        and isinstance(origin.get("outlets", []), list)
        and all(isinstance(outlet, str) and OUTLET.fullmatch(outlet) for outlet in origin.get("outlets", []))
    ):
        raise BadManifest("reextracted_from is not an archive with the runs and outlets read")


def _copied(record: Mapping) -> dict:
    """The fields of a crawl's record a manifest carries as they are."""
    return {
        "started_at": record["started_at"],
        "finished_at": record.get("finished_at"),
        "outlets": record.get("outlets", []),
        "discovery": record.get("discovery", {}),
        **({"reextracted_from": record["reextracted_from"]} if "reextracted_from" in record else {}),
    }


def file_entry(entry: dict, crawl_id: str, kind: str) -> ArchivedFile:
    """An entry of ``files`` (``kind`` ``part``), or a WARC's ``cdxj`` (``kind`` ``cdxj``), of
    the run ``crawl_id``'s manifest; :class:`BadManifest` or :class:`BadKey` when it is not one."""
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
        extractor_versions=_strings(entry.get("extractor_versions")),
    )


def warc_entry(entry: dict, crawl_id: str) -> ArchivedWarc:
    """An entry of ``warcs`` of the run ``crawl_id``'s manifest; :class:`BadManifest` or
    :class:`BadKey` when it is not one, or its CDXJ is not the one beside its WARC."""
    key = checked(entry.get("key"), "warc")
    cdxj = file_entry(_object(entry.get("cdxj"), "its cdxj"), crawl_id, "cdxj")
    if cdxj.key != cdxj_key(key):
        raise BadKey(f"{cdxj.key} is not the CDXJ of {key}; not used")
    return ArchivedWarc(
        key, crawl_id, _count(entry, "bytes"), _string(entry, "sha256"), _count(entry, "records"), cdxj
    )


def listed_article_ids(key: str, data: bytes) -> dict[str, list[str]]:
    """The parts the manifest ``key`` lists, with their article ids, as the index reads them (for
    archives older than it): every entry must state both; else :class:`BadManifest`."""
    try:
        files = loads(key, data)["files"]
        listed = {entry["key"]: entry["article_ids"] for entry in files}
    except (ValueError, KeyError, TypeError) as exc:
        raise BadManifest(f"{key}: not a manifest the index can read ({type(exc).__name__}: {exc})") from None
    for part, ids in listed.items():
        if not (isinstance(ids, list) and all(isinstance(article, str) for article in ids)):
            raise BadManifest(f"{key}: the article ids of {shown(part)} are not a list of strings")
    return listed


def discovery_of(key: str, manifest: object, damaged: list[str]) -> dict[str, dict]:
    """The discovery validators the manifest ``key`` keeps: each a page's URL with its
    validators, strings a request header may carry; the manifest or an entry that is not is
    left out and named in ``damaged``."""
    discovery = manifest.get("discovery", {}) if isinstance(manifest, dict) else None
    if not isinstance(discovery, dict):
        damaged.append(f"{key}: its discovery is no object; not used")
        return {}
    kept = {url: page for url, page in discovery.items() if is_discovery_page(url, page)}
    if len(kept) < len(discovery):
        left_out = ", ".join(shown(url) for url in list(discovery.keys() - kept.keys())[:3])
        damaged.append(
            f"{key}: {len(discovery) - len(kept)} discovery entries are not a page's validators "
            f"(such as {left_out}); left out"
        )
    return kept


def is_discovery_page(url: str, page: object) -> bool:
    """A URL of the web with what the spider asks it conditionally with (see ``_unchanged``)."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError:  # such as an unclosed IPv6 bracket
        return False
    return (
        scheme in ("http", "https")
        and isinstance(page, dict)
        and page.keys() <= _DISCOVERY_FIELDS
        and all(
            value is None or (isinstance(value, str) and _HEADER_VALUE.fullmatch(value))
            for value in page.values()
        )
    )


def languages_of(table: pa.Table) -> dict[str, int]:
    """Rows per language, for a file's entry: what ``newsarchive ls`` and ``pull --lang`` know
    without the file.

    Counted in Python, not with pyarrow.compute (``value_counts``, ``unique``): importing it took
    24 ms of a crawl's start or close, for a few hundred values.
    """
    if "language" not in table.column_names:
        return {}
    return dict(Counter(table.column("language").to_pylist()).most_common())


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


def _article_ids(entry: dict) -> tuple[str, ...] | None:
    ids = _optional(entry, "article_ids", list)
    if ids is not None and not all(isinstance(article, str) for article in ids):
        raise BadManifest("article_ids are not a list of strings")
    return None if ids is None else tuple(ids)


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


def _if_a(value: object, kind: type[T]) -> T | None:
    """A field no reader acts on: taken when it is of its type, else ignored (never a problem)."""
    return value if isinstance(value, kind) else None


def _strings(value: object) -> tuple[str, ...] | None:
    """A list of strings no reader acts on, as :func:`_if_a` takes it."""
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return tuple(value)
    return None


def _listed(values: tuple[str, ...] | None) -> list[str] | None:
    return None if values is None else list(values)


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
