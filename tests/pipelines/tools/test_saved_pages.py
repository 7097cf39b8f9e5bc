"""``newsarchive extract``: the crawl's stages over saved pages, through the CLI."""

from __future__ import annotations

import json
from urllib.parse import urlsplit

import pytest

from pipelines.stages.extraction.template import SiteTemplate
from pipelines.tools.saved_pages import LearnedPage, page_paths, templates_of_the_others
from tests.conftest import ARCHIVED, FIXTURES, MIRROR, extract_saved, run_cli

PAGES = FIXTURES / "pages"
FIELDS = [
    "path",
    "title",
    "text",
    "language",
    "language_script",
    "published_at",
    "authors",
    "editor",
    "source",
]


def test_folders_are_searched_for_pages_and_named_files_are_taken_as_they_are():
    found = list(page_paths([PAGES, PAGES / "garbage.bin"]))
    assert found[-1] == PAGES / "garbage.bin"
    assert {p.suffix for p in found[:-1]} == {".html"}
    assert found[:-1] == sorted(PAGES.glob("*.html"))


def test_an_unreadable_page_is_a_record_not_a_crash(tmp_path):
    unreadable, readable = extract_saved([tmp_path, PAGES / "editor_lines.html"])
    assert unreadable == {"path": str(tmp_path), "error": "IsADirectoryError: Is a directory"}
    assert readable["text"]


def test_a_page_the_stages_fail_on_is_a_record_not_a_crash():
    (record,) = extract_saved([PAGES / "editor_lines.html"], timezone="Not/AZone")
    assert record["error"].startswith("ZoneInfoNotFoundError")


def test_the_command_prints_what_the_crawl_archived(mirror_rows, tmp_path):
    """Same stages, same code: the text, title and language of every archived mirror article."""
    names = {}
    for n, article in enumerate(ARCHIVED):
        url = urlsplit(article.url)
        (tmp_path / f"{n:02d}.html").write_bytes(MIRROR.page(url.netloc, url.path).body)
        names[f"{n:02d}.html"] = article.url
    run = run_cli("extract", "--jsonl", str(tmp_path))
    assert run.returncode == 0, run.stderr
    records = [json.loads(line) for line in run.stdout.splitlines()]
    assert [r["path"].rsplit("/", 1)[1] for r in records] == sorted(names)
    for record in records:
        row = mirror_rows[names[record["path"].rsplit("/", 1)[1]]]
        assert list(record) == FIELDS
        assert (record["text"], record["title"], record["language"], record["language_script"]) == (
            row["text"],
            row["title"],
            row["language"],
            row["language_script"],
        )
        assert (record["authors"], record["editor"], record["source"]) == (
            row["authors"],
            row["editor"],
            row["source"],
        )


def test_default_output_is_indented_json_per_page_with_the_given_url_and_zone():
    run = run_cli(
        "extract",
        "--url",
        "https://news.example.cn/a/1.html",
        "--timezone",
        "Asia/Shanghai",
        str(PAGES / "editor_lines.html"),
        str(PAGES / "garbage.bin"),
    )
    assert run.returncode == 0, run.stderr
    decoder, text, records = json.JSONDecoder(), run.stdout, []
    while text.strip():
        record, end = decoder.raw_decode(text.lstrip())
        records.append(record)
        text = text.lstrip()[end:]
    article, garbage = records
    assert article["published_at"].endswith("+08:00") and article["editor"] and article["text"]
    assert garbage["text"] is None and garbage["language"] == "und"
    assert run.stdout.count('\n  "') >= 2 * len(FIELDS)  # indented, one field a line


@pytest.mark.parametrize("args", [["no/such/page.html"], [], ["--timezone", "Not/AZone", str(PAGES)]])
def test_bad_arguments_exit_2(args):
    run = run_cli("extract", *args)
    assert run.returncode == 2
    assert "Traceback" not in run.stderr


TEMPLATE_SITE = FIXTURES / "template" / "site"  # 1-4: four articles of one site; 5, 6: copies of 1
STRAP = "Weekend Edition brings you the stories"  # on every page of it, and no rule knows it


