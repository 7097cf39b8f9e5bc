"""The archive's keys: one grammar per kind of object, shared by the code that names a key and
the code that checks one read back. Imports nothing heavy: the registry and the stores use it.

Everything an archive holds may come from elsewhere or be damaged, so a key read from it (a
manifest's entries, a listing, a row's ``warc_file`` or ``outlet_id``, an index file's metadata)
is data, never a path: :func:`checked` (or :func:`part_of`) is asked before it is used to read,
write or delete anything, and a key that fails is a reported problem. Every grammar is built from
the same pieces the naming functions below put together, so a key this code writes always passes,
and none holds ``..``, a leading ``/``, a backslash, a NUL or any character outside its pieces.

    outlet=<outlet>/published=<month>/part-<crawl>-<n>.parquet              part
    outlet=<outlet>/published=<month>/part-<crawl>-compacted-<n>.parquet    part (a compaction's)
    _warc/<crawl>-<n>.warc.gz, _warc/<crawl>-<n>.cdxj                       warc, cdxj
    _manifests/<crawl>.json                                                 manifest
    _index/delta-<crawl>.parquet-index, _index/base-<crawl>.parquet-index   delta, base
    _index/open-<crawl>.json                                                marker (parts unsealed)
    _templates/<outlet>/<crawl>.json                                        template
    _catalog/checkpoint-<crawl>.parquet-catalog                             checkpoint (catalog)
    _lock/lease-<n>.json                                                    lease

Only parts end in ``.parquet``, so the glob readers are given, ``ARCHIVE/**/*.parquet``, reads the
article rows and nothing else. Index files are Parquet too, named ``.parquet-index``; archives
written before that named them ``.parquet``, which the grammars still take: the next compaction
of the index (:func:`pipelines.archive.index.compact_index`) or ``newsarchive reindex`` replaces them.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

MANIFESTS = "_manifests"
INDEX = "_index"
WARC_FOLDER = "_warc"  # Hive readers skip folders that start with _
TEMPLATE_FOLDER = "_templates"
LEASES = "_lock"
CATALOG = "_catalog"  # the catalog's checkpoints (pipelines.archive.catalog)
UNKNOWN_MONTH = "unknown"  # the published= value of rows without a publication date
COMPACTED = "-compacted-"  # in the name of every file a compaction writes, and of no other
INDEX_SUFFIX = ".parquet-index"  # Parquet, but not matched by the data glob ``**/*.parquet``
FORMER_INDEX_SUFFIX = ".parquet"  # index files written before INDEX_SUFFIX: read, then replaced

OUTLET_ID = r"[a-z0-9][a-z0-9-]{1,62}"  # the registry's outlet ids: lower-case letters, digits, dashes
CRAWL_ID = r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}"  # new_crawl_id's 20261123T041500Z-1a2b3c, or one given
_MONTH = rf"[0-9]{{4}}-(?:0[1-9]|1[0-2])|{UNKNOWN_MONTH}"
_SERIAL = r"[0-9]{5,}"
_INDEX_SUFFIXES = rf"(?:{re.escape(INDEX_SUFFIX)}|{re.escape(FORMER_INDEX_SUFFIX)})"

OUTLET = re.compile(OUTLET_ID)
CRAWL = re.compile(CRAWL_ID)
_PART = re.compile(
    rf"outlet=(?P<outlet>{OUTLET_ID})/published=(?P<month>{_MONTH})/"
    # the crawl id matched lazily: ``-compacted-`` is told apart from a dash in the id
    rf"part-(?P<crawl>{CRAWL_ID}?)(?:(?P<compacted>{COMPACTED})|-){_SERIAL}\.parquet"
)
GRAMMARS: dict[str, re.Pattern[str]] = {
    "part": _PART,
    "warc": re.compile(rf"{WARC_FOLDER}/{CRAWL_ID}-{_SERIAL}\.warc\.gz"),
    "cdxj": re.compile(rf"{WARC_FOLDER}/{CRAWL_ID}-{_SERIAL}\.cdxj"),
    "manifest": re.compile(rf"{MANIFESTS}/{CRAWL_ID}\.json"),
    "delta": re.compile(rf"{INDEX}/delta-(?P<crawl>{CRAWL_ID}){_INDEX_SUFFIXES}"),
    "base": re.compile(rf"{INDEX}/base-(?P<crawl>{CRAWL_ID}){_INDEX_SUFFIXES}"),
    "marker": re.compile(rf"{INDEX}/open-(?P<crawl>{CRAWL_ID})\.json"),
    "template": re.compile(rf"{TEMPLATE_FOLDER}/{OUTLET_ID}/{CRAWL_ID}\.json"),
    "lease": re.compile(rf"{LEASES}/lease-[0-9]{{12}}\.json"),
    "checkpoint": re.compile(rf"{CATALOG}/checkpoint-(?P<crawl>{CRAWL_ID})\.parquet-catalog"),
}
_SHOWN = 120  # characters of a refused key a message shows


class BadKey(ValueError):
    """A key read from the archive that is no key of the kind expected: never used."""


def month_of(published_at: datetime | None) -> str:
    """The ``published=`` value of a row: its UTC month, or ``unknown`` without a date."""
    if published_at is None:
        return UNKNOWN_MONTH
    utc = published_at.astimezone(UTC)
    return f"{utc.year:04d}-{utc.month:02d}"


def partition_key(outlet_id: str, month: str) -> str:
    """The Hive partition of a row: ``outlet=<id>/published=<month>``."""
    return f"outlet={outlet_id}/published={month}"


def part_key(partition: str, crawl_id: str, serial: int) -> str:
    return f"{partition}/part-{crawl_id}-{serial:05d}.parquet"


def compacted_key(partition: str, run_id: str, serial: int) -> str:
    return f"{partition}/part-{run_id}{COMPACTED}{serial:05d}.parquet"


def warc_key(crawl_id: str, serial: int) -> str:
    return f"{WARC_FOLDER}/{crawl_id}-{serial:05d}.warc.gz"


def cdxj_key(warc: str) -> str:
    """The CDXJ index of a WARC, beside it."""
    return warc.removesuffix(".warc.gz") + ".cdxj"


def manifest_key(crawl_id: str) -> str:
    return f"{MANIFESTS}/{crawl_id}.json"


def delta_key(crawl_id: str, suffix: str = INDEX_SUFFIX) -> str:
    return f"{INDEX}/delta-{crawl_id}{suffix}"


def delta_keys(crawl_id: str) -> tuple[str, str]:
    """Every name a run's index delta may have: the one written now, and the former one."""
    return delta_key(crawl_id), delta_key(crawl_id, FORMER_INDEX_SUFFIX)


