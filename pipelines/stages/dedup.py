"""Dedup stage: each article is archived once, each changed text once more, and copies are linked.

An article is identified by its canonical URL (canonicalised, hashed): the same article reached
through a sitemap, a feed and a listing, or fetched again by a later run, is one article. Its
text decides what a fetch adds: the text the archive holds already adds nothing (the index notes
the fetch), a changed text is a new row with ``version`` + 1. The same text at another URL, in
this outlet or another (a wire copy), is a row of its own with ``duplicate_of`` naming the
article first archived with it; ``text_simhash`` links copies with small edits.
"""

from __future__ import annotations

import hashlib
from itertools import islice
from typing import Protocol
from urllib.parse import urlsplit

import numpy as np
from w3lib.url import canonicalize_url

from pipelines.article import Article
from pipelines.stages.tokens import TOKEN

_CHUNK = 1 << 16  # tokens per block: 4 MB of work space for the bit count, whatever the text


def url_key(url: str) -> str:
    """sha256 of the canonicalised URL: the key of a page, and of an article by its canonical URL."""
    return hashlib.sha256(canonicalize_url(url).encode("utf-8")).hexdigest()


article_id = url_key  # an article is the page its canonical URL names


def text_hash(text: str) -> str:
    """sha256 of the text with white space folded: the same article text, the same hash."""
    return hashlib.sha256(" ".join(text.split()).encode("utf-8")).hexdigest()


def simhash(text: str) -> int | None:
    """64-bit SimHash of the text's token 3-grams, as a signed integer (Parquet has no unsigned
    64-bit type most readers agree on); None for a text without tokens. Read in blocks of
    :data:`_CHUNK` tokens, so a text of any length costs the same memory."""
    tokens = (match.group().lower() for match in TOKEN.finditer(text))
    hashes: dict[str, int] = {}

    def hashed(token: str) -> int:
        value = hashes.get(token)
        if value is None:
            value = hashes[token] = int.from_bytes(
                hashlib.blake2b(token.encode(), digest_size=8).digest(), "little"
            )
        return value

    ones = np.zeros(64, dtype=np.uint64)
    grams = 0
    tail = np.empty(0, dtype=np.uint64)  # the last two tokens of the block before: 3-grams span blocks
    while block := list(islice(tokens, _CHUNK)):
        window = np.concatenate([tail, np.fromiter(map(hashed, block), dtype=np.uint64, count=len(block))])
        if len(window) >= 3:  # a 3-gram: its three tokens' hashes, rotated apart and combined
            combined = _mix(window[:-2] ^ _rotate(window[1:-1], 21) ^ _rotate(window[2:], 42))
            ones += _bit_counts(combined)
            grams += len(combined)
        tail = window[-2:]
    if not grams:  # one or two tokens: those
        if not len(tail):
            return None
        ones = _bit_counts(_mix(tail))
        grams = len(tail)
    value = sum(1 << bit for bit in range(64) if 2 * int(ones[bit]) > grams)
    return value - (1 << 64) if value >= 1 << 63 else value


def _bit_counts(values: np.ndarray) -> np.ndarray:
    """How many of ``values`` have each of the 64 bits set (a byte per bit unpacked, not eight)."""
    little_endian = values.astype("<u8", copy=False).view(np.uint8)
    return np.unpackbits(little_endian, bitorder="little").reshape(-1, 64).sum(axis=0)


def _rotate(values: np.ndarray, bits: int) -> np.ndarray:
    return (values << np.uint64(bits)) | (values >> np.uint64(64 - bits))


def _mix(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: every input bit moves half the output bits."""
    values = (values ^ (values >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    values = (values ^ (values >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return values ^ (values >> np.uint64(31))


def trusted_canonical(url: str, canonical: str | None) -> str:
    """A page's canonical URL, unless it points off-site or at a site's home page."""
    if not canonical:
        return url
    claimed, fetched = urlsplit(canonical), urlsplit(url)
    if claimed.hostname != fetched.hostname or claimed.path in ("", "/"):
        return url
    return canonical


class Archived(Protocol):
    """What dedup asks of the archive (:class:`pipelines.archive.index.ArchiveIndex` answers)."""

    def latest(self, article_id: str, text_hash: str) -> tuple[int, bool] | None:
        """The latest version the archive holds of an article, and whether it has this text (True
        too for an old archive that kept no text hash)."""

    def first_with_text(self, text_hash: str) -> str | None:
        """The article first archived with this text."""


class Deduplicator:
    """Decides what an item adds: sets ``canonical_url``, ``article_id``, ``text_hash``,
    ``version``, ``duplicate_of`` and ``text_simhash``, or says why it adds nothing.

    The SimHash is taken here, in the crawl process, and only of rows: with numpy, which the
    crawl process holds anyway for pyarrow, rather than in the workers (13 MB and an import
    each)."""

    def __init__(self, archived: Archived):
        self.archived = archived
        self.seen_ids: set[str] = set()
        self.first_texts: dict[str, str] = {}  # text hash -> article id, for this run's rows

    def duplicate(self, item: Article) -> str | None:
        """Why the item adds no row (``duplicate_url``: this run has the article already;
        ``unchanged``: the archive holds this text of it), or None."""
        item.canonical_url = trusted_canonical(item.url, item.canonical_url)
        item.article_id = article_id(item.canonical_url)
        item.text_hash = text_hash(item.text or "")
        if item.article_id in self.seen_ids:
            return "duplicate_url"
        latest = self.archived.latest(item.article_id, item.text_hash)
        if latest is not None:
            held_version, same_text = latest
            if same_text:
                return "unchanged"
            item.version = held_version + 1
        first = self.first_texts.get(item.text_hash) or self.archived.first_with_text(item.text_hash)
        if first is not None and first != item.article_id:
            item.duplicate_of = first
        self.seen_ids.add(item.article_id)
        self.first_texts.setdefault(item.text_hash, item.article_id)
        item.text_simhash = simhash(item.text or "")
        return None
