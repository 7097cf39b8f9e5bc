"""Bytes to text for news pages, whose declared charsets are often wrong.

Order of belief: a byte-order mark; then valid UTF-8 (other encodings of CJK or accented text
are practically never valid UTF-8); then what the server and the page declare, each tried
strictly; then charset-normalizer's guess. Legacy labels are read as browsers read them
(WHATWG): gb2312 and gbk as gb18030, latin-1 and ascii as windows-1252, big5 as big5hkscs.
"""

from __future__ import annotations

import codecs
import re
from dataclasses import dataclass

from charset_normalizer import from_bytes

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([a-zA-Z0-9_.:-]+)""", re.IGNORECASE)
_BOMS = ((codecs.BOM_UTF8, "utf-8-sig"), (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))
_WHATWG = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "gb_2312-80": "gb18030",
    "iso-8859-1": "cp1252",
    "latin-1": "cp1252",
    "latin1": "cp1252",
    "ascii": "cp1252",
    "us-ascii": "cp1252",
    "big5": "big5hkscs",
    "x-x-big5": "big5hkscs",
}


@dataclass(frozen=True)
class DecodedPage:
    text: str
    encoding: str  # Python codec name actually used
    declared: str | None  # what the server or page said, if anything


def header_charset(content_type: str) -> str | None:
    """The charset a Content-Type header names, if any."""
    for parameter in content_type.split(";")[1:]:
        key, _, value = parameter.partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip("\"'")
    return None


def decode_html(body: bytes, header_charset: str | None = None) -> DecodedPage:
    meta = _META_CHARSET.search(body[:4096])
    meta_charset = meta.group(1).decode("ascii", "replace") if meta else None
    declared = header_charset or meta_charset
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return DecodedPage(body.decode(encoding, "replace"), encoding, declared)
    candidates = ["utf-8", header_charset, meta_charset]
    for label in candidates:
        encoding = _codec(label)
        if encoding is None:
            continue
        try:
            return DecodedPage(body.decode(encoding), encoding, declared)
        except UnicodeDecodeError:
            continue
    guess = from_bytes(body).best()
    if guess is not None:
        text = str(guess)
        if _decodes_to(body, "cp1252", text):  # name the common superset, not a lookalike
            return DecodedPage(text, "cp1252", declared)
        return DecodedPage(text, _codec(guess.encoding) or guess.encoding, declared)
    return DecodedPage(body.decode("gb18030", "replace"), "gb18030", declared)


def _decodes_to(body: bytes, encoding: str, text: str) -> bool:
    try:
        return body.decode(encoding) == text
    except UnicodeDecodeError:
        return False


def _codec(label: str | None) -> str | None:
    if not label:
        return None
    label = label.strip().lower()
    label = _WHATWG.get(label, label)
    try:
        return codecs.lookup(label).name
    except LookupError:
        return None
