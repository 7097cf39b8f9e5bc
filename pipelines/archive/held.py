"""The archive's index in memory: sorted NumPy arrays of key digests, no Python object per entry.

A run holds every entry of the archive's index while it crawls: as dicts of Python strings and
objects that took about 2.4 KB per entry (2.7 GB at a million entries). Here an entry costs a
few dozen bytes of NumPy arrays, whatever the archive's age:

- every key the index holds (article id, URL key, text hash) is a sha256 in hex. It is held as
  its digest's 64-bit words, sorted, and found by ``np.searchsorted``. An article keeps its
  whole digest (four words, 32 bytes), because :meth:`HeldIndex.first_with_text` must give its
  id back (a row's ``duplicate_of``); a URL key or a text hash keeps its first word and 32 bits
  of the second. A new URL taken for a held one would never be fetched, so the 96 bits are
  chosen for that: 20 million keys and 10^8 lookups make a false match about 2.5e-14 likely
  (a 64-bit key alone: about 1e-4). Keys that share their first 64 bits are told apart by the
  rest (the tests craft them).
- per article: its version (int32), last fetch (int64 microseconds, so what was added is given
  back as it was), its part (int32, into the list of distinct part keys: few), its text (int32,
  the row of its text hash). Per URL and per text hash: the row of the article (int32). A visit
  (a fetch that archived no row): its outcome (int32, into the distinct outcomes) and time.
  About 84 bytes for an article reached by one URL with a text of its own.
- the text is compared here, not handed back: the index cannot give a full text hash back from
  96 bits, so dedup asks :meth:`HeldIndex.latest` whether the archive holds a given text.
- a key that is not 64 lowercase hex digits (an archive's value is untrusted, and tests name
  articles ``a``) is held by the sha256 of itself; article ids of that kind are also kept as
  strings, to be given back.

Arrow tables come in bulk (:meth:`HeldIndex.add_table`): their string buffers are read as hex by
NumPy in blocks, with no Python object per row, and wait as a chunk until a lookup, or until
they are as many rows as the arrays hold; then all of them are merged into the sorted arrays at
once (a stable sort of sorted runs, so merging is close to linear). Single entries
(:meth:`HeldIndex.add`: what a crawl publishes, a few thousand) go to small dicts looked at first,
merged into the arrays in bulk when they grow.

The semantics are those of the dicts they replace: an article's highest version wins; of one
version the first entry added gives its part and text and the latest ``last_fetched`` is kept; a
URL leads to the article of the entry added last; a text hash names the article first added
with it; of a URL's visits the one fetched last is kept (of two at once, or of unknown times, the
one added last). Index files are added base first, then deltas oldest first, so added last is
latest.

A crawl reads each index file into a layer of its own (:class:`Segment`: sorted arrays that never
change after), big ones mapped from the copies pipelines/archive/index_cache.py keeps, so that
what it holds does not grow with the archive: a lookup asks each layer, in the order their files
count, and combines what they say as the merge above would (:func:`_newer`).

A crawl looks up from its reactor thread while its archive thread adds what it publishes: every
public method holds the index's lock (a merge replaces the arrays; no lookup sees them half done).
"""

from __future__ import annotations

import functools
import hashlib
import re
import struct
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import numpy as np
import pyarrow as pa

_NULL_TIME = np.iinfo(np.int64).min  # last_fetched unknown (sorts below every time)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_HEX_KEY = re.compile(r"[0-9a-f]{64}")
_ODD_KEY = b"newsarchive.held.odd-key\0"  # what the digest of a key that is not hex starts with
_BLOCK = 8192  # rows decoded from hex at a time: a few MB of work space
_BATCH = 1 << 20  # rows made a chunk at a time: its work space is about twice its 84 bytes a row
_MERGE_AT = 1 << 18  # rows waiting in chunks that are merged even with no lookup
_ADDED_MAX = 1 << 14  # single entries held in dicts before they are merged into the arrays

# two hex digits (read as one little-endian uint16) -> the byte they spell; 0xFFFF: not lowercase hex
_HEX_PAIRS = np.full(1 << 16, 0xFFFF, np.uint16)
_DIGITS = np.frombuffer(b"0123456789abcdef", np.uint8).astype(np.uint16)
_HEX_PAIRS[(_DIGITS[:, None] | (_DIGITS[None, :] << 8)).ravel()] = np.arange(256, dtype=np.uint16)

Words = tuple[int, int, int, int]  # a key's sha256 digest as four big-endian 64-bit words
Short = tuple[int, int]  # a URL key or text hash: its first word and 32 bits of the second
_Method = TypeVar("_Method", bound=Callable[..., Any])


