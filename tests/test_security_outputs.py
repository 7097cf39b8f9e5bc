"""What newsarchive writes from what it reads, through the CLI (issue 31, classes 12 and 13).

One crawl of sxkjt from the mirror, on loopback, one of its articles nested 100,000 elements deep
in its middle: that article is archived with its text. Then the archive is given hostile strings
(the rows rewritten with the project's own Parquet writer, a manifest edited as one from elsewhere
could be): ``pull --format csv`` neutralises every cell a spreadsheet would run, JSONL keeps every
string exactly, and the dataset card shows them as text, never as markup. Each time every row is
still there and nothing is written outside the destination.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import shutil
import tomllib
from pathlib import Path
from urllib.parse import urlsplit

import lxml.html
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from crawler.mirror.server import MirrorServer
from crawler.mirror.sites import build_mirror
from pipelines.archive.rows import parquet_file
from tests.conftest import FIXTURES, run_cli
from tests.pipelines.tools.test_card import assert_only_text, rendered
from tests.test_incremental import rows

pytestmark = pytest.mark.slow  # a crawl of a hostile page, then pull and card, in subprocesses

OUTLET = "sxkjt"
LEVELS = 100_000
HOSTILE = tomllib.loads((FIXTURES / "outputs" / "hostile_strings.toml").read_text(encoding="utf-8"))
# nullable strings a page fills in (enough of them for every cell of the fixture)
STRING_COLUMNS = ("title", "editor", "source", "section", "published_at_raw", "content_type")


@dataclasses.dataclass
class Crawled:
    archive: Path
    nested_url: str
    inside: list[str]  # the paragraphs of that article within the nesting, and after it
    after: list[str]
    stdout: str


@pytest.fixture(scope="module")
def crawled(tmp_path_factory) -> Crawled:
    """sxkjt crawled, its first article's paragraphs 3 to 5 inside LEVELS <div>, 6 on after them."""
    mirror = build_mirror()
    article = next(a for a in mirror.articles if a.outlet_id == OUTLET and a.expect == "archived")
    where = (urlsplit(article.url).netloc, urlsplit(article.url).path)
    page = mirror.pages[where]
    first_inside, first_after = (f"<p>{article.paragraphs[n]}".encode() for n in (2, 5))
    assert first_inside in page.body and first_after in page.body
    body = page.body.replace(first_inside, b"<div>" * LEVELS + first_inside, 1)
    body = body.replace(first_after, b"</div>" * LEVELS + first_after, 1)
    mirror.pages[where] = dataclasses.replace(page, body=body)
    archive = tmp_path_factory.mktemp("nested") / "archive"
    with MirrorServer(mirror) as server:
        run = run_cli("crawl", "--mirror-url", server.url, "--archive", str(archive), "--outlet", OUTLET)
    assert run.returncode == 0, run.stdout + run.stderr
    prose = [p for p in article.paragraphs if not p.startswith("##")]  # headings are not archived as such
    return Crawled(
        archive,
        article.url,
        [p for p in prose if p in article.paragraphs[2:5]],
        [p for p in prose if p in article.paragraphs[5:]],
        run.stdout,
    )


def test_an_article_nested_100_000_elements_deep_is_archived_with_the_text_inside_and_after(
    crawled, mirror_rows
):
    archived = {row["url"]: row for row in rows(crawled.archive)}
    expected = {url for url, row in mirror_rows.items() if row["outlet_id"] == OUTLET}
    assert set(archived) == expected  # every article of the outlet, the nested one included
    text = archived[crawled.nested_url]["text"]
    places = [text.find(p[:30]) for p in crawled.inside + crawled.after]
    assert -1 not in places and places == sorted(places), text
    assert text == mirror_rows[crawled.nested_url]["text"]  # as the page without the nesting
    assert "too_deep" not in crawled.stdout


def copy_of(crawled: Crawled, folder: Path) -> Path:
    archive = folder / "archive"
    shutil.copytree(crawled.archive, archive, ignore=shutil.ignore_patterns(".*"))
    return archive


def the_manifest(archive: Path) -> tuple[Path, dict]:
    (path,) = (archive / "_manifests").glob("*.json")
    return path, json.loads(path.read_text(encoding="utf-8"))