def extract_with_urls(tmp_path, urls: dict[str, str], *paths: str) -> list[dict]:
    mapping = tmp_path / "urls.tsv"
    lines = [f"{TEMPLATE_SITE / name}\t{url}\n" for name, url in urls.items()]
    mapping.write_text("".join(lines), encoding="utf-8")
    run = run_cli("extract", "--jsonl", "--urls-file", str(mapping), *(str(TEMPLATE_SITE / p) for p in paths))
    assert run.returncode == 0, run.stderr
    return [json.loads(line) for line in run.stdout.splitlines()]


def test_the_pages_of_a_site_are_learned_together_the_first_as_the_last(tmp_path):
    names = ["1.html", "2.html", "3.html", "4.html"]
    records = extract_with_urls(tmp_path, {n: f"https://valley.example/news/{n}" for n in names}, *names)
    alone = extract_saved([TEMPLATE_SITE / n for n in names])
    assert [r["path"] for r in records] == [str(TEMPLATE_SITE / n) for n in names]
    for record, before in zip(records, alone, strict=True):
        assert STRAP in before["text"] and STRAP not in record["text"]
        assert record["text"] == before["text"].split("\n\n", 1)[1].rsplit("\n\n", 1)[0]  # the article
        assert {**record, "text": None} == {**before, "text": None}


def test_sites_of_fewer_pages_and_pages_without_an_address_are_as_without_urls(tmp_path):
    """Two hosts of two pages each, and a page the map does not name: nothing is learned."""
    urls = {"1.html": "https://a.example/1", "2.html": "https://a.example/2", "3.html": "https://b.example/3"}
    urls["4.html"] = "https://b.example/4"
    names = ["1.html", "2.html", "3.html", "4.html", "5.html"]
    records = extract_with_urls(tmp_path, urls, *names)
    alone = extract_saved([TEMPLATE_SITE / n for n in names])
    assert [r["text"] for r in records] == [r["text"] for r in alone]


def test_a_pages_own_blocks_do_not_make_its_template(tmp_path):
    """Three pages of a site: each has two others, so the strap on all three is template of none."""
    names = ["1.html", "2.html", "3.html"]
    records = extract_with_urls(tmp_path, {n: f"https://valley.example/{n}" for n in names}, *names)
    assert all(STRAP in record["text"] for record in records)


def test_each_template_is_what_the_other_pages_of_the_site_teach():
    """Block 1 is on three articles, block 2 on two, block 3 on one article at three addresses
    (copies), block 4 on four; another site has block 1 too, on one page."""
    pages = [
        LearnedPage("a.example", [1, 2, 4], "first"),
        LearnedPage("a.example", [1, 2, 3, 4], "second"),
        LearnedPage("a.example", [1, 3, 4], "third"),
        LearnedPage("a.example", [3, 4], "third"),
        LearnedPage("a.example", [4], "fourth"),
        LearnedPage("b.example", [1], "other"),
        None,
    ]
    templates = templates_of_the_others(pages)
    for index, page in enumerate(pages):
        others = SiteTemplate()
        for other in pages[:index] + pages[index + 1 :]:
            if page and other and other.site == page.site:
                others.learn(other.fingerprints, other.article)
        assert templates[index] == others.template(), index
    assert templates[4] == {1, 4} and templates[0] == {4} and templates[3] == {1, 4}
    assert templates[5] == templates[6] == frozenset()


def test_copies_of_one_article_do_not_make_a_template(tmp_path):
    names = ["1.html", "5.html", "6.html"]
    records = extract_with_urls(tmp_path, {n: f"https://valley.example/{n}" for n in names}, *names)
    assert all(STRAP in record["text"] for record in records)


@pytest.mark.parametrize(
    ("lines", "error"),
    [
        ("page.html https://valley.example/1\n", "urls.tsv:1: not PATH<TAB>URL"),
        ("# comment\n\npage.html\tnot-a-url\n", "urls.tsv:3: not PATH<TAB>URL"),
    ],
)
def test_a_bad_urls_file_is_named_with_its_line(tmp_path, lines, error):
    (tmp_path / "urls.tsv").write_text(lines, encoding="utf-8")
    run = run_cli("extract", "--urls-file", str(tmp_path / "urls.tsv"), str(TEMPLATE_SITE / "1.html"))
    assert run.returncode == 2 and error in run.stderr and "Traceback" not in run.stderr


def test_url_and_urls_file_are_one_or_the_other(tmp_path):
    run = run_cli("extract", "--url", "https://a.example/", "--urls-file", "x", str(TEMPLATE_SITE / "1.html"))
    assert run.returncode == 2 and "not allowed with argument" in run.stderr
