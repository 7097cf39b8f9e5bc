"""Bounded JSON: whatever a document read from an archive holds, one ValueError or its value."""

from __future__ import annotations

import json
import sys
import unicodedata

import pytest

from pipelines.runtime.jsondata import MAX_DEPTH, DamagedJSON, is_count, loads_bounded, one_line
from tests.conftest import FIXTURES as CONFTEST_FIXTURES

FIXTURES = CONFTEST_FIXTURES / "jsondata"
HOSTILE_STRINGS = json.loads((FIXTURES / "hostile_strings.json").read_text(encoding="utf-8"))
_BIDI = ("LRE", "RLE", "LRO", "RLO", "PDF", "LRI", "RLI", "FSI", "PDI")  # embeddings, overrides, isolates


def nested(depth: int, opening: str = "[", closing: str = "]", inner: str = "") -> str:
    return opening * depth + inner + closing * depth


@pytest.mark.parametrize(
    "text, value",
    [
        ('{"a": [1, 2.5, "x", null, true]}', {"a": [1, 2.5, "x", None, True]}),
        ('["[[[[", "]]", "{{"]', ["[[[[", "]]", "{{"]),  # brackets inside strings are not nesting
        (r'{"a\"[[[": "\\", "b": "\"{{{"}', {'a"[[[': "\\", "b": '"{{{'}),
        (nested(MAX_DEPTH), json.loads(nested(MAX_DEPTH))),
        (nested(MAX_DEPTH // 2, '{"k":[', "]}"), json.loads(nested(MAX_DEPTH // 2, '{"k":[', "]}"))),
        ("-9223372036854775808", -(2**63)),
        ("1e308", 1e308),
    ],
)
def test_json_within_the_bounds_is_parsed_as_json_would(text, value):
    assert loads_bounded(text, 1 << 20, "doc") == value
    assert loads_bounded(text.encode(), 1 << 20, "doc") == value


@pytest.mark.parametrize(
    "document, why",
    [
        (nested(MAX_DEPTH + 1), "nested deeper"),
        (nested(100_000), "nested deeper"),
        (nested(MAX_DEPTH + 1, "{", "}", ""), "nested deeper"),
        (nested(MAX_DEPTH // 2 + 1, '{"k":[', "]}"), "nested deeper"),
        ('["a", ' + nested(MAX_DEPTH + 1) + "]", "nested deeper"),
        (nested(MAX_DEPTH + 1) + "garbage", "nested deeper"),
        ('"' + "\\" * 1001, "not JSON"),  # an unclosed string of escapes
        ('{"pages": 1e999}', "overflows"),
        ("[-1e999]", "overflows"),
        ("[1E400]", "overflows"),
        ("[NaN]", "NaN"),
        ('{"a": Infinity}', "Infinity"),
        ("[-Infinity]", "-Infinity"),
        ("[" + "9" * (sys.get_int_max_str_digits() + 1) + "]", "not JSON"),
        (b"\xff\x00" * 100, "not UTF-8"),
        ('["\ud800"]', "not UTF-8"),  # a lone surrogate in a str
        ('["a"]'.encode("utf-16"), "not UTF-8"),
        (b'["\xc3"]', "not UTF-8"),
        ("", "not JSON"),
        ("[1,]", "not JSON"),
        ("[1] [2]", "not JSON"),
    ],
)
def test_json_past_a_bound_is_one_damaged_json_error_naming_the_document(document, why):
    with pytest.raises(DamagedJSON, match=why) as raised:
        loads_bounded(document, 1 << 20, "_manifests/x.json")
    assert str(raised.value).startswith("_manifests/x.json: ")
    assert isinstance(raised.value, ValueError)  # each caller's damage path takes it


def test_json_over_its_size_is_refused_before_it_is_parsed():
    with pytest.raises(DamagedJSON, match="1,001 bytes, over the 1,000"):
        loads_bounded("[" + " " * 999 + "]", 1000, "doc")
    with pytest.raises(DamagedJSON, match="over the 3"):
        loads_bounded("\u00e9\u00e9", 3, "doc")  # counted in UTF-8 bytes, not characters


@pytest.mark.parametrize("text", HOSTILE_STRINGS)
def test_a_string_shown_on_one_line_holds_no_control_or_bidi_character(text):
    shown = one_line(text, 200)
    assert not [
        char
        for char in shown
        if unicodedata.category(char) in ("Cc", "Zl", "Zp") or unicodedata.bidirectional(char) in _BIDI
    ]
    assert shown == " ".join(shown.split())


def test_a_string_shown_on_one_line_is_cut_to_its_limit():
    assert one_line("x" * 50, 10) == "x" * 9 + "…"
    assert one_line(None, 10) == "None"


@pytest.mark.parametrize(
    "value, counts",
    [(0, True), (2**63 - 1, True), (2**63, False), (-1, False), (True, False), (1.0, False), ("1", False)],
)
def test_a_count_is_a_whole_number_that_an_int64_holds(value, counts):
    assert is_count(value) is counts
