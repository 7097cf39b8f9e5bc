"""What is done to each page: ``page`` (one fetched page in, its article out: what the workers run),
``charset``, ``extraction/``, ``language``, ``tokens``, ``dedup``. Stages pass on
:class:`pipelines.article.Article` and nothing else; they import ``pipelines.article``,
``pipelines.runtime`` and one another, never ``archive`` or ``tools``.
"""