@dataclass(slots=True)
class Held:
    """The latest version the archive holds of one article."""

    file: str
    version: int
    last_fetched: datetime | None


@dataclass(frozen=True, slots=True)
class Visit:
    """The latest fetch of a URL that archived no row, and why (the entry's ``outcome``)."""

    outcome: str
    last_fetched: datetime | None


@dataclass(slots=True)
class _Added:
    """An article's state as single entries left it (its text as a :data:`Short`)."""

    file: str
    version: int
    last: int
    text: Short | None


def _words(key: str) -> Words:
    digest = (
        bytes.fromhex(key)
        if _HEX_KEY.fullmatch(key)
        else hashlib.sha256(_ODD_KEY + key.encode("utf-8", "surrogatepass")).digest()
    )
    return struct.unpack(">4Q", digest)


def _short(key: str) -> Short:
    words = _words(key)
    return words[0], words[1] >> 32


def _hex(words: Words) -> str:
    return struct.pack(">4Q", *words).hex()


def _micros(when: datetime | None) -> int:
    """Microseconds since the epoch (a time without a zone is UTC, as the index's columns are)."""
    if when is None:
        return _NULL_TIME
    return (when.replace(tzinfo=when.tzinfo or UTC) - _EPOCH) // timedelta(microseconds=1)


def _time(micros: int) -> datetime | None:
    """The time of ``micros``; None when unknown, or past what a datetime holds (year 9999: an
    index file that says so is damaged, and no time of it is trusted)."""
    try:
        return None if micros == _NULL_TIME else _EPOCH + timedelta(microseconds=int(micros))
    except OverflowError:
        return None


class _Names:
    """Distinct strings (part keys, outcomes) numbered in the order they come."""

    def __init__(self, names: list[str] | None = None) -> None:
        self.names: list[str] = list(names or [])
        self.codes: dict[str, int] = {name: code for code, name in enumerate(self.names)}

    def code(self, name: str | None) -> int:
        if name is None:
            return -1
        code = self.codes.get(name)
        if code is None:
            code = self.codes[name] = len(self.names)
            self.names.append(name)
        return code

    def name(self, code: int) -> str:
        return "" if code < 0 else self.names[code]

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def column(self, array: pa.Array | None, rows: int) -> np.ndarray:
        """Each row's code (-1 for null): the distinct values are numbered, not the rows."""
        if array is None:
            return np.full(rows, -1, np.int32)
        if not pa.types.is_dictionary(array.type):
            array = array.dictionary_encode()
        mapping = np.array([self.code(value) for value in array.dictionary.to_pylist()] + [-1], np.int32)
        indices, valid = _numbers(array.indices, np.int64)
        return mapping[np.where(valid, indices, -1)]


class PackedNames:
    """Names as one UTF-8 buffer and the offsets of each: a mapped segment's part keys (one per
    part of the archive: 140,000 at 10,000 runs) cost no Python string until a lookup names one."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray):
        self.data, self.offsets = data, offsets
        self._set: frozenset[str] | None = None

    @staticmethod
    def pack(names: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """``names`` as the buffer and offsets (``len(names) + 1``) this class reads."""
        encoded = [name.encode("utf-8", "surrogatepass") for name in names]
        offsets = np.zeros(len(encoded) + 1, np.int64)
        offsets[1:] = np.cumsum([len(name) for name in encoded], dtype=np.int64)
        return np.frombuffer(b"".join(encoded), np.uint8), offsets

    def name(self, code: int) -> str:
        if code < 0:
            return ""
        start, end = self.offsets.item(code), self.offsets.item(code + 1)
        return bytes(self.data[start:end]).decode("utf-8", "replace")

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def __iter__(self) -> Iterator[str]:
        return (self.name(code) for code in range(len(self)))

    def __contains__(self, name: object) -> bool:
        """Whether a name is here (the first question decodes them all, once: a rare question)."""
        if self._set is None:
            self._set = frozenset(self)
        return name in self._set


def _valid(bitmap: pa.Buffer | None, offset: int, rows: int) -> np.ndarray:
    if bitmap is None:
        return np.ones(rows, bool)
    bits = np.unpackbits(np.frombuffer(bitmap, np.uint8), bitorder="little")
    return bits[offset : offset + rows].astype(bool)


def _numbers(array: pa.Array, dtype: type) -> tuple[np.ndarray, np.ndarray]:
    """An integer (or timestamp) array's values as ``dtype``, and which are not null."""
    validity, values = array.buffers()[:2]
    width = array.type.bit_width // 8
    raw = np.frombuffer(values, np.dtype(f"<i{width}"), count=len(array), offset=array.offset * width)
    return raw.astype(dtype), _valid(validity, array.offset, len(array))


