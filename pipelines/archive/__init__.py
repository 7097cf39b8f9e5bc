"""The archive, in a folder or a bucket: ``schema`` and ``rows`` (the Parquet rows), ``manifest``,
``keys``, ``index``, ``spool`` and ``publish`` (each file published whole, each run sealed), ``lock``,
``warc``, ``catalog`` (what it holds, for readers), ``templates``, ``storage/`` (the back ends).
Imports ``pipelines.article``, ``runtime`` and ``stages`` (the index keys articles by dedup's
``url_key``; ``templates`` reads extraction's ``SiteTemplate``), never ``tools``.
"""
