"""The dataset card: rows and articles, the registry's terms, the Hugging Face header, code that
loads the archive, and its edges: an archive with nothing in it yet, and one whose manifests or
registry hold markup (the full card is looked at in a headless browser in
tests/test_archive_tools.py; hostile manifests through the CLI in tests/test_security_outputs.py)."""

from __future__ import annotations

import json
import re
import shutil
import tomllib

import lxml.html
import pytest
from markdown_it import MarkdownIt

from crawler.cli import main
from pipelines.archive.catalog import Catalog
from pipelines.archive.storage import LocalStore
from pipelines.runtime.jsondata import one_line
from pipelines.stages.extraction.provenance import EXTRACTOR_VERSION
from pipelines.tools.card import CHARTS, DATA_GLOB, MAX_CHARS, NOT_STATED, OutletTerms, write_card
from tests.conftest import FIXTURES

HOSTILE = tomllib.loads((FIXTURES / "outputs" / "hostile_strings.toml").read_text(encoding="utf-8"))
SECTIONS = [
    "Overview",
    "Outlets",
    "Licence and crawl policy",
    "Rows per outlet and month",
    "Languages",
    "Loading",
    "Limitations",
    "Provenance",
    "Schema",
]
CARD_FILES = ["articles-per-month.png", "languages.png", "README.md", "card.html"]
VERSIONS = FIXTURES / "card" / "versions"  # 5 rows: an article in two versions, 2 rows of unstated ids


def test_a_card_of_an_archive_with_no_article_yet_says_so(tmp_path):
    files = write_card(Catalog.read(LocalStore(tmp_path)), "/data/empty", tmp_path / "card")
    assert [f.name for f in files] == CARD_FILES
    markdown = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert "empty: 0 rows of 0 articles in 0 Parquet files" in markdown
    assert "language" not in yaml_header(markdown)


def test_rows_and_distinct_articles_are_counted_apart(tmp_path):
    """A second version of an article is a row, not an article; rows whose ids the manifests do
    not state are not guessed at."""
    write_card(Catalog.read(LocalStore(VERSIONS)), str(VERSIONS), tmp_path / "card")
    markdown = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert markdown.startswith("---\n") and "\n# versions\n" in markdown
    assert "versions: 5 rows of at least 2 articles in 3 Parquet files" in markdown
    assert "The manifests of 2 rows do not state their article ids" in markdown
    assert "| sxkjt | not in the registry | 3 | 2 | 2 |" in markdown
    assert "| gmw-cq | not in the registry | 2 | not stated | 1 |" in markdown
    provenance = markdown.split("## Provenance", 1)[1].split("## Schema", 1)[0]
    assert f"extracts with `{EXTRACTOR_VERSION}`" in provenance
    assert (
        "| newsarchive 0\\.1\\.0 rules 0123456789ab, trafilatura 2\\.3\\.1, readability-lxml 0\\.9 | 1 |"
        in provenance
    )
    assert "| not recorded | 1 |" in provenance


def test_the_registrys_terms_are_shown_and_what_it_does_not_state_is_said(tmp_path):
    terms = {
        "sxkjt": OutletTerms("山西省科学技术厅", "Asia/Shanghai", "CC BY 4.0", "robots.txt allows /zxzx/"),
        "gmw-cq": OutletTerms("光明网", "Asia/Shanghai"),
    }
    write_card(Catalog.read(LocalStore(VERSIONS)), str(VERSIONS), tmp_path / "card", "Regional news", terms)
    markdown = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert "\n# Regional news\n" in markdown and "\n# versions\n" not in markdown
    assert "| sxkjt | CC BY 4\\.0 | robots\\.txt allows /zxzx/ | Asia/Shanghai |" in markdown
    assert f"| gmw-cq | {NOT_STATED} | {NOT_STATED} | Asia/Shanghai |" in markdown
    assert yaml_header(markdown)["license"] == "unknown"  # one outlet states none
    write_card(
        Catalog.read(LocalStore(VERSIONS)),
        str(VERSIONS),
        tmp_path / "stated",
        outlets={**terms, "gmw-cq": OutletTerms("光明网", "Asia/Shanghai", "CC BY-SA 4.0")},
    )
    assert yaml_header((tmp_path / "stated" / "README.md").read_text(encoding="utf-8"))["license"] == "other"


