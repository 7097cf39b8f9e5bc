"""One fetched page in, its article out: the extraction and language stages together.

This is what the crawl's worker processes run (:mod:`pipelines.runtime.pool`) and what
``newsarchive extract`` runs over saved pages, so both archive the same thing. It fills the
extraction and language fields of the item and drops its body, which the rest of the crawl no
longer needs (the result travels back to the crawl process without it).
"""

from __future__ import annotations

from pipelines.article import Article
from pipelines.stages.extraction.extractor import (
    EXTRACTOR,
    EXTRACTOR_VERSION,
    MAX_LINKS,
    article_chars,
    extract,
)
from pipelines.stages.extraction.metadata import noarchive_in
from pipelines.stages.language import LanguageDetector


class PageAnalyser:
    """Built once per worker process: the language models load once, not once per page.

    A page with less than ``min_chars`` of paragraph text (lines of 20+ characters) holds no
    article (a gallery, a video page, a stub): ``not_article`` says so, the text stays. A page
    that asks not to be archived (robots ``noarchive`` in a meta tag or an X-Robots-Tag header)
    is not archived either (``noarchive``), unless ``obey_noarchive`` is off. A page of more than
    ``max_links`` links loses its link lists before extraction (bounded work on link farms).
    """

    def __init__(
        self,
        language_seed: int = 0,
        language_sample_chars: int = 2000,
        min_chars: int = 80,
        obey_noarchive: bool = True,
        max_links: int = MAX_LINKS,
    ):
        self.detector = LanguageDetector(language_seed, language_sample_chars)
        self.min_chars = min_chars
        self.obey_noarchive = obey_noarchive
        self.max_links = max_links

    def __call__(self, item: Article) -> Article:
        result = extract(
            item.body,
            item.url,
            item.header_charset,
            item.outlet_timezone,
            item.drop_selectors,
            item.body_selector,
            self.max_links,
            item.site_template,
            item.learn_template,
        )
        metadata = result.metadata
        item.site_template = frozenset()  # not sent back
        item.template_fingerprints = result.fingerprints
        item.body = b""
        item.charset = result.charset
        item.canonical_url = metadata.canonical_url
        item.title = metadata.title
        item.authors = metadata.authors
        item.editor = metadata.editor
        item.source = metadata.source
        item.section = metadata.section
        item.tags = metadata.tags
        item.published_at = result.published_at
        item.published_at_raw = metadata.published_raw
        item.text = result.text
        if result.too_deep:
            item.not_article = "too_deep"  # not "no article": the crawl counts it as failed
        elif not result.text:
            item.not_article = "empty"
        elif article_chars(result.text) < self.min_chars:
            item.not_article = "too_short"
        if self.obey_noarchive and (metadata.noarchive or any(map(noarchive_in, item.robots_headers))):
            item.not_article = "noarchive"
        item.extractor = EXTRACTOR
        item.extractor_version = EXTRACTOR_VERSION
        guess = self.detector.detect(result.text or "")
        item.language = guess.language
        item.language_script = guess.script
        item.language_confidence = guess.confidence
        item.languages = list(guess.shares)
        return item
