"""WARC beside the Parquet, as operators and archivists meet it: every exchange of the mirror
crawl kept as received, each row pointing at its own response record; ``--no-warc``; ``verify``
over the WARCs; ``reextract`` rebuilding the rows from the WARCs alone, on a local folder and in
both real S3 stores. (The writer itself: tests/pipelines/archive/test_warc.py; ``kill -9`` mid-WARC in
SeaweedFS and Ceph RGW: tests/test_object_storage.py.)"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import json
import re
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from warcio.archiveiterator import ArchiveIterator

from crawler.registry import load_registry
from pipelines.archive.keys import template_key
from pipelines.archive.storage import LocalStore
from pipelines.archive.warc import RECORD_MAX_BYTES, check, read_capture
from pipelines.stages.extraction.template import SiteTemplate, text_lines
from tests.conftest import ARCHIVED, MIRROR, REPO, run_cli
from tests.test_archive_tools import STORES, placed
from tests.test_incremental import OUTLET, crawl, mirror, rows
from tests.test_security_confinement import files_holding

__all__ = ["mirror"]  # the fixture, shared with tests/test_incremental.py


def _manifest(archive: Path) -> dict:
    (path,) = (archive / "_manifests").glob("*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _responses(path: Path) -> dict[str, int]:
    """URL -> status of every response record of a WARC."""
    with path.open("rb") as handle:
        return {
            record.rec_headers.get_header("WARC-Target-URI"): int(record.http_headers.get_statuscode())
            for record in ArchiveIterator(handle)
            if record.rec_type == "response"
        }


def _served(url: str) -> bytes:
    parts = urlsplit(url)
    return MIRROR.page(parts.netloc, parts.path + (f"?{parts.query}" if parts.query else "")).body


def test_every_response_of_the_crawl_is_kept_and_each_row_points_to_its_own(mirror_crawl, mirror_rows):
    archive = mirror_crawl.archive
    (warc,) = _manifest(archive)["warcs"]
    path = archive / warc["key"]
    assert check(path) == warc["records"]  # every record read back, digests verified
    assert hashlib.sha256(path.read_bytes()).hexdigest() == warc["sha256"]
    responses = _responses(path)
    for outlet in load_registry([]).values():
        for start in (*outlet.sitemaps, *outlet.feeds, *outlet.listings):
            assert responses.get(start) == 200, start
        host = urlsplit(outlet.sitemaps[0] if outlet.sitemaps else (outlet.feeds + outlet.listings)[0]).netloc
        assert f"https://{host}/robots.txt" in responses
    assert 404 in responses.values()  # the mirror's page that is gone
    store = LocalStore(archive)
    assert {a.url for a in ARCHIVED} == set(mirror_rows)
    for url, row in mirror_rows.items():
        assert responses[url] == 200
        record = read_capture(store.read_range(row["warc_file"], row["warc_offset"], row["warc_length"]))
        assert record.rec_type == "response" and record.rec_headers.get_header("WARC-Target-URI") == url
        assert record.content_stream().read() == _served(url)
    index = (archive / warc["cdxj"]["key"]).read_text(encoding="utf-8").splitlines()
    entries = [json.loads(line.split(" ", 2)[2]) for line in index]
    assert sorted(e["url"] for e in entries) == sorted(responses)
    pointed = {(row["warc_offset"], row["warc_length"]) for row in mirror_rows.values()}
    assert pointed <= {(int(e["offset"]), int(e["length"])) for e in entries}


@pytest.mark.slow
def test_a_content_encoded_page_is_kept_as_received_and_archived_decoded(mirror, tmp_path):
    article = next(a for a in mirror.mirror.articles if a.outlet_id == OUTLET and a.expect == "archived")
    parts = urlsplit(article.url)
    page = mirror.mirror.pages[(parts.netloc, parts.path)]
    encoded = gzip.compress(page.body, mtime=0)
    mirror.mirror.pages[(parts.netloc, parts.path)] = dataclasses.replace(
        page, body=encoded, headers=(*page.headers, ("Content-Encoding", "gzip"))
    )
    crawl(mirror, tmp_path)
    (row,) = [r for r in rows(tmp_path) if r["url"] == article.url]
    assert article.paragraphs[0][:20] in row["text"]
    data = LocalStore(tmp_path).read_range(row["warc_file"], row["warc_offset"], row["warc_length"])
    record = read_capture(data)
    assert record.http_headers.get_header("Content-Encoding") == "gzip"
    digest = "sha1:" + base64.b32encode(hashlib.sha1(encoded).digest()).decode()
    assert record.rec_headers.get_header("WARC-Payload-Digest") == digest  # the bytes on the wire
    assert record.content_stream().read() == page.body


@pytest.mark.slow
def test_no_warc_keeps_only_the_text(mirror, tmp_path):
    crawl(mirror, tmp_path, "--no-warc")
    archived = rows(tmp_path)
    assert archived and all(r["warc_file"] is r["warc_offset"] is r["warc_length"] is None for r in archived)
    assert not (tmp_path / "_warc").exists() and _manifest(tmp_path)["warcs"] == []


@pytest.fixture(params=STORES)
def warc_archive(request, mirror_crawl, tmp_path):
    """The mirror crawl's archive, WARCs included, in a folder or a fresh bucket."""
    assert mirror_crawl.returncode == 0, mirror_crawl.stdout + mirror_crawl.stderr
    source = tmp_path / "source"
    shutil.copytree(mirror_crawl.archive, source, ignore=shutil.ignore_patterns(".*"))
    return placed(request.param, source, request)