def test_the_header_is_a_hugging_face_dataset_card(tmp_path):
    write_card(Catalog.read(LocalStore(VERSIONS)), "s3://news/v1", tmp_path / "card")
    header = yaml_header((tmp_path / "card" / "README.md").read_text(encoding="utf-8"))
    assert header == {
        "pretty_name": "news/v1",
        "license": "unknown",
        "language": ["zh", "en"],  # not und
        "size_categories": ["n<1K"],
        "tags": ["news"],
        "configs": [{"config_name": "default", "data_files": [{"split": "train", "path": DATA_GLOB}]}],
    }


@pytest.mark.parametrize(
    "title",
    ['a "quoted" \\ title', "tab\there\u2028line\u0085next\x00", "emoji \U0001f4f0 and 漢字", "- [x]: y # z"],
)
def test_any_title_is_one_yaml_string_that_reads_back_as_it_was_shown(tmp_path, title):
    write_card(Catalog.read(LocalStore(VERSIONS)), "/data/a", tmp_path / "card", title)
    header = yaml_header((tmp_path / "card" / "README.md").read_text(encoding="utf-8"))
    assert header["pretty_name"] == one_line(title, MAX_CHARS)


def shown(value: str) -> str:
    """What a reader of the card should see of ``value``: its words, on one line."""
    return " ".join(value.replace("\u202e", " ").replace("\u2066", " ").replace("\u2069", " ").split())


def archive_with_markup(root, strings: list[str]) -> None:
    """One run whose manifest names ``strings`` as its file's languages and as its start."""
    manifest = {
        "crawl_id": "20261123T041500Z-1a2b3c",
        "started_at": strings[0],
        "finished_at": strings[1],
        "files": [
            {
                "key": "outlet=sxkjt/published=2026-11/part-20261123T041500Z-1a2b3c-00001.parquet",
                "rows": len(strings),
                "bytes": 1000,
                "sha256": "0" * 64,
                "languages": dict.fromkeys(strings, 1),
            }
        ],
    }
    (root / "_manifests").mkdir(parents=True)
    (root / "_manifests" / "20261123T041500Z-1a2b3c.json").write_text(json.dumps(manifest), encoding="utf-8")


def rendered(markdown: str) -> lxml.html.HtmlElement:
    """The card's Markdown as CommonMark renders it (raw HTML passed through, as GitHub's
    renderer reads it before its sanitiser), with GFM tables; the YAML header is not shown (the
    Hugging Face hub reads it as metadata)."""
    body = markdown.split("\n---\n", 1)[1] if markdown.startswith("---\n") else markdown
    return lxml.html.fragment_fromstring(
        MarkdownIt("commonmark", {"html": True}).enable("table").render(body), create_parent="div"
    )


def assert_only_text(page: lxml.html.HtmlElement, strings: list[str]) -> None:
    """No element the card did not write itself, and every string shown whole."""
    written_by_nobody = (
        ".//script | .//a | .//iframe | .//style | .//li | .//blockquote | .//hr"
        " | .//*[@*[starts-with(name(), 'on')]]"
    )
    assert not page.xpath(written_by_nobody)
    assert [h.text_content() for h in page.xpath(".//h2")] == SECTIONS
    assert len(page.xpath(".//h1")) == 1
    for table in page.xpath(".//table"):
        width = len(table.xpath(".//th"))
        assert all(len(row.xpath("td")) == width for row in table.xpath(".//tbody/tr"))
    text = " ".join(page.text_content().split())
    for value in strings:
        assert shown(value) in text, value


