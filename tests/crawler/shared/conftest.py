"""The Redis client the tests of the shared crawl share."""

from __future__ import annotations

import pytest

from crawler.shared.state import redis_client


@pytest.fixture
def client(redis_server):
    return redis_client(redis_server.url)
