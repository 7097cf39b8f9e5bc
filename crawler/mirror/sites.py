"""Offline mirrors of the outlets: small static sites rendered from article sources.

Each ``sites/<outlet id>/`` folder holds ``site.toml`` (host, robots.txt, discovery documents),
``article.html`` (the outlet's page furniture around ``$body``, a ``string.Template``),
optionally ``listing.html``, and ``articles/*.toml`` (one article: its metadata, its paragraphs,
the bytes' encoding and what the page and the server claim it is). The paragraphs are the gold
text the extractor must recover; everything else on the page is furniture it must drop.
"""

from __future__ import annotations

import html
import re
import tomllib
from dataclasses import dataclass, field
from datetime import datetime
from email.utils import format_datetime
from pathlib import Path
from string import Template
from typing import Any
from zoneinfo import ZoneInfo

SITES_DIR = Path(__file__).with_name("sites")
_IMAGE = re.compile(r"^!\[(?P<caption>[^\]]*)\]\((?P<src>[^)]+)\)$")


@dataclass(frozen=True)
class Page:
    status: int
    content_type: str
    body: bytes
    headers: tuple[tuple[str, str], ...] = ()  # more headers (Location, Content-Encoding ...)


@dataclass(frozen=True)
class MirroredArticle:
    """One article page of a mirror, and what the crawl is expected to make of it."""

    outlet_id: str
    url: str
    title: str
    published: datetime
    paragraphs: tuple[str, ...]
    authors: tuple[str, ...]
    editor: str | None
    source: str | None
    section: str | None
    tags: tuple[str, ...]
    encoding: str
    expect: str  # "archived", "dropped" (not an article) or "robots" (disallowed, never fetched)
    raw: dict[str, Any] = field(repr=False, compare=False, default_factory=dict)

    @property
    def gold_text(self) -> str:
        return "\n\n".join(filter(None, (_gold_paragraph(p) for p in self.paragraphs)))


@dataclass
class Mirror:
    """All mirrored sites: pages by (host, path with query), and the articles behind them."""

    pages: dict[tuple[str, str], Page] = field(default_factory=dict)
    articles: list[MirroredArticle] = field(default_factory=list)

    def page(self, host: str, path: str) -> Page | None:
        return self.pages.get((host.lower(), path))


def build_mirror(sites_dir: Path = SITES_DIR) -> Mirror:
    mirror = Mirror()
    for site_dir in sorted(p for p in sites_dir.iterdir() if (p / "site.toml").is_file()):
        _render_site(site_dir, mirror)
    return mirror


def _gold_paragraph(paragraph: str) -> str:
    image = _IMAGE.match(paragraph)
    if image:
        return image["caption"]
    return paragraph.removeprefix("## ")


def _render_site(site_dir: Path, mirror: Mirror) -> None:
    site = tomllib.loads((site_dir / "site.toml").read_text(encoding="utf-8"))
    outlet_id, host, scheme = site_dir.name, site["host"], site.get("scheme", "https")
    zone = ZoneInfo(site.get("timezone", "Asia/Shanghai"))
    base = f"{scheme}://{host}"
    articles = []
    for path in sorted((site_dir / "articles").glob("*.toml")):
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
        articles.append(
            MirroredArticle(
                outlet_id=outlet_id,
                url=base + raw["path"],
                title=raw["title"],
                published=datetime.fromisoformat(raw["published"]).replace(tzinfo=zone),
                paragraphs=tuple(raw["paragraphs"]),
                authors=tuple(raw.get("authors", ())),
                editor=raw.get("editor"),
                source=raw.get("source"),
                section=raw.get("section"),
                tags=tuple(raw.get("tags", ())),
                encoding=raw.get("encoding", "utf-8"),
                expect=raw.get("expect", "archived"),
                raw=raw,
            )
        )
    articles.sort(key=lambda a: a.published, reverse=True)
    mirror.articles.extend(articles)

    def put(path: str, content_type: str, text: str, encoding: str = "utf-8") -> None:
        mirror.pages[(host, path)] = Page(200, content_type, text.encode(encoding))

    put("/robots.txt", "text/plain", site.get("robots", "User-agent: *\nAllow: /\n"))
    article_template = Template((site_dir / "article.html").read_text(encoding="utf-8"))
    for index, article in enumerate(articles):
        related = [a for a in articles if a is not article][:4]
        see_also = articles[(index + 1) % len(articles)]
        page_html = _render_article(article, article_template, related, see_also, site)
        header_charset = article.raw.get("header_charset")
        content_type = "text/html" + (f"; charset={header_charset}" if header_charset else "")
        put(article.url.removeprefix(base), content_type, page_html, article.encoding)

    for doc in site.get("document", []):
        kind = doc["kind"]
        if kind == "listing":
            template = Template((site_dir / "listing.html").read_text(encoding="utf-8"))
            _render_listing(doc, articles, template, put)
        elif kind == "sitemap_index":
            put(doc["path"], "application/xml", _sitemap_index([base + c for c in doc["children"]]))
        elif kind == "sitemap":
            sections = doc.get("sections")
            urls = [a.url for a in articles if not sections or a.section in sections]
            urls += [base + p for p in doc.get("broken", [])]
            put(doc["path"], "application/xml", _sitemap(urls))
        elif kind == "news_sitemap":
            put(doc["path"], "application/xml", _news_sitemap(articles, site["publication"]))
        elif kind == "rss":
            put(doc["path"], "application/rss+xml", _rss(articles, base, site["publication"]))
        elif kind == "atom":
            put(doc["path"], "application/atom+xml", _atom(articles, base, site["publication"]))
        else:
            raise ValueError(f"{site_dir}/site.toml: unknown document kind {kind!r}")


