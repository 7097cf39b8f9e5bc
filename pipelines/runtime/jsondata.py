"""JSON read from an archive, a spool, a lock file or a lease, parsed bounded.

Everything newsarchive reads may have been written by someone else: one JSON document must not
crash a command, whatever it holds. :func:`loads_bounded` is the one way such JSON is parsed; it
refuses, with :class:`DamagedJSON` (a ``ValueError``, so each caller's damage path takes it):

- a document over the caller's size limit, or one that is not UTF-8;
- nesting deeper than :data:`MAX_DEPTH` (counted before parsing, by a linear scan, so that the
  parser's recursion is never reached: a ``RecursionError`` could surface anywhere);
- ``NaN``, ``Infinity`` and numbers that overflow to infinity (``1e999``);
- integers longer than Python's int digit limit.

The values are still the caller's to check where it uses them (:func:`is_count`, types of
fields); a string shown on a terminal or a page goes through :func:`one_line`.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from typing import Any

MAX_DEPTH = 32  # newsarchive's own JSON nests at most 4 deep
# a string (skipped whole, escapes included) or one bracket: what the depth scan looks at
# (an unclosed string runs to the end: every match ends where the next one may start, so the
# scan stays linear)
_STRING_OR_BRACKET = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\Z)|[\[\]{}]', re.DOTALL)
_OPENING = frozenset(b"[{")
_BIDI = ("LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI")  # embeddings, overrides, isolates


class DamagedJSON(ValueError):
    """A JSON document newsarchive read and will not use: it says what and why."""


def loads_bounded(data: bytes | str, max_bytes: int, what: str) -> Any:
    """``data`` parsed as JSON, or :class:`DamagedJSON` naming ``what`` and what is wrong."""
    raw = _utf8(data, what)
    if len(raw) > max_bytes:
        raise DamagedJSON(f"{what}: {len(raw):,} bytes, over the {max_bytes:,} bytes read")
    _check_depth(raw, what)
    try:
        return json.loads(raw.decode("utf-8"), parse_constant=_refuse_constant, parse_float=_finite_float)
    except UnicodeDecodeError as exc:
        raise DamagedJSON(f"{what}: not UTF-8 ({exc.reason} at byte {exc.start})") from None
    except DamagedJSON as exc:
        raise DamagedJSON(f"{what}: {exc}") from None
    except ValueError as exc:  # JSON's syntax errors, and ints over Python's digit limit
        raise DamagedJSON(f"{what}: not JSON ({str(exc)[:200]})") from None


def one_line(value: object, limit: int) -> str:
    """``value`` (a string from the archive) as one line of at most ``limit`` characters that
    does nothing on a terminal or a page: line breaks, control characters (escape sequences
    start with one) and bidi controls (which would reorder what is shown) become spaces."""
    text = "".join(
        " "
        if unicodedata.category(char) in ("Cc", "Zl", "Zp") or unicodedata.bidirectional(char) in _BIDI
        else char
        for char in str(value)[: limit * 2]
    )
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_count(value: object, below: int = 2**63) -> bool:
    """A whole number from 0 to below ``below`` (by default what Parquet's int64 holds), not a
    bool (which Python counts as an int): what a count read from the archive must be."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < below


def _utf8(data: bytes | str, what: str) -> bytes:
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    try:
        return data.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate
        raise DamagedJSON(f"{what}: not UTF-8 (a lone surrogate)") from None


def _check_depth(raw: bytes, what: str) -> None:
    """Refuse nesting deeper than :data:`MAX_DEPTH`, brackets inside strings not counted."""
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(raw):
        first = match.group()[0]
        if first in _OPENING:
            depth += 1
            if depth > MAX_DEPTH:
                raise DamagedJSON(f"{what}: nested deeper than {MAX_DEPTH} levels")
        elif first != ord('"'):
            depth -= 1


def _refuse_constant(name: str) -> Any:
    raise DamagedJSON(f"{name} is not a number JSON allows")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise DamagedJSON(f"{text[:40]} overflows a float")
    return value
