"""Confinement through the CLI (issue 31, class 2): a crawl fetches http(s) only, and an outlet
reaches no internal address but its own, whatever a page, a sitemap, a redirect or DNS says.

Every run has a marker secret in its environment, as an operator's AWS_SECRET_ACCESS_KEY: read
from /proc/self/environ it would land in the archive's WARCs and CDXJ, so every file of the
archive is searched for it (decompressed, Parquet read).
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import secrets
from pathlib import Path
from string import Template
from urllib.parse import urlsplit

import pyarrow.parquet as pq
import pytest

from crawler.mirror.server import MirrorServer
from crawler.mirror.sites import Mirror, Page, build_mirror
from tests.conftest import FIXTURES, run_cli
from tests.test_hostile import SITEMAP_OUTLET, articles, key, stat
from tests.test_incremental import mirror, rows

pytestmark = pytest.mark.slow  # every test crawls in a subprocess

__all__ = ["mirror"]  # the fixture, from tests/test_incremental.py

CONFINEMENT = FIXTURES / "confinement"
INTRANET = "intranet"  # the site's folder on its server, and the outlet's id
_REFUSED = "article pages not fetched, by reason: "
HOSTS = {"newsroom.example": "127.0.0.1"}  # a public-looking name its owner points at loopback


def marker_env() -> dict[str, str]:
    return {"AWS_SECRET_ACCESS_KEY": f"marker-{secrets.token_hex(8)}"}


def refusals(stdout: str) -> dict[str, int]:
    """The summary's article pages not fetched, by reason."""
    line = next(line for line in stdout.splitlines() if line.startswith(_REFUSED))
    return {reason: int(n) for reason, n in (p.split(": ") for p in line.removeprefix(_REFUSED).split(", "))}


def files_holding(root: Path, text: str) -> list[Path]:
    """The files under ``root`` whose content holds ``text``: gzip members decompressed,
    Parquet read row by row, anything else as bytes."""
    found = []
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name.endswith(".gz"):
            data = gzip.decompress(data)
        elif path.suffix == ".parquet":
            data = json.dumps(pq.read_table(path).to_pylist(), default=str, ensure_ascii=False).encode()
        if text.encode() in data:
            found.append(path)
    return found


def test_file_urls_in_a_sitemap_and_a_redirect_are_never_read(mirror, tmp_path):
    """hangzhou-net's sitemap index lists /proc/self/environ on the outlet's own host, and one
    of its articles redirects there: neither is read, and the other articles are all archived."""
    pages, host = mirror.mirror.pages, "hznews.hangzhou.com.cn"
    environ = f"file://{host}/proc/self/environ"
    index = pages[(host, "/sitemap_index.xml")]
    pages[(host, "/sitemap_index.xml")] = dataclasses.replace(
        index,
        body=index.body.replace(
            b"</sitemapindex>", f"<sitemap><loc>{environ}</loc></sitemap>".encode() + b"</sitemapindex>"
        ),
    )
    moved, *kept = articles(mirror, SITEMAP_OUTLET)
    pages[key(moved.url)] = Page(302, "text/html", b"", (("Location", environ),))
    env = marker_env()
    archive = tmp_path / "archive"
    run = run_cli(
        *("crawl", "--mirror-url", mirror.url, "--archive", str(archive)),
        *("--outlet", SITEMAP_OUTLET, "--log-level", "INFO"),
        env=env,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert stat(run.stderr, "confinement/scheme") == 1  # the sitemap
    assert refusals(run.stdout)["http_302"] == 1  # Scrapy follows no redirect off http(s)
    assert files_holding(tmp_path, env["AWS_SECRET_ACCESS_KEY"]) == []
    assert {r["url"] for r in rows(archive)} == {a.url for a in kept}


def intranet_site(port: int, elsewhere: int) -> Mirror:
    """An intranet news site at ``http://127.0.0.1:<port>/intranet/``: three articles (pages of
    the sxkjt mirror), and links, sitemap entries and redirects to every other place an outlet
    must not reach (tests/fixtures/confinement/)."""

    def page(name: str, content_type: str) -> Page:
        text = Template((CONFINEMENT / name).read_text(encoding="utf-8"))
        return Page(200, content_type, text.substitute(port=port, elsewhere=elsewhere).encode())

    source = build_mirror()
    bodies = [source.pages[key(a.url)] for a in source.articles if a.outlet_id == "sxkjt"][:3]
    site = Mirror()
    site.pages[(INTRANET, "/")] = page("listing.html", "text/html; charset=utf-8")
    site.pages[(INTRANET, "/sitemap_index.xml")] = page("sitemap_index.xml", "application/xml")
    site.pages[(INTRANET, "/sitemap.xml")] = page("sitemap.xml", "application/xml")
    for number, body in enumerate(bodies, start=1):
        site.pages[(INTRANET, f"/{number}.html")] = body
    for number, location in (
        (7, f"http://127.0.0.1:{elsewhere}/a/7.html"),
        (8, "http://10.0.0.1/a/8.html"),
        (9, "http://169.254.169.254/a/9.html"),
        (11, "file://127.0.0.1/proc/self/environ#/a/11.html"),
    ):
        site.pages[(INTRANET, f"/{number}.html")] = Page(302, "text/html", b"", (("Location", location),))
    return site


def test_an_outlet_reaches_its_own_address_and_no_other_internal_one(tmp_path):
    """The outlet is declared on 127.0.0.1:<port>. Its pages send the crawl to another port of
    loopback (a server there records every request), to loopback spelt as an integer, in hex,
    as IPv4-mapped IPv6 and as localhost, to a private and a link-local address, to a name
    that resolves to 127.0.0.1, and to a local file: nothing of it is reached, each article
    refused is counted by reason, and the three articles are archived."""
    with MirrorServer(Mirror()) as elsewhere:
        elsewhere_port = urlsplit(elsewhere.url).port
        with MirrorServer(Mirror()) as server:
            port = urlsplit(server.url).port
            server.mirror = intranet_site(port, elsewhere_port)
            outlets = tmp_path / "outlets.toml"
            template = Template((CONFINEMENT / "outlets.toml").read_text(encoding="utf-8"))
            outlets.write_text(template.substitute(port=port), encoding="utf-8")
            env = marker_env()
            archive = tmp_path / "archive"
            run = run_cli(
                *("crawl", "--archive", str(archive), "--outlets-file", str(outlets), "--outlet", INTRANET),
                *("-s", "TWISTED_DNS_RESOLVER=tests.hosts_resolver.HostsResolver"),
                *("-s", f"TEST_DNS_HOSTS={json.dumps(HOSTS)}", "--log-level", "INFO"),
                env=env,
            )
        assert elsewhere.requested == []
    assert run.returncode == 0, run.stdout + run.stderr
    # listing: 6 links and 3 redirects to internal places; sitemap: 1, and 1 file (the listing's
    # file link is none of the outlet's: not asked for; its redirect to a file is not followed)
    assert refusals(run.stdout) == {"internal_address": 10, "scheme": 1, "http_302": 1}
    assert stat(run.stderr, "confinement/internal_address") >= 12  # the sitemaps too, and robots.txt
    assert files_holding(tmp_path, env["AWS_SECRET_ACCESS_KEY"]) == []
    assert sorted(r["url"] for r in rows(archive)) == [
        f"http://127.0.0.1:{port}/{INTRANET}/{n}.html" for n in (1, 2, 3)
    ]