def _render_article(
    article: MirroredArticle,
    template: Template,
    related: list[MirroredArticle],
    see_also: MirroredArticle,
    site: dict[str, Any],
) -> str:
    blocks = []
    see_also_after = site.get("see_also_after")
    see_also_html = Template(site.get("see_also_html", ""))
    for number, paragraph in enumerate(article.paragraphs, start=1):
        image = _IMAGE.match(paragraph)
        if image:
            src = html.escape(image["src"])
            blocks.append(f'<p class="img"><img src="{src}" alt="{src}"></p>')
            if image["caption"]:
                blocks.append(f'<p style="text-align: center;">{html.escape(image["caption"])}</p>')
        elif paragraph.startswith("## "):
            blocks.append(f"<p><strong>{html.escape(paragraph[3:])}</strong></p>")
        else:
            blocks.append(f"<p>{html.escape(paragraph)}</p>")
        if number == see_also_after:
            blocks.append(see_also_html.substitute(url=see_also.url, title=html.escape(see_also.title)))
    related_items = Template(site.get("related_item_html", ""))
    published = article.published
    values = {
        "title": html.escape(article.title),
        "url": article.url,
        "charset": article.raw.get("meta_charset", article.encoding),
        "published": published.strftime("%Y-%m-%d %H:%M"),
        "published_date": published.strftime("%Y-%m-%d"),
        "published_seconds": published.strftime("%Y-%m-%d %H:%M:%S"),
        "published_iso": published.isoformat(),
        "published_en": published.strftime("%B %-d, %Y"),
        "source": html.escape(article.source or ""),
        "editor": html.escape(article.editor or ""),
        "authors": html.escape(" ".join(article.authors)),
        "section": html.escape(article.section or ""),
        "keywords": html.escape(",".join(article.tags)),
        "body": "\n".join(blocks),
        "related": "\n".join(
            related_items.substitute(
                url=r.url, title=html.escape(r.title), date=r.published.strftime("%Y-%m-%d")
            )
            for r in related
        ),
    }
    values.update(article.raw.get("template", {}))
    return template.substitute(values)


def _render_listing(
    doc: dict[str, Any], articles: list[MirroredArticle], template: Template, put: Any
) -> None:
    pages: list[str] = doc["pages"]
    per_page = max(1, -(-len(articles) // len(pages)))
    for number, path in enumerate(pages):
        chunk = articles[number * per_page : (number + 1) * per_page]
        items = "\n".join(
            f'<li><a href="{a.url}">{html.escape(a.title)}</a><span>{a.published:%Y-%m-%d}</span></li>'
            for a in chunk
        )
        items += (
            "".join(
                f'\n<li><a href="{link}">{html.escape(text)}</a></li>'
                for link, text in doc.get("extra_links", {}).items()
            )
            if number == 0
            else ""
        )
        pager = " ".join(
            f'<a href="{p}">{n + 1}</a>' if n != number else f"<span>{n + 1}</span>"
            for n, p in enumerate(pages)
        )
        put(path, "text/html; charset=utf-8", template.substitute(items=items, pager=pager))


def _sitemap(urls: list[str]) -> str:
    entries = "".join(f"<url><loc>{html.escape(u)}</loc></url>" for u in urls)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}</urlset>\n'
    )


def _sitemap_index(urls: list[str]) -> str:
    entries = "".join(f"<sitemap><loc>{html.escape(u)}</loc></sitemap>" for u in urls)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<sitemapindex xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">{entries}'
        "</sitemapindex>\n"
    )


def _news_sitemap(articles: list[MirroredArticle], publication: dict[str, str]) -> str:
    entries = "".join(
        f"<url><loc>{html.escape(a.url)}</loc><news:news><news:publication>"
        f"<news:name>{html.escape(publication['name'])}</news:name>"
        f"<news:language>{publication['language']}</news:language></news:publication>"
        f"<news:publication_date>{a.published.isoformat()}</news:publication_date>"
        f"<news:title>{html.escape(a.title)}</news:title></news:news></url>"
        for a in articles
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9" '
        'xmlns:news="http://www.google.com/schemas/sitemap-news/0.9">'
        f"{entries}</urlset>\n"
    )


def _rss(articles: list[MirroredArticle], base: str, publication: dict[str, str]) -> str:
    items = "".join(
        f"<item><title>{html.escape(a.title)}</title><link>{html.escape(a.url)}</link>"
        f"<pubDate>{format_datetime(a.published)}</pubDate></item>"
        for a in articles
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<rss version="2.0"><channel>'
        f"<title>{html.escape(publication['name'])}</title><link>{base}/</link>"
        f"{items}</channel></rss>\n"
    )


def _atom(articles: list[MirroredArticle], base: str, publication: dict[str, str]) -> str:
    entries = "".join(
        f'<entry><title>{html.escape(a.title)}</title><link rel="alternate" href="{html.escape(a.url)}"/>'
        f"<id>{html.escape(a.url)}</id><updated>{a.published.isoformat()}</updated></entry>"
        for a in articles
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n<feed xmlns="http://www.w3.org/2005/Atom">'
        f"<title>{html.escape(publication['name'])}</title><id>{base}/</id>"
        f'<link href="{base}/"/>{entries}</feed>\n'
    )
