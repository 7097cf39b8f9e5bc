"""Offline mirrors of the outlets, served on loopback, so a whole crawl runs without internet.

``sites`` renders the mirrored sites, ``server`` serves them at ``http://127.0.0.1:PORT/<host>/<path>``,
``handler`` is the Scrapy download handler that sends every outlet request there.
"""