def test_every_string_of_the_manifests_and_the_registry_is_shown_as_text_in_both_cards(tmp_path):
    strings = HOSTILE["markup"]
    archive_with_markup(tmp_path / "archive", strings)
    hostile_terms = OutletTerms(strings[2], strings[3], strings[4], strings[5])
    write_card(
        Catalog.read(LocalStore(tmp_path / "archive")),
        HOSTILE["uri"],
        tmp_path / "card",
        HOSTILE["uri"],
        {"sxkjt": hostile_terms},
    )
    markdown = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert yaml_header(markdown)["pretty_name"] == HOSTILE["uri"]
    page = rendered(markdown)
    shown_whole = [HOSTILE["uri"], *strings[2:]]  # the first two as dates: their first 10 characters
    assert_only_text(page, shown_whole)
    assert sorted(img.get("src") for img in page.xpath(".//img")) == sorted(CHARTS.values())
    # nothing GitHub would link by itself: a URL, a www. or bare domain, an address
    assert not re.search(r"https?:|www\.|evil\.|(?<!\\)@", markdown)
    # the loading code holds the location as a string literal, which Python reads back as it was
    for code in re.findall(r"```python\n(.*?)```", markdown, re.DOTALL):
        assert re.search(r"^archive = (.*)$", code, re.MULTILINE)[1] == json.dumps(HOSTILE["uri"])
    html_card = lxml.html.document_fromstring((tmp_path / "card" / "card.html").read_text(encoding="utf-8"))
    assert_only_text(html_card.body, shown_whole)
    assert all(img.get("src").startswith("data:image/png;base64,") for img in html_card.xpath("//img"))


def test_a_long_string_of_the_manifests_is_cut(tmp_path):
    archive_with_markup(tmp_path / "archive", ["2026-11-23", "2026-11-24", "x" * 100_000])
    write_card(Catalog.read(LocalStore(tmp_path / "archive")), "archive", tmp_path / "card")
    markdown = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert "x" * (MAX_CHARS - 1) + "…" in markdown and "x" * MAX_CHARS not in markdown


def test_the_card_command_titles_the_card_as_asked(tmp_path, capsys):
    assert main(["card", str(VERSIONS), "--out", str(tmp_path / "card"), "--title", "Regional news"]) == 0
    assert capsys.readouterr().out.split() == [str(tmp_path / "card" / name) for name in CARD_FILES]
    markdown = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert "\n# Regional news\n" in markdown and yaml_header(markdown)["pretty_name"] == "Regional news"