def _digests(
    array: pa.Array | None, rows: int, width: int = 4
) -> tuple[np.ndarray, np.ndarray, dict[Words, str]]:
    """The first ``width`` words of each value's digest ``(rows, width)``, which rows hold one, and
    the values that are no hex key (by their words). Hex is decoded by NumPy from the string
    buffers, a block at a time."""
    words = np.zeros((rows, width), np.uint64)
    if array is None:
        return words, np.zeros(rows, bool), {}
    if pa.types.is_dictionary(array.type):
        if not len(array.dictionary):  # every row null
            return words, np.zeros(rows, bool), {}
        values, present, odd = _digests(array.dictionary, len(array.dictionary), width)
        indices, valid = _numbers(array.indices, np.int64)
        indices = np.where(valid, indices, 0)
        return values[indices], valid & present[indices], odd
    if not (pa.types.is_string(array.type) or pa.types.is_large_string(array.type)):
        array = array.cast(pa.string())
    validity, offsets_buffer, data_buffer = array.buffers()
    offset_type = np.int64 if pa.types.is_large_string(array.type) else np.int32
    offsets = np.frombuffer(
        offsets_buffer, offset_type, count=rows + 1, offset=array.offset * np.dtype(offset_type).itemsize
    ).astype(np.int64)
    data = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0, np.uint8)
    present = _valid(validity, array.offset, rows)
    decoded = np.zeros(rows, bool)
    lengths = np.diff(offsets)
    present &= lengths > 0  # an empty key names nothing, as a null
    candidates = present & (lengths == 64)
    for start in range(0, rows, _BLOCK):
        block = np.flatnonzero(candidates[start : start + _BLOCK]) + start
        if not len(block):
            continue
        first = offsets[block[0]]
        if len(block) == block[-1] - block[0] + 1 and offsets[block[-1] + 1] - first == 64 * len(block):
            chars = data[first : first + 64 * len(block)].reshape(-1, 64)  # adjacent: a view
        else:
            chars = data[offsets[block, None] + np.arange(64)]
        pairs = _HEX_PAIRS[chars.view("<u2")]
        decoded[block] = pairs.max(axis=1) < 256
        words[block] = pairs.astype(np.uint8).view(">u8")[:, :width]
    odd: dict[Words, str] = {}
    for row in np.flatnonzero(present & ~decoded):
        value = array[int(row)].as_py()
        odd_words = _words(value)
        words[row], odd[odd_words] = odd_words[:width], value
    return words, present, odd


@dataclass(slots=True)
class _Tables:
    """Articles, URLs, text hashes and visits as columns. The arrays a :class:`HeldIndex` holds are
    sorted by key with one row per key; a chunk waiting to be merged is in the order added.
    ``a_text`` points into the texts (-1: none), ``u_article`` and ``t_article`` into the articles."""

    a0: np.ndarray
    a1: np.ndarray
    a2: np.ndarray
    a3: np.ndarray
    a_version: np.ndarray
    a_last: np.ndarray
    a_file: np.ndarray
    a_text: np.ndarray
    u0: np.ndarray
    u1: np.ndarray
    u_article: np.ndarray
    t0: np.ndarray
    t1: np.ndarray
    t_article: np.ndarray
    v0: np.ndarray
    v1: np.ndarray
    v_outcome: np.ndarray
    v_last: np.ndarray

    @classmethod
    def empty(cls) -> _Tables:
        return cls(**_EMPTY)

    def rows(self) -> int:
        return len(self.a0) + len(self.u0) + len(self.t0) + len(self.v0)


_U64, _U32, _I32, _I64 = np.uint64, np.uint32, np.int32, np.int64
_DTYPES = {
    **dict.fromkeys(("a0", "a1", "a2", "a3", "u0", "t0", "v0"), _U64),
    **dict.fromkeys(("u1", "t1", "v1"), _U32),
    **dict.fromkeys(("a_version", "a_file", "a_text", "u_article", "t_article", "v_outcome"), _I32),
    **dict.fromkeys(("a_last", "v_last"), _I64),
}
_EMPTY = {name: np.zeros(0, dtype) for name, dtype in _DTYPES.items()}


