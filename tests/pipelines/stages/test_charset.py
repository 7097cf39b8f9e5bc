from __future__ import annotations

import tomllib

import pytest

from pipelines.stages.charset import decode_html, header_charset
from tests.conftest import FIXTURES

PAGES = FIXTURES / "pages"
EXPECTED = tomllib.loads((PAGES / "expected.toml").read_text(encoding="utf-8"))


@pytest.mark.parametrize(
    ("page", "header", "text", "encoding"),
    [
        ("big5_declared.html", None, "traditional", "big5hkscs"),
        ("big5_undeclared.html", None, "traditional", None),
        ("gbk_behind_utf8_header.html", "utf-8", "simplified", "gb18030"),
        ("utf8_bom.html", "gbk", "simplified", "utf-8-sig"),
    ],
)
def test_decodes_what_the_page_really_is(page, header, text, encoding):
    decoded = decode_html((PAGES / page).read_bytes(), header)
    assert EXPECTED[text] in decoded.text
    assert "\ufffd" not in decoded.text
    if encoding is not None:
        assert decoded.encoding == encoding


def test_gb2312_label_reads_gbk_only_characters():
    body = '<meta charset="gb2312"><p>贵州日报记者 赵赟 朱镕基</p>'.encode("gbk")
    decoded = decode_html(body)
    assert "赵赟 朱镕基" in decoded.text
    assert decoded.declared == "gb2312"


def test_latin1_label_is_read_as_windows_1252():
    body = "<meta charset='iso-8859-1'><p>“Quoted” café</p>".encode("cp1252")
    assert "“Quoted” café" in decode_html(body).text


def test_header_charset():
    assert header_charset("text/html; charset=GBK") == "GBK"
    assert header_charset('text/html; Charset="utf-8"') == "utf-8"
    assert header_charset("text/html") is None
