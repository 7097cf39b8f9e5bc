"""The index in memory: the semantics of the dicts it replaced, whichever way entries come."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from pipelines.archive import held as held_module
from pipelines.archive.held import Held, HeldIndex, Segment, Visit
from pipelines.archive.schema import INDEX_SCHEMA
from pipelines.stages.dedup import text_hash, url_key


def day(n: int) -> datetime:
    return datetime(2026, 1, n, tzinfo=UTC)


A, B, C = (url_key(f"https://x.cn/{name}.html") for name in ("a", "b", "c"))
T1, T2, T3 = (text_hash(f"text {n}") for n in (1, 2, 3))
U_A, U_OLD, U_GONE = A, url_key("https://x.cn/old"), url_key("https://x.cn/gone")
PART = "outlet=xx/published=2026-01/part-c{}-00001.parquet"

# in the order a run adds them: versions, refetches, a URL that moves, a text shared, visits
ENTRIES = [
    {
        "url_key": U_A,
        "article_id": A,
        "text_hash": T1,
        "version": 1,
        "file": PART.format(1),
        "last_fetched": day(1),
    },
    {
        "url_key": U_OLD,
        "article_id": A,
        "text_hash": T1,
        "version": 1,
        "file": PART.format(1),
        "last_fetched": day(1),
    },
    {"url_key": U_GONE, "outcome": "failed", "last_fetched": day(2)},
    {"article_id": B, "text_hash": T1, "version": None, "file": PART.format(2), "last_fetched": day(2)},
    {
        "url_key": U_A,
        "article_id": A,
        "text_hash": T2,
        "version": 2,
        "file": PART.format(3),
        "last_fetched": day(3),
    },
    {
        "url_key": U_A,
        "article_id": A,
        "text_hash": T1,
        "version": 1,
        "file": PART.format(4),
        "last_fetched": day(9),
    },
    {
        "url_key": U_OLD,
        "article_id": A,
        "text_hash": T2,
        "version": 2,
        "file": PART.format(5),
        "last_fetched": day(5),
    },
    {
        "url_key": U_OLD,
        "article_id": C,
        "text_hash": T3,
        "version": 1,
        "file": PART.format(6),
        "last_fetched": None,
    },
    {"url_key": U_GONE, "outcome": "not_article", "last_fetched": day(4)},
    {"url_key": U_GONE, "outcome": "refused", "last_fetched": day(3)},  # added later, fetched earlier
    {"article_id": "a", "file": PART.format(7)},  # an id that is no hex key (an archive's, untrusted)
]


def expect_the_entries(index: HeldIndex) -> None:
    assert index.article(A) == Held(PART.format(3), 2, day(5))  # v2's first part, its last fetch
    assert index.article(B) == Held(PART.format(2), 1, day(2))
    assert index.by_url(U_OLD) == Held(PART.format(6), 1, None)  # the URL led to C last
    assert index.by_url(U_A) == index.article(A)
    assert index.by_url(url_key("https://x.cn/d.html")) is None
    assert (
        index.first_with_text(T1) == A and index.first_with_text(T2) == A and index.first_with_text(T3) == C
    )
    assert index.first_with_text(text_hash("never")) is None
    assert index.latest(A, T2) == (2, True) and index.latest(A, T1) == (2, False)
    assert index.latest("a", T1) == (1, True)  # no text hash kept: the text is taken as held
    assert index.latest(url_key("https://x.cn/d.html"), T1) is None
    assert index.visit(U_GONE) == Visit("not_article", day(4))
    assert index.visit(U_A) is None
    assert "a" in index and A in index and url_key("https://x.cn/d.html") not in index
    assert index.article("a") == Held(PART.format(7), 1, None)
    assert len(index) == 4 and sorted(index) == sorted([A, B, C, "a"])


def table(entries: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(entries, schema=INDEX_SCHEMA)


@pytest.mark.parametrize("added_max", [1, 1 << 14])
@pytest.mark.parametrize("table_per_entry", [False, True])
def test_every_mix_of_bulk_and_single_adds_holds_the_same(added_max, table_per_entry, monkeypatch):
    """Each pair of entries comes alone (add) or with its neighbours in tables (add_table), in
    every combination; with single entries merged into the arrays at once, or kept apart."""
    monkeypatch.setattr(held_module, "_ADDED_MAX", added_max)
    pairs = [ENTRIES[n : n + 2] for n in range(0, len(ENTRIES), 2)]
    for bulk in itertools.product((False, True), repeat=len(pairs)):
        index = HeldIndex()
        for in_table, group in itertools.groupby(zip(bulk, pairs, strict=True), key=lambda pair: pair[0]):
            entries = [entry for _, pair in group for entry in pair]
            if not in_table:
                for entry in entries:
                    index.add(entry)
            for batch in ([[e] for e in entries] if table_per_entry else [entries]) if in_table else []:
                index.add_table(table(batch))
        expect_the_entries(index)


def segments(files: list[list[dict]]) -> list[Segment]:
    """Each file's entries as a segment of its own, as a crawl reads index files."""
    built = []
    for entries in files:
        index = HeldIndex()
        index.add_table(table(entries))
        built.append(index.frozen())
    return built


