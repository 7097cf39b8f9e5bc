"""The crawl's item, :class:`pipelines.article.Article`, under the path Scrapy projects keep it."""

from pipelines.article import Article

__all__ = ["Article"]