@pytest.fixture
def archive(mirror_crawl, tmp_path):
    """A copy of the mirror crawl's archive, in a folder named as an archivist would name it."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
    return shutil.copytree(mirror_crawl.archive, tmp_path / "regional-news")


@pytest.mark.slow  # the session's mirror crawl
def test_the_card_command_names_the_archive_states_the_registrys_terms_and_its_code_loads_the_rows(
    archive, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    outlets = FIXTURES / "card" / "outlets.toml"
    assert main(["card", "regional-news", "--out", "card", "--outlets-file", str(outlets)]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "card/card.html"
    markdown = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert "\n# regional-news\n" in markdown  # its name, not the path as typed
    assert "| gmw-cq | all rights reserved \\(footer of difang\\.gmw\\.cn, read 2026-11-01\\) |" in markdown
    assert f"| sxkjt | {NOT_STATED} | {NOT_STATED} | Asia/Shanghai |" in markdown
    dataset = Catalog.read(LocalStore(archive)).files
    rows = sum(file.rows for file in dataset)
    articles = len({article for file in dataset for article in file.article_ids})
    assert (
        f"regional-news: {rows:,} rows of {articles:,} articles in {len(dataset)} Parquet files" in markdown
    )
    # the header's data files are the article parts, and nothing else of the archive
    path = yaml_header(markdown)["configs"][0]["data_files"][0]["path"]
    assert {p.relative_to(archive).as_posix() for p in archive.glob(path)} == {file.key for file in dataset}
    assert loaded_by_each_block(markdown, json.dumps(str(archive)), {"DuckDB", "Polars", "pandas"}) == {
        "DuckDB": (rows, articles),
        "Polars": (rows, articles),
        "pandas": (rows, articles),
    }


@pytest.mark.slow  # the session's mirror crawl, copied into a bucket
def test_the_loading_code_of_an_s3_archives_card_reads_the_bucket(
    mirror_crawl, object_store, tmp_path, capsys, monkeypatch
):
    """Polars and pandas run as written; DuckDB's block is not run: its httpfs extension comes from
    the internet."""
    bucket, client = object_store.create_bucket(), object_store.client()
    for path in sorted(p for p in mirror_crawl.archive.rglob("*") if p.is_file()):
        client.put_object(
            Bucket=bucket,
            Key=f"v1/{path.relative_to(mirror_crawl.archive).as_posix()}",
            Body=path.read_bytes(),
        )
    for variable, value in object_store.env.items():
        monkeypatch.setenv(variable, value)
    assert main(["card", f"s3://{bucket}/v1", "--out", str(tmp_path / "card")]) == 0
    markdown = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert f"\n# {bucket}/v1\n" in markdown
    dataset = Catalog.read(LocalStore(mirror_crawl.archive)).files
    rows = sum(file.rows for file in dataset)
    articles = len({article for file in dataset for article in file.article_ids})
    assert loaded_by_each_block(markdown, json.dumps(f"s3://{bucket}/v1"), {"Polars", "pandas"}) == {
        "Polars": (rows, articles),
        "pandas": (rows, articles),
    }


def loaded_by_each_block(markdown: str, location: str, run: set[str]) -> dict[str, tuple[int, int]]:
    """Each block of the card's loading code that ``run`` names, run as written: how many rows its
    ``rows`` and its ``articles`` hold (each block loads the archive at ``location``)."""
    count = {
        "DuckDB": len,
        "Polars": lambda frame: frame.lazy().select("article_id").collect().height,
        "pandas": len,
    }
    loading = markdown.split("## Loading", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^(\w+)[^\n]*:\n\n```python\n(.*?)```", loading, re.DOTALL | re.MULTILINE)
    assert [library for library, _ in blocks] == list(count)
    loaded = {}
    for library, code in blocks:
        assert f"archive = {location}\n" in code
        if library in run:
            names: dict = {}
            exec(code, names)
            assert "title" in names["articles"].columns
            loaded[library] = (count[library](names["rows"]), count[library](names["articles"]))
    return loaded


def yaml_header(markdown: str) -> dict:
    """The card's YAML header, read strictly as the subset the card writes (block mappings and
    sequences of plain or double-quoted scalars): anything else fails the test."""
    assert markdown.startswith("---\n")
    lines = markdown[4:].split("\n---\n", 1)[0].split("\n")
    value, end = _yaml_block(lines, 0, 0)
    assert end == len(lines), lines[end:]
    return value


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip(" "))


def _yaml_block(lines: list[str], i: int, indent: int) -> tuple[object, int]:
    if not lines[i][indent:].startswith("- "):
        return _yaml_mapping(lines, i, indent)
    items = []
    while i < len(lines) and _indent(lines[i]) == indent and lines[i][indent:].startswith("- "):
        rest = lines[i][indent + 2 :]
        if re.match(r"[a-z_]+:", rest):  # a mapping, its first key on the item's line
            lines[i] = " " * (indent + 2) + rest
            item, i = _yaml_mapping(lines, i, indent + 2)
        else:
            item, i = _yaml_scalar(rest), i + 1
        items.append(item)
    return items, i


def _yaml_mapping(lines: list[str], i: int, indent: int) -> tuple[dict, int]:
    mapping: dict = {}
    while i < len(lines) and _indent(lines[i]) == indent and not lines[i][indent:].startswith("- "):
        match = re.fullmatch(r"([a-z_]+):(?: (.+))?", lines[i][indent:])
        assert match and match[1] not in mapping, lines[i]
        if match[2] is not None:
            mapping[match[1]], i = _yaml_scalar(match[2]), i + 1
        else:
            child = _indent(lines[i + 1])
            assert child > indent or lines[i + 1][child:].startswith("- "), lines[i + 1]
            mapping[match[1]], i = _yaml_block(lines, i + 1, child)
    return mapping, i


_YAML_ESCAPE = r'\\(["\\]|u[0-9a-f]{4}|U[0-9a-f]{8})'


def _yaml_scalar(text: str) -> str:
    if not text.startswith('"'):
        assert re.fullmatch(r"[a-z][a-z0-9_-]*", text), text  # a plain scalar that is a string
        return text
    body = text[1:-1]
    assert text.endswith('"') and re.fullmatch(rf'(?:[^"\\]|{_YAML_ESCAPE})*', body), text
    assert body.isprintable()  # YAML allows no control character in a document
    return re.sub(_YAML_ESCAPE, lambda m: m[1] if len(m[1]) == 1 else chr(int(m[1][1:], 16)), body)