@pytest.mark.parametrize("single_adds", [0, 3])
def test_entries_split_into_segments_anywhere_hold_the_same(single_adds):
    """Index files read as layers (segments), in every split of the entries into consecutive
    files, and the last entries added one at a time after them: the answers of one merge."""
    files_part, added = ENTRIES[: len(ENTRIES) - single_adds], ENTRIES[len(ENTRIES) - single_adds :]
    for cuts in itertools.product((False, True), repeat=len(files_part) - 1):
        bounds = [0, *(n + 1 for n, cut in enumerate(cuts) if cut), len(files_part)]
        index = HeldIndex()
        for segment in segments([files_part[a:b] for a, b in itertools.pairwise(bounds)]):
            index.add_segment(segment)
        for entry in added:
            index.add(entry)
        expect_the_entries(index)


def test_a_segment_comes_before_anything_added():
    index = HeldIndex()
    index.add(ENTRIES[0])
    with pytest.raises(ValueError, match="before any entry"):
        index.add_segment(segments([ENTRIES[1:2]])[0])


def test_lookups_between_adds_see_each_add():
    index = HeldIndex()
    index.add_table(table(ENTRIES[:2]))
    assert index.article(A) == Held(PART.format(1), 1, day(1))
    index.add(ENTRIES[4])
    assert index.article(A) == Held(PART.format(3), 2, day(3)) and index.latest(A, T1) == (2, False)
    index.add_table(table(ENTRIES[5:7]))
    assert index.article(A) == Held(PART.format(3), 2, day(5))
    index.add(ENTRIES[2])
    assert index.visit(U_GONE) == Visit("failed", day(2))


def test_columns_absent_dictionary_encoded_large_or_sliced_read_alike():
    whole = table(ENTRIES)
    dictionaries = pa.table(
        {
            name: column.dictionary_encode() if pa.types.is_string(column.type) else column
            for name, column in zip(whole.column_names, whole.columns, strict=True)
        }
    )
    large = whole.cast(
        pa.schema([f.with_type(pa.large_string()) if pa.types.is_string(f.type) else f for f in whole.schema])
    )
    for form in (whole, dictionaries, large):
        index = HeldIndex()
        index.add_table(form.slice(0, 3))
        index.add_table(form.slice(3))  # arrays that start past their buffers' first row
        expect_the_entries(index)
    index = HeldIndex()
    index.add_table(whole.select(["article_id", "file"]).to_batches()[0])
    assert index.article(A) == Held(PART.format(1), 1, None) and index.by_url(U_A) is None
    assert index.visit(U_GONE) is None and index.first_with_text(T1) is None