def _find(
    first: np.ndarray, rest: list[np.ndarray], key: tuple[int, ...], fences: np.ndarray | None = None
) -> int:
    """The row of ``key`` in sorted columns, or -1. With ``fences`` (every :data:`FENCE`-th value of
    ``first``) only the stretch of ``first`` between two fences is searched: a column mapped from
    a file is read a page or two a lookup, not the ~20 pages of a binary search over all of it."""
    wanted = np.uint64(key[0])  # a NumPy scalar: a Python int would compare as float
    if fences is None:
        row = int(first.searchsorted(wanted))
    else:
        fence = int(fences.searchsorted(wanted))  # fences[fence - 1] < wanted <= fences[fence]
        start = max(fence - 1, 0) * FENCE
        row = start + int(first[start : fence * FENCE + 1].searchsorted(wanted))
    while row < len(first) and first.item(row) == key[0]:
        if all(column.item(row) == part for column, part in zip(rest, key[1:], strict=True)):
            return row
        row += 1
    return -1


def _groups(first: np.ndarray, rest: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Rows sorted by key, stably (rows of one key stay in the order added): the order, where
    each key's rows start, and each sorted row's key number."""
    order = np.argsort(first, kind="stable")
    leading = first[order]
    same = leading[1:] == leading[:-1]
    new = np.ones(len(order), bool)
    new[1:] = ~same
    if rest and same.any():  # keys sharing their first word: sorted by the rest too, then told apart
        shared = np.flatnonzero(np.r_[same, False] | np.r_[False, same])
        rows = order[shared]
        for column in [*reversed(rest), first]:
            rows = rows[np.argsort(column[rows], kind="stable")]
        order[shared] = rows
        after = np.flatnonzero(same) + 1
        for column in rest:
            new[after] |= column[order[after]] != column[order[after - 1]]
    group = np.cumsum(new, dtype=_I32)
    group -= 1
    return order, np.flatnonzero(new), group


def _renumbered(order: np.ndarray, group: np.ndarray) -> np.ndarray:
    """Old row -> new row, for the pointers into a table just merged."""
    renumber = np.empty(len(order), _I32)
    renumber[order] = group
    return renumber


def _merged(parts: list[_Tables]) -> _Tables:
    """One sorted table of the parts, in the order they were added (the first: the arrays held)."""
    a_start = np.cumsum([0] + [len(p.a0) for p in parts[:-1]])
    t_start = np.cumsum([0] + [len(p.t0) for p in parts[:-1]])

    def joined(name: str, starts: np.ndarray | None = None) -> np.ndarray:
        """A column of all parts, taken from them (each freed as soon as it is merged)."""
        columns = [getattr(p, name) for p in parts]
        for p in parts:
            setattr(p, name, _EMPTY[name])
        if starts is not None:  # pointers, into the joined table they point to
            columns = [
                c if not s else np.where(c >= 0, c + s, c) for c, s in zip(columns, starts, strict=True)
            ]
        columns = [c for c in columns if len(c)]
        joined = columns[0] if len(columns) == 1 else np.concatenate(columns or [_EMPTY[name]])
        return joined.astype(_DTYPES[name], copy=False)

    merged = _Tables.empty()
    words = [joined(name) for name in ("a0", "a1", "a2", "a3")]
    if len(words[0]):
        order, starts, group = _groups(words[0], words[1:])
        versions = joined("a_version")[order]
        merged.a_version = np.maximum.reduceat(versions, starts)
        at_newest = versions == merged.a_version[group]
        del versions
        firsts = np.flatnonzero(at_newest)
        chosen = order[firsts[np.r_[True, group[firsts][1:] != group[firsts][:-1]]]]
        del firsts  # chosen: of an article's newest version, the entry added first
        lasts = joined("a_last")[order]
        lasts[~at_newest] = _NULL_TIME  # an older version's fetches are not the newest's
        merged.a_last = np.maximum.reduceat(lasts, starts)
        del lasts, at_newest, starts
        article_rows = _renumbered(order, group)
        del order, group
        merged.a_file = joined("a_file")[chosen]
        a_text = joined("a_text", t_start)[chosen]
        for n in range(4):  # each word's column freed once gathered
            setattr(merged, f"a{n}", words[n][chosen])
            words[n] = _EMPTY["a0"]
        del chosen
    del words
    t0, t1 = joined("t0"), joined("t1")
    if len(t0):
        order, starts, group = _groups(t0, [t1])
        chosen = order[starts]  # the first article added with the text
        merged.t0, merged.t1 = t0[chosen], t1[chosen]
        merged.t_article = article_rows[joined("t_article", a_start)[chosen]]
        text_rows = _renumbered(order, group)
        merged.a_text = np.where(a_text >= 0, text_rows[np.maximum(a_text, 0)], -1).astype(_I32)
    elif len(merged.a0):
        merged.a_text = a_text
    u0, u1 = joined("u0"), joined("u1")
    if len(u0):
        order, starts, _ = _groups(u0, [u1])
        chosen = order[np.r_[starts[1:], len(order)] - 1]  # the entry added last
        merged.u0, merged.u1 = u0[chosen], u1[chosen]
        merged.u_article = article_rows[joined("u_article", a_start)[chosen]]
    v0, v1 = joined("v0"), joined("v1")
    if len(v0):
        order, starts, group = _groups(v0, [v1])
        lasts = joined("v_last")[order]
        newest = np.maximum.reduceat(lasts, starts)
        latest = np.flatnonzero(lasts == newest[group])
        chosen = order[latest[np.r_[group[latest][1:] != group[latest][:-1], True]]]  # of those, added last
        merged.v0, merged.v1 = v0[chosen], v1[chosen]
        merged.v_outcome, merged.v_last = joined("v_outcome")[chosen], newest
    return merged


class Segment:
    """One layer of sorted arrays (:class:`_Tables`, one row per key) and the names its codes
    stand for: an index file's entries, built once (:meth:`HeldIndex.frozen`) and never changed
    after, held in memory or mapped from a file (pipelines/archive/index_cache.py); or the
    arrays a :class:`HeldIndex` merges its own entries into."""

    __slots__ = ("arrays", "fences", "files", "odd_ids", "outcomes")

    def __init__(
        self,
        arrays: _Tables,
        files: _Names | PackedNames,
        outcomes: _Names,
        odd_ids: dict[Words, str],
        fences: dict[str, np.ndarray] | None = None,
    ):
        self.arrays, self.files, self.outcomes, self.odd_ids = arrays, files, outcomes, odd_ids
        self.fences = fences or {}  # of the sorted first words (a0, u0, t0, v0): see _find

    @classmethod
    def from_columns(
        cls,
        columns: dict[str, np.ndarray],
        files: PackedNames,
        outcomes: list[str],
        odd_ids: list[str],
        fences: dict[str, np.ndarray],
    ) -> Segment:
        """A segment of :data:`COLUMNS` (checked by the caller: sorted, pointers in range) and
        the fences of its sorted columns (every :data:`FENCE`-th value)."""
        odd = {_words(i): i for i in odd_ids}
        return cls(_Tables(**columns), files, _Names(outcomes), odd, fences)

    def columns(self) -> dict[str, np.ndarray]:
        return {name: getattr(self.arrays, name) for name in COLUMNS}

    def article_row(self, words: Words) -> int:
        arrays = self.arrays
        return _find(arrays.a0, [arrays.a1, arrays.a2, arrays.a3], words, self.fences.get("a0"))

    def text_row(self, text: Short) -> int:
        return _find(self.arrays.t0, [self.arrays.t1], text, self.fences.get("t0"))

    def url_row(self, key: Short) -> int:
        return _find(self.arrays.u0, [self.arrays.u1], key, self.fences.get("u0"))

    def state(self, row: int) -> _Added:
        arrays = self.arrays
        text = arrays.a_text.item(row)
        return _Added(
            self.files.name(arrays.a_file.item(row)),
            arrays.a_version.item(row),
            arrays.a_last.item(row),
            None if text < 0 else (arrays.t0.item(text), arrays.t1.item(text)),
        )

    def words(self, row: int) -> Words:
        arrays = self.arrays
        return arrays.a0.item(row), arrays.a1.item(row), arrays.a2.item(row), arrays.a3.item(row)

    def visit(self, key: Short) -> tuple[str, int] | None:
        """The outcome and time of this URL's latest visit in the segment."""
        row = _find(self.arrays.v0, [self.arrays.v1], key, self.fences.get("v0"))
        if row < 0:
            return None
        return self.outcomes.name(self.arrays.v_outcome.item(row)), self.arrays.v_last.item(row)


# one value in this many of a mapped segment's sorted keys is held in memory (a 4 KB page of them)
FENCE = 512
COLUMNS = tuple(_DTYPES)  # a segment's arrays, by name (each a 1-D array of its dtype in _DTYPES)
COLUMN_DTYPES = dict(_DTYPES)


def _newer(state: _Added | None, found: _Added) -> _Added:
    """Two states of an article, the second added later: the highest version; of one version,
    the first added gives part and text, the latest fetch counts (as :func:`_merged` keeps)."""
    if state is None or found.version > state.version:
        return found
    if found.version == state.version and found.last > state.last:
        state.last = found.last
    return state


def _locked(method: _Method) -> _Method:
    """The method, run holding its index's lock."""

    @functools.wraps(method)
    def locked(index: HeldIndex, *args: Any) -> Any:
        with index._lock:
            return method(index, *args)

    return cast(_Method, locked)


class HeldIndex:
    """What the archive holds: article id -> :class:`Held`, URL key -> article, text hash -> the
    article first archived with it, URL key -> :class:`Visit`; entries added in bulk
    (:meth:`add_table`) or one at a time (:meth:`add`), looked up by key.

    Before anything is added, whole index files may be added as :class:`Segment` layers
    (:meth:`add_segment`, in the order their entries count): a lookup asks each layer, then the
    arrays and dicts of what was added since, and combines what they say as a merge would. A
    crawl maps the big ones from files, so that what it holds in memory does not grow with the
    archive."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._segments: list[Segment] = []  # layers added whole, oldest first; never merged
        self._arrays = _Tables.empty()
        self._waiting: list[_Tables] = []  # chunks of tables added, merged at the next lookup
        self._files = _Names()
        self._outcomes = _Names()
        self._odd_ids: dict[Words, str] = {}  # article ids that are no hex key, by their digest
        # single entries since the arrays were last merged: looked at before the arrays
        self._added: dict[Words, _Added] = {}
        self._added_urls: dict[Short, Words] = {}
        self._added_texts: dict[Short, Words] = {}  # only texts the arrays do not hold
        self._added_visits: dict[Short, tuple[int, int]] = {}  # outcome code, last fetched

    # ---- adding

    @_locked
    def takes_segments(self) -> bool:
        """Nothing was added but segments: one more may come (:meth:`add_segment`)."""
        return not (self._arrays.rows() or self._waiting or self._added or self._added_visits)

    @_locked
    def has_entries(self) -> bool:
        return bool(self._segments) or not self.takes_segments()

    @_locked
    def add_segment(self, segment: Segment) -> None:
        """A layer whose entries count after those of the layers before it; only before
        anything is added otherwise (what is added counts after every layer)."""
        if not self.takes_segments():
            raise ValueError("a segment is added before any entry")
        self._segments.append(segment)
        self._odd_ids.update(segment.odd_ids)

    @_locked
    def frozen(self) -> Segment:
        """What was added, as one segment (the index is not to be added to afterwards)."""
        if self._segments:
            raise ValueError("an index of segments is no segment")
        self._stage_added()
        self._merge()
        return self._own()

    def _own(self) -> Segment:
        """The arrays merged from what was added (not a segment of it), as a layer."""
        return Segment(self._arrays, self._files, self._outcomes, self._odd_ids)

    def _layers(self) -> list[Segment]:
        return [*self._segments, self._own()]

    @_locked
    def add_table(self, table: pa.Table | pa.RecordBatch) -> None:
        """Entries in bulk: columns of ``INDEX_SCHEMA`` (any may be absent: null), strings plain or
        dictionary-encoded. A row with an ``outcome`` is a visit; one with neither an article id
        nor an outcome adds nothing."""
        self._stage_added()
        for batch in table.to_batches(_BATCH) if isinstance(table, pa.Table) else [table]:
            for start in range(0, batch.num_rows, _BATCH):  # what decoding takes stays small
                self._waiting.append(self._chunk(batch.slice(start, _BATCH)))
        if sum(chunk.rows() for chunk in self._waiting) >= max(self._arrays.rows(), _MERGE_AT):
            self._merge()

    @_locked
    def add(self, entry: dict) -> None:
        """One entry: ``INDEX_SCHEMA``'s keys, any of them absent."""
        self._merge()  # the dicts start from what the arrays hold
        key = entry.get("url_key")
        last = _micros(entry.get("last_fetched"))
        if entry.get("outcome") is not None:
            known = self._visit(_short(key)) if key else None
            if key and (known is None or last >= known[1]):
                self._added_visits[_short(key)] = (self._outcomes.code(entry["outcome"]), last)
        elif entry.get("article_id"):
            self._add_article(entry, key, last)
        if len(self._added) + len(self._added_urls) + len(self._added_visits) > _ADDED_MAX:
            self._stage_added()
            self._merge()

    def _add_article(self, entry: dict, key: str | None, last: int) -> None:
        article = entry["article_id"]
        words = _words(article)
        if not _HEX_KEY.fullmatch(article):
            self._odd_ids[words] = article
        version = entry.get("version") or 1
        text = _short(entry["text_hash"]) if entry.get("text_hash") else None
        state = self._added.get(words) or self._held_state(words)
        if state is None or version > state.version:
            state = _Added(entry.get("file") or "", version, last, text)
        elif version == state.version and last > state.last:  # a null time is the smallest there is
            state.last = last
        self._added[words] = state
        if key:
            self._added_urls[_short(key)] = words
        if text is not None and text not in self._added_texts and not self._holds_text(text):
            self._added_texts[text] = words

    def _held_state(self, words: Words) -> _Added | None:
        """An article's state as the layers hold it, combined in their order."""
        state = None
        for layer in self._layers():
            row = layer.article_row(words)
            if row >= 0:
                state = _newer(state, layer.state(row))
        return state

    def _holds_text(self, text: Short) -> bool:
        return any(layer.text_row(text) >= 0 for layer in self._layers())

    def _chunk(self, batch: pa.RecordBatch) -> _Tables:
        """A batch's entries as columns in the order added, no Python object per row (each
        column taken as soon as it is decoded: the batch's strings are the most it holds)."""
        rows = batch.num_rows

        def column(name: str) -> pa.Array | None:
            return batch.column(name) if name in batch.schema.names else None

        def numbers(name: str, dtype: type, null: int) -> np.ndarray:
            array = column(name)
            if array is None:
                return np.full(rows, null, dtype)
            if pa.types.is_timestamp(array.type) and array.type.unit != "us":
                array = array.cast(pa.timestamp("us", tz="UTC"))
            values, valid = _numbers(array, dtype)
            return np.where(valid, values, null).astype(dtype)

        def shorts(words: np.ndarray, taken: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return words[taken, 0], (words[taken, 1] >> np.uint64(32)).astype(_U32)

        chunk = _Tables.empty()
        outcomes = self._outcomes.column(column("outcome"), rows)
        ids, archived, odd = _digests(column("article_id"), rows)
        self._odd_ids.update(odd)
        archived &= outcomes < 0
        articles = np.flatnonzero(archived)
        chunk.a0, chunk.a1, chunk.a2, chunk.a3 = (ids[articles, n] for n in range(4))  # a column each
        del ids
        article_of = (np.cumsum(archived) - 1).astype(_I32)  # row -> its article's row in the chunk
        versions = numbers("version", _I32, 1)[articles]
        chunk.a_version = np.where(versions == 0, 1, versions).astype(_I32)
        last = numbers("last_fetched", _I64, _NULL_TIME)
        chunk.a_last = last[articles]
        chunk.a_file = self._files.column(column("file"), rows)[articles]
        texts, with_text, _ = _digests(column("text_hash"), rows, 2)
        text_rows = np.flatnonzero(with_text & archived)
        chunk.t0, chunk.t1 = shorts(texts, text_rows)
        del texts
        chunk.t_article = article_of[text_rows]
        chunk.a_text = np.full(len(articles), -1, _I32)
        chunk.a_text[chunk.t_article] = np.arange(len(text_rows), dtype=_I32)
        urls, with_url, _ = _digests(column("url_key"), rows, 2)
        url_rows = np.flatnonzero(with_url & archived)
        chunk.u0, chunk.u1 = shorts(urls, url_rows)
        chunk.u_article = article_of[url_rows]
        visits = np.flatnonzero(with_url & (outcomes >= 0))
        chunk.v0, chunk.v1 = shorts(urls, visits)
        chunk.v_outcome, chunk.v_last = outcomes[visits], last[visits]
        return chunk

    def _stage_added(self) -> None:
        """The single entries, as a chunk waiting to be merged (before anything added after them)."""
        if not (self._added or self._added_visits):
            return
        articles = list(self._added)
        article_row = {words: row for row, words in enumerate(articles)}
        states = [self._added[words] for words in articles]
        # the texts first added here, then the other texts of these articles (the arrays hold them)
        texts = dict.fromkeys(self._added_texts) | dict.fromkeys(s.text for s in states if s.text is not None)
        text_owner = {
            text: article_row[self._added_texts[text]] if text in self._added_texts else -1 for text in texts
        }
        for row, state in enumerate(states):
            if state.text is not None and text_owner[state.text] < 0:
                text_owner[state.text] = row
        text_row = {text: row for row, text in enumerate(texts)}
        visits = list(self._added_visits.items())

        def u64(values: list[int]) -> np.ndarray:
            return np.array(values, _U64)

        self._waiting.append(
            _Tables(
                *(u64([words[n] for words in articles]) for n in range(4)),
                a_version=np.array([s.version for s in states], _I32),
                a_last=np.array([s.last for s in states], _I64),
                a_file=np.array([self._files.code(s.file) for s in states], _I32),
                a_text=np.array([-1 if s.text is None else text_row[s.text] for s in states], _I32),
                u0=u64([key[0] for key in self._added_urls]),
                u1=np.array([key[1] for key in self._added_urls], _U32),
                u_article=np.array([article_row[words] for words in self._added_urls.values()], _I32),
                t0=u64([text[0] for text in texts]),
                t1=np.array([text[1] for text in texts], _U32),
                t_article=np.array(list(text_owner.values()), _I32),
                v0=u64([key[0] for key, _ in visits]),
                v1=np.array([key[1] for key, _ in visits], _U32),
                v_outcome=np.array([outcome for _, (outcome, _) in visits], _I32),
                v_last=np.array([last for _, (_, last) in visits], _I64),
            )
        )
        self._added, self._added_urls, self._added_texts, self._added_visits = {}, {}, {}, {}

    def _merge(self) -> None:
        if self._waiting:
            parts, self._waiting = [self._arrays, *self._waiting], []
            self._arrays = _Tables.empty()  # the old arrays go as soon as the merge is done
            self._arrays = _merged(parts)

    # ---- looking up

    @_locked
    def article(self, article_id: str) -> Held | None:
        """The latest version held of an article."""
        return self._held(_words(article_id))

    def __contains__(self, article_id: str) -> bool:
        return self.article(article_id) is not None

    @_locked
    def latest(self, article_id: str, text_hash: str) -> tuple[int, bool] | None:
        """The latest version held of an article, and whether it has this text (True too when the
        archive kept no text hash of it)."""
        state = self._state(_words(article_id))
        return None if state is None else (state.version, state.text in (None, _short(text_hash)))

    @_locked
    def by_url(self, url_key: str) -> Held | None:
        """What is held of the article this URL led to, if it led to one."""
        state = self._url_state(_short(url_key))
        return None if state is None else Held(state.file, state.version, _time(state.last))

    @_locked
    def first_with_text(self, text_hash: str) -> str | None:
        """The article first archived with this text."""
        self._merge()
        text = _short(text_hash)
        for layer in self._layers():
            row = layer.text_row(text)
            if row >= 0:
                return self._article_id(layer.words(layer.arrays.t_article.item(row)))
        words = self._added_texts.get(text)
        return None if words is None else self._article_id(words)

    @_locked
    def visit(self, url_key: str) -> Visit | None:
        """The latest fetch of this URL that archived no row; None if there was none, or if the
        article the URL led to was fetched since (through this URL or another of its URLs)."""
        self._merge()
        key = _short(url_key)
        visit = self._visit(key)
        if visit is None:
            return None
        outcome, last = visit
        state = self._url_state(key)
        if state is not None and state.last > last:  # fetched since (a null time: never known later)
            return None
        return Visit(outcome, _time(last))

    @_locked
    def __len__(self) -> int:
        """Articles held."""
        self._stage_added()
        self._merge()
        if not self._segments:
            return len(self._arrays.a0)
        return len(self._distinct_articles())

    def __iter__(self) -> Iterator[str]:
        """Every article id held (a Python string each: for tools and tests, not for a crawl)."""
        with self._lock:
            self._stage_added()
            self._merge()
            words = self._distinct_articles()
            ids = [self._article_id(tuple(row)) for row in words.tolist()]
        return iter(ids)

    def _distinct_articles(self) -> np.ndarray:
        """The article digests of every layer, once each, sorted ``(rows, 4)``."""
        layers = [layer.arrays for layer in self._layers()]
        words = np.stack([np.concatenate([getattr(a, f"a{n}") for a in layers]) for n in range(4)], axis=1)
        return np.unique(words, axis=0)

    def _visit(self, key: Short) -> tuple[str, int] | None:
        """A URL's latest visit (outcome, time): of two at one time, the one added last."""
        added = self._added_visits.get(key)
        if added is not None:
            return self._outcomes.name(added[0]), added[1]
        visit = None
        for layer in self._layers():
            found = layer.visit(key)
            if found is not None and (visit is None or found[1] >= visit[1]):
                visit = found
        return visit

    def _state(self, words: Words) -> _Added | None:
        self._merge()
        return self._added.get(words) or self._held_state(words)

    def _held(self, words: Words) -> Held | None:
        state = self._state(words)
        return None if state is None else Held(state.file, state.version, _time(state.last))

    def _url_state(self, key: Short) -> _Added | None:
        """The state of the article a URL led to: the single entries' word, else the arrays'."""
        self._merge()
        words = self._added_urls.get(key)
        if words is not None:
            return self._state(words)
        for layer in reversed(self._layers()):  # the URL leads where the entry added last says
            row = layer.url_row(key)
            if row >= 0:
                return self._state(layer.words(layer.arrays.u_article.item(row)))
        return None

    def _article_id(self, words: Words) -> str:
        return self._odd_ids.get(words) or _hex(words)