def base_key(crawl_id: str) -> str:
    return f"{INDEX}/base-{crawl_id}{INDEX_SUFFIX}"


def open_marker_key(crawl_id: str) -> str:
    """What a crawl publishes before its first part and deletes once its manifest is published:
    while it is there and the crawl has neither index file nor manifest, its parts may be in no
    index file (:mod:`pipelines.archive.index`)."""
    return f"{INDEX}/open-{crawl_id}.json"


def marker_crawl(key: str) -> str:
    """The crawl an open marker is named by; BadKey for any other key."""
    match = GRAMMARS["marker"].fullmatch(key)
    if match is None:
        raise BadKey(f"{shown(key)} is no marker key; not used")
    return match["crawl"]


def index_crawl(key: str) -> str:
    """The crawl an index file (a delta or a base, either name) is named by; BadKey for any other key."""
    match = GRAMMARS["delta"].fullmatch(key) or GRAMMARS["base"].fullmatch(key)
    if match is None:
        raise BadKey(f"{shown(key)} is no delta or base key; not used")
    return match["crawl"]


def former_index_name(key: str) -> bool:
    """True for an index file under the name written before :data:`INDEX_SUFFIX`, which the
    data glob reads as if it held articles."""
    return is_key(key, "delta", "base") and key.endswith(FORMER_INDEX_SUFFIX)


def template_key(outlet_id: str, crawl_id: str) -> str:
    """An outlet's template as a crawl left it (crawl ids sort by time; an outlet's are all read,
    newest first)."""
    return f"{TEMPLATE_FOLDER}/{outlet_id}/{crawl_id}.json"


def checkpoint_key(crawl_id: str) -> str:
    """The catalog's checkpoint of every manifest up to ``crawl_id``'s (not ``.parquet``: not a part)."""
    return f"{CATALOG}/checkpoint-{crawl_id}.parquet-catalog"


def checkpoint_through(key: str) -> str:
    """The manifest a checkpoint's key names as the newest it covers; BadKey for any other key."""
    match = GRAMMARS["checkpoint"].fullmatch(key)
    if match is None:
        raise BadKey(f"{shown(key)} is no checkpoint key; not used")
    return manifest_key(match["crawl"])


def lease_key(generation: int) -> str:
    return f"{LEASES}/lease-{generation:012d}.json"


def shown(key: object) -> str:
    """A key from the archive as a message may show it: as it is when it is a key of any kind,
    else quoted and escaped (no control character reaches a terminal or a log line), cut short."""
    if is_key(key, *GRAMMARS):
        return key
    text = repr(key)
    return text if len(text) <= _SHOWN else f"{text[:_SHOWN]}...'"


def is_key(key: object, *kinds: str) -> bool:
    """True when ``key`` is a string in the grammar of one of ``kinds``."""
    if isinstance(key, str):
        for kind in kinds:  # a loop, not any(): a catalog checks every file's key
            if GRAMMARS[kind].fullmatch(key):
                return True
    return False


def checked(key: object, *kinds: str) -> str:
    """``key`` if it is one of ``kinds``; else :class:`BadKey`, naming it safely."""
    if not is_key(key, *kinds):
        raise BadKey(f"{shown(key)} is no {' or '.join(kinds)} key; not used")
    return key


def checked_outlet(outlet_id: object) -> str:
    """An outlet id read from the archive (a row, a key), against the registry's id pattern."""
    return _checked_id(outlet_id, OUTLET, "outlet")


def checked_crawl(crawl_id: object) -> str:
    """A crawl id read from the archive (a manifest's), against the ids keys are named with."""
    return _checked_id(crawl_id, CRAWL, "crawl")


def _checked_id(value: object, pattern: re.Pattern[str], what: str) -> str:
    if not (isinstance(value, str) and pattern.fullmatch(value)):
        raise BadKey(f"{what} id {shown(value)} does not match {pattern.pattern}; not used")
    return value


@dataclass(frozen=True)
class PartKey:
    """What a part's key says: its partition, the run that wrote it, and whether a compaction."""

    key: str
    outlet: str
    month: str
    crawl_id: str
    compacted: bool

    @property
    def partition(self) -> str:
        return partition_key(self.outlet, self.month)


def part_of(key: object) -> PartKey | None:
    """The parts of a part's key; None for anything else."""
    match = _PART.fullmatch(key) if isinstance(key, str) else None
    if match is None:
        return None
    return PartKey(key, match["outlet"], match["month"], match["crawl"], bool(match["compacted"]))


def new_crawl_id(now: datetime | None = None) -> str:
    """Sortable and unique per run: ``20261123T041500Z-1a2b3c``."""
    now = now or datetime.now(UTC)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"