def with_hostile_cells(archive: Path) -> list[dict]:
    """Every row's string columns rewritten with the fixture's cells (all of them used), written
    with the archive's own Parquet writer and listed in the manifest; the rows, as written."""
    values = [cell["value"] for cell in HOSTILE["cell"]]
    path, manifest = the_manifest(archive)
    written, n = [], 0
    for entry in manifest["files"]:
        table = pq.read_table(archive / entry["key"])
        for column in STRING_COLUMNS:
            cells = [values[(n + i) % len(values)] for i in range(table.num_rows)]
            n += table.num_rows
            at = table.schema.get_field_index(column)
            table = table.set_column(at, table.schema.field(at), pa.array(cells, pa.string()))
        data = parquet_file(table).to_pybytes()
        (archive / entry["key"]).write_bytes(data)
        entry |= {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        written += table.to_pylist()
    assert n >= len(values)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return written


def files_in(folder: Path) -> set[Path]:
    return {path for path in folder.rglob("*")}


def test_pulled_csv_neutralises_every_formula_and_jsonl_keeps_every_string(crawled, tmp_path):
    archive = copy_of(crawled, tmp_path)
    written = {row["article_id"]: row for row in with_hostile_cells(archive)}
    before = files_in(tmp_path)
    as_csv = run_cli("pull", str(archive), str(tmp_path / "rows.csv"), "--format", "csv")
    as_jsonl = run_cli("pull", str(archive), str(tmp_path / "rows.jsonl"), "--format", "jsonl")
    assert as_csv.returncode == 0 and as_jsonl.returncode == 0, as_csv.stdout + as_jsonl.stdout
    outputs = {
        tmp_path / name
        for name in ("rows.csv", ".rows.csv.pull.jsonl", "rows.jsonl", ".rows.jsonl.pull.jsonl")
    }
    assert files_in(tmp_path) == before | outputs  # nothing else written, nothing in the archive
    with (tmp_path / "rows.csv").open(encoding="utf-8", newline="") as handle:
        pulled_csv = {row["article_id"]: row for row in csv.DictReader(handle)}
    pulled_jsonl = {
        row["article_id"]: row
        # lines end in \n only: U+2028 and its kin are in the values (str.splitlines would cut there)
        for row in map(json.loads, (tmp_path / "rows.jsonl").read_bytes().splitlines())
    }
    assert set(pulled_csv) == set(pulled_jsonl) == set(written)  # every row
    as_written = {cell["value"]: cell["csv"] for cell in HOSTILE["cell"]}
    for article_id, row in written.items():
        for column in STRING_COLUMNS:
            assert pulled_jsonl[article_id][column] == row[column]  # exactly as archived
            assert pulled_csv[article_id][column] == as_written[row[column]]
        # numbers stay numbers, whatever their sign
        assert pulled_csv[article_id]["version"] == str(row["version"])
        assert pulled_csv[article_id]["text_simhash"] == str(row["text_simhash"])


def test_the_card_shows_the_archives_strings_as_text_never_as_markup(crawled, tmp_path):
    """The manifest's languages and dates hold markup, as a manifest from elsewhere can."""
    archive = copy_of(crawled, tmp_path)
    path, manifest = the_manifest(archive)
    markup = HOSTILE["markup"]
    manifest["started_at"] = manifest["finished_at"] = markup[0]
    for entry in manifest["files"]:
        entry["languages"] = {**entry["languages"], **dict.fromkeys(markup, 1)}
    path.write_text(json.dumps(manifest), encoding="utf-8")
    before = files_in(tmp_path)
    run = run_cli("card", str(archive), "--out", str(tmp_path / "card"))
    assert run.returncode == 0, run.stdout + run.stderr
    assert files_in(tmp_path) - before == files_in(tmp_path / "card") | {tmp_path / "card"}
    markdown = (tmp_path / "card" / "README.md").read_text(encoding="utf-8")
    assert_only_text(rendered(markdown), markup)
    page = lxml.html.document_fromstring((tmp_path / "card" / "card.html").read_text(encoding="utf-8"))
    assert_only_text(page.body, markup)
    # every outlet and every row still counted
    assert (
        f"{sum(e['rows'] for e in manifest['files'])} rows of "
        f"{len({a for e in manifest['files'] for a in e['article_ids']})} articles in "
        f"{len(manifest['files'])} Parquet" in markdown
    )
    assert f"| {OUTLET} | " in markdown