def test_keys_sharing_their_first_64_bits_are_told_apart():
    """The arrays are searched by a key's first 64 bits: keys crafted to share them must not be
    taken for one another (a URL taken for a held one would never be fetched)."""
    prefix = "0123456789abcdef"
    article, twin = prefix + "1" * 48, prefix + "2" * 48
    url, url_twin = prefix + "3" * 48, prefix + "4" * 48
    text, text_twin = prefix + "5" * 48, prefix + "6" * 48
    for add_in_bulk in (False, True):
        index = HeldIndex()
        entries = [
            {"url_key": url, "article_id": article, "text_hash": text, "file": "f1", "version": 3},
            {"url_key": url_twin, "article_id": twin, "text_hash": text_twin, "file": "f2", "version": 1},
        ]
        if add_in_bulk:
            index.add_table(table(entries))
        else:
            for entry in entries:
                index.add(entry)
        assert index.article(article).version == 3 and index.article(twin).version == 1
        assert index.by_url(url).file == "f1" and index.by_url(url_twin).file == "f2"
        assert index.first_with_text(text) == article and index.first_with_text(text_twin) == twin
        assert index.latest(twin, text) == (1, False)
        assert index.article(prefix + "7" * 48) is None and index.by_url(prefix + "7" * 48) is None
        assert index.first_with_text(prefix + "7" * 48) is None


def test_a_visit_gives_way_to_a_later_fetch_of_the_article_its_url_led_to():
    index = HeldIndex()
    index.add({"url_key": U_A, "outcome": "noarchive", "last_fetched": day(5)})
    assert index.visit(U_A) == Visit("noarchive", day(5))
    index.add({"url_key": U_A, "article_id": A, "file": "f", "last_fetched": day(4)})  # fetched before
    assert index.visit(U_A) == Visit("noarchive", day(5))
    index.add({"url_key": U_OLD, "article_id": A, "file": "f", "last_fetched": day(6)})  # after, elsewhere
    assert index.visit(U_A) is None
    index.add({"url_key": U_A, "outcome": "failed", "last_fetched": day(7)})
    assert index.visit(U_A) == Visit("failed", day(7))
    index.add({"url_key": U_A, "outcome": "refused", "last_fetched": None})  # of no known time
    assert index.visit(U_A) == Visit("failed", day(7))


def test_entries_that_name_nothing_add_nothing():
    index = HeldIndex()
    nameless = [{"url_key": U_A, "file": "f"}, {"article_id": "", "url_key": U_A}, {"outcome": "failed"}, {}]
    index.add_table(table(nameless))
    for entry in nameless:
        index.add(entry)
    index.add({"outcome": "failed", "last_fetched": day(1)})
    assert len(index) == 0 and index.by_url(U_A) is None and index.visit(U_A) is None


def test_keys_that_are_no_hex_digests_are_held_by_their_own_digest():
    """Upper case, short, or any string an archive holds: held apart from the hex keys, given back."""
    odd = [A.upper(), A[:63], "ä" * 64, "a\0b"]
    index = HeldIndex()
    index.add_table(
        table([{"article_id": key, "url_key": key, "file": f"f{n}"} for n, key in enumerate(odd)])
    )
    index.add({"article_id": A, "url_key": A, "file": "hex"})
    assert [index.article(key).file for key in odd] == [f"f{n}" for n in range(len(odd))]
    assert [index.by_url(key).file for key in odd] == [f"f{n}" for n in range(len(odd))]
    assert index.article(A).file == "hex" and sorted(index) == sorted([*odd, A])


def test_a_dictionary_column_of_nulls_only_reads_as_absent():
    """A delta of visits alone: its article ids, text hashes and parts are dictionaries of nothing."""
    visits = pa.table(
        {
            "url_key": pa.array([U_GONE]).dictionary_encode(),
            "article_id": pa.array([None], pa.string()).dictionary_encode(),
            "text_hash": pa.array([None], pa.string()).dictionary_encode(),
            "file": pa.array([None], pa.string()).dictionary_encode(),
            "outcome": pa.array(["noarchive"]).dictionary_encode(),
        }
    )
    index = HeldIndex()
    index.add_table(visits)
    assert len(index) == 0 and index.visit(U_GONE).outcome == "noarchive"