def _sibling(archive, name: str, tmp_path: Path) -> str:
    """Another archive beside ``archive``: a folder, or another prefix of its bucket."""
    return (
        str(tmp_path / name)
        if archive.uri == str(archive.source)
        else archive.uri.rsplit("/", 1)[0] + "/" + name
    )


def _pulled(archive, uri: str, dest: Path) -> list[dict]:
    run = archive.run("pull", uri, str(dest))
    assert run.returncode == 0, run.stdout + run.stderr
    table = ds.dataset(dest, format="parquet", partitioning="hive").to_table()
    return sorted(table.drop_columns(["outlet", "published"]).to_pylist(), key=lambda r: r["article_id"])


@pytest.mark.slow
def test_reextract_rebuilds_the_rows_from_the_warcs_alone(warc_archive, tmp_path):
    target = _sibling(warc_archive, "again", tmp_path)
    run = warc_archive.run("reextract", warc_archive.uri, "--to", target)
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{len(ARCHIVED)} rows into {target}: {len(ARCHIVED)} extracted again" in run.stdout
    assert "(0 with another text)" in run.stdout
    assert _pulled(warc_archive, target, tmp_path / "new") == _pulled(
        warc_archive, warc_archive.uri, tmp_path / "old"
    )
    checked = warc_archive.run("verify", target)  # the rows point into the new archive's own WARCs
    assert checked.returncode == 0 and "1 WARCs" in checked.stdout, checked.stdout + checked.stderr
    again = warc_archive.run("reextract", warc_archive.uri, "--to", target)
    assert again.returncode == 2 and "holds an archive already" in again.stderr


@pytest.mark.slow
def test_reextract_of_one_outlet_records_where_it_came_from(mirror_crawl, tmp_path):
    target = tmp_path / "gmw"
    run = run_cli("reextract", str(mirror_crawl.archive), "--to", str(target), "--outlet", "gmw-cq")
    assert run.returncode == 0, run.stdout + run.stderr
    assert {r["outlet_id"] for r in rows(target)} == {"gmw-cq"}
    assert len(rows(target)) == sum(a.outlet_id == "gmw-cq" for a in ARCHIVED)
    manifest, source = _manifest(target), _manifest(mirror_crawl.archive)
    assert manifest["reextracted_from"] == {
        "archive": str(mirror_crawl.archive),
        "runs": [f"_manifests/{source['crawl_id']}.json"],
        "outlets": ["gmw-cq"],
    }
    assert manifest["extractor_versions"] == source["extractor_versions"] != []
    assert [w["key"] for w in manifest["warcs"]] == [w["key"] for w in source["warcs"]]


