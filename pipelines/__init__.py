"""newsarchive's stages and archive in plain Python: nothing here imports Scrapy, Twisted or
``crawler``, so the worker processes and the archivist commands run it without them.

Layers, lower first; each imports only those below it (tests/test_layout.py holds them):
``article`` (the item) and ``runtime/`` (process plumbing); ``stages/`` (what is done to each page);
``archive/`` (the archive's objects and their publication); ``tools/`` (the archivist commands' cores).
"""
