"""The archivist commands' cores, one module each: ``verify``, ``pull``, ``compact``, ``card``,
``reextract``, ``reindex``, ``saved_pages`` (``newsarchive extract``); ``crawler/cli/`` gives them
their command lines. A tool imports ``archive``, ``stages``, ``runtime`` and ``article``, never
another tool: what two tools share belongs in ``archive`` or ``stages``.
"""