@pytest.mark.slow
def test_reextract_copies_a_row_whose_capture_is_damaged_and_names_it(mirror_crawl, tmp_path):
    source = tmp_path / "source"
    shutil.copytree(mirror_crawl.archive, source, ignore=shutil.ignore_patterns(".*"))
    victim = rows(source)[0]
    warc = source / victim["warc_file"]
    data = bytearray(warc.read_bytes())
    data[victim["warc_offset"] + victim["warc_length"] // 2] ^= 0xFF  # inside its gzip member
    warc.write_bytes(bytes(data))
    run = run_cli("reextract", str(source), "--to", str(tmp_path / "again"))
    assert run.returncode == 1
    (problem,) = [line for line in run.stdout.splitlines() if line.startswith("PROBLEM")]
    assert victim["url"] in problem and "copied as it was" in problem
    rebuilt = {r["url"]: r for r in rows(tmp_path / "again")}
    assert len(rebuilt) == len(ARCHIVED) and rebuilt[victim["url"]]["text"] == victim["text"]


@pytest.mark.slow
def test_reextract_reads_no_range_longer_than_a_record_whatever_a_row_names(mirror_crawl, tmp_path):
    """Rows of a part (its manifest updated, as one who can write the archive would) name ranges
    no record has: past the WARC record cap, to the end of the store's object, negative, empty.
    Each is named and copied as it was; the others are rebuilt."""
    source = tmp_path / "source"
    shutil.copytree(mirror_crawl.archive, source, ignore=shutil.ignore_patterns(".*"))
    manifest = _manifest(source)
    # from the row's own record: read whole, the first two would rebuild it from gigabytes
    ranges = [
        lambda at, _: (at, RECORD_MAX_BYTES + 1),
        lambda at, _: (at, 1 << 62),
        lambda at, _: (at, -1),
        lambda _, length: (-1, length),
        lambda at, _: (at, 0),
    ]
    damaged = []  # the first row of each file, one range each
    for entry, damage in zip(manifest["files"], ranges, strict=False):
        table = pq.read_table(source / entry["key"])
        changed = table.to_pylist()
        offset, length = damage(changed[0]["warc_offset"], changed[0]["warc_length"])
        changed[0] |= {"warc_offset": offset, "warc_length": length}
        damaged.append(changed[0])
        pq.write_table(pa.Table.from_pylist(changed, schema=table.schema), source / entry["key"])
        data = (source / entry["key"]).read_bytes()
        entry |= {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    (next((source / "_manifests").glob("*.json"))).write_text(json.dumps(manifest), encoding="utf-8")
    run = run_cli("reextract", str(source), "--to", str(tmp_path / "again"))
    assert run.returncode == 1, run.stdout + run.stderr
    named = [line for line in run.stdout.splitlines() if line.startswith("PROBLEM")]
    assert len(named) == len(ranges), run.stdout
    for row in damaged:
        assert any(row["url"] in line and "copied as it was" in line and "not read" in line for line in named)
    rebuilt = {r["url"]: r for r in rows(tmp_path / "again")}
    assert len(rebuilt) == len(ARCHIVED)
    assert all(rebuilt[row["url"]]["text"] == row["text"] for row in damaged)


@pytest.mark.slow
def test_verify_names_a_damaged_warc_a_missing_index_and_a_stray_warc(warc_archive):
    manifest = warc_archive.manifest()
    (warc,) = manifest["warcs"]
    data = bytearray((warc_archive.source / warc["key"]).read_bytes())
    data[len(data) // 2] ^= 0xFF
    warc_archive.put(warc["key"], bytes(data))
    warc_archive.delete(warc["cdxj"]["key"])
    warc_archive.put("_warc/20990101T000000Z-stray-00001.warc.gz", b"not a warc")
    run = warc_archive.run("verify", warc_archive.uri)
    assert run.returncode == 1, run.stdout + run.stderr
    problems = sorted(line for line in run.stdout.splitlines() if line.startswith("_warc/"))
    assert problems == sorted(
        [
            f"{warc['key']}: sha256 differs from the manifest's (the file changed since it was published)",
            f"{warc['cdxj']['key']}: missing (listed in _manifests/{manifest['crawl_id']}.json)",
            "_warc/20990101T000000Z-stray-00001.warc.gz: in no manifest (a run still in progress publishes "
            "its manifest last)",
        ]
    )


def test_the_archivists_guides_range_read_gives_the_page_as_served(mirror_crawl, monkeypatch):
    page = (REPO / "docs" / "archivists.md").read_text(encoding="utf-8")
    section = page.split("## Raw captures (WARC)", 1)[1].split("\n## ", 1)[0]
    (example,) = re.findall(r"```python\n(.*?)```", section, re.DOTALL)
    monkeypatch.chdir(mirror_crawl.archive.parent)
    scope: dict = {}
    exec(example.replace('"output', f'"{mirror_crawl.archive.name}'), scope)
    assert scope["html"] == _served(scope["row"]["url"])


def _records(archive: Path) -> list:
    """(type, target URI, HTTP headers) of every record of every WARC of the archive."""
    found = []
    for path in sorted(archive.rglob("*.warc.gz")):
        with path.open("rb") as handle:
            for record in ArchiveIterator(handle):
                headers = record.http_headers.headers if record.http_headers else []
                found.append((record.rec_type, record.rec_headers.get_header("WARC-Target-URI"), headers))
    return found


@pytest.mark.slow
def test_no_credential_or_cookie_reaches_a_published_warc(mirror, tmp_path):
    """The requests carry an Authorization, a Proxy-Authorization and a Cookie header (as a run's
    DEFAULT_REQUEST_HEADERS, HttpAuthMiddleware, HttpProxyMiddleware or the cookie jar set them),
    and the listing sets a cookie that the jar sends back on every article request. The operator's
    own credential headers, one sent and one answered, are named in WARC_HEADERS_REMOVED (in
    another case)."""
    names = ("auth", "proxy", "cookie", "set", "api", "token")
    secret = {name: f"{name}-{n}-marker" for n, name in enumerate(names)}
    for (host, path), page in list(mirror.mirror.pages.items()):
        if host == "kjt.shanxi.gov.cn" and path.startswith("/zxzx/ywyl/index"):
            added = (
                ("Set-Cookie", f"session={secret['set']}; Path=/"),
                ("X-Upstream-Token", secret["token"]),
            )
            mirror.mirror.pages[(host, path)] = dataclasses.replace(page, headers=(*page.headers, *added))
    headers = {
        "Authorization": f"Basic {secret['auth']}",
        "Proxy-Authorization": f"Basic {secret['proxy']}",
        "Cookie": f"pref={secret['cookie']}",
        "X-Api-Key": secret["api"],
    }
    crawl(
        mirror,
        tmp_path,
        *("-s", f"DEFAULT_REQUEST_HEADERS={json.dumps(headers)}"),
        *("-s", "WARC_HEADERS_REMOVED=X-API-KEY, x-upstream-token"),
    )
    assert len(rows(tmp_path)) == 5
    records = _records(tmp_path)
    assert sum(kind == "request" for kind, _, _ in records) >= 6  # robots.txt, listings, articles
    kept = {name.lower() for _, _, headers in records for name, _ in headers}
    assert not kept & {
        "authorization",
        "proxy-authorization",
        "cookie",
        "set-cookie",
        "x-api-key",
        "x-upstream-token",
    }
    for value in secret.values():
        assert files_holding(tmp_path, value) == []
    with next(tmp_path.rglob("*.warc.gz")).open("rb") as handle:
        warcinfo = next(iter(ArchiveIterator(handle))).content_stream().read().decode()
    assert "http-headers-removed: authorization, cookie, proxy-authorization, set-cookie" in warcinfo
    assert "x-api-key" in warcinfo and "x-upstream-token" in warcinfo


@pytest.mark.slow
def test_a_page_that_says_noarchive_is_in_no_published_object(mirror, tmp_path):
    """Three of sxkjt's five articles say noarchive: in a robots meta tag, in an X-Robots-Tag
    header, and as ``none`` in a meta tag named for us at the end of the body; so does its first
    listing page. Their rows, WARC records and CDXJ lines are all absent, no file of the archive
    holds their text, and the other two articles, found through that listing, are archived with
    their records."""
    meta, header, ours, *kept = (
        a for a in mirror.mirror.articles if a.outlet_id == OUTLET and a.expect == "archived"
    )
    pages = mirror.mirror.pages
    said = {url: (urlsplit(url).netloc, urlsplit(url).path) for url in (meta.url, header.url, ours.url)}
    page = pages[said[meta.url]]
    robots = b'<head><meta name="robots" content="noindex, NOARCHIVE">'
    pages[said[meta.url]] = dataclasses.replace(page, body=page.body.replace(b"<head>", robots, 1))
    page = pages[said[header.url]]
    pages[said[header.url]] = dataclasses.replace(
        page, headers=(*page.headers, ("X-Robots-Tag", "noarchive"))
    )
    page = pages[said[ours.url]]
    tag = b'<meta name="NewsArchive" content="none"></body>'
    pages[said[ours.url]] = dataclasses.replace(page, body=page.body.replace(b"</body>", tag, 1))
    listing = "https://kjt.shanxi.gov.cn/zxzx/ywyl/index.shtml"
    said[listing] = ("kjt.shanxi.gov.cn", "/zxzx/ywyl/index.shtml")
    page = pages[said[listing]]
    robots = b'<head><meta name="robots" content="noarchive">'
    pages[said[listing]] = dataclasses.replace(page, body=page.body.replace(b"<head>", robots, 1))
    archive = tmp_path / "archive"
    run = crawl(mirror, archive, "--summary-json", str(tmp_path / "run.json"))
    assert "not archived, the page says noarchive: 3" in run.stdout
    assert json.loads((tmp_path / "run.json").read_text())["outlets"][OUTLET]["noarchive"] == 3
    archived = {r["url"]: r for r in rows(archive)}
    assert set(archived) == {a.url for a in kept}
    records = _records(archive)
    assert not set(said) & {uri for _, uri, _ in records}
    assert {a.url for a in kept} <= {uri for kind, uri, _ in records if kind == "response"}
    (index,) = archive.rglob("*.cdxj")
    assert not set(said) & {
        json.loads(line.split(" ", 2)[2])["url"] for line in index.read_text().splitlines()
    }
    for article in (meta, header, ours):
        assert files_holding(archive, article.paragraphs[0][:40]) == []
    store = LocalStore(archive)
    for row in archived.values():
        record = read_capture(store.read_range(row["warc_file"], row["warc_offset"], row["warc_length"]))
        assert record.rec_headers.get_header("WARC-Target-URI") == row["url"]


@pytest.mark.slow
def test_reextract_takes_out_what_the_archives_template_of_an_outlet_holds(mirror_crawl, tmp_path):
    """An outlet's first crawl extracts its pages without a template; a reextract later applies
    the one its crawls learned since: a line the template holds leaves that outlet's rows."""
    source = tmp_path / "source"
    shutil.copytree(mirror_crawl.archive, source, ignore=shutil.ignore_patterns(".*"))
    victim = max(rows(source), key=lambda row: len(text_lines(row["text"])))
    (fingerprint, line), *_ = text_lines(victim["text"])[1:]
    learned = SiteTemplate()
    for article in ("one", "two", "three"):  # a line on three articles of the site: its template
        learned.learn([fingerprint], article)
    key = source / template_key(victim["outlet_id"], "20991231T235959Z-abcdef")
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_bytes(learned.to_json())
    run = run_cli("reextract", str(source), "--to", str(tmp_path / "again"))
    assert run.returncode == 0, run.stdout + run.stderr
    rebuilt = {r["url"]: r["text"] for r in rows(tmp_path / "again")}
    assert line in victim["text"] and line not in rebuilt[victim["url"]]
    others = {r["url"]: r["text"] for r in rows(source) if line not in r["text"]}
    assert others and all(rebuilt[url] == text for url, text in others.items())
