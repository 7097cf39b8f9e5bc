"""URIs as they may appear in a message: with no secret in them.

An archive, a Redis or a proxy URI may carry credentials (``redis://user:secret@host``,
``?password=secret``, a signed URL's query). Every message that names such a URI shows it
through :func:`mask_uri`.
"""

from __future__ import annotations

import re

_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:")
_PARAMETER_NAME = re.compile(r"[A-Za-z0-9_.\-\[\]]+")
MASK = "***"


def mask_uri(uri: str) -> str:
    """``uri`` with its user information, every query value and its fragment replaced by ``***``.

    Kept: the scheme, host, port, path and the names of query parameters, which say what the
    URI points at. Where the URI is ambiguous (an ``@`` after a ``?`` or ``#``: a password
    holding one of them unencoded, or an ``@`` in the query), all that follows ``//`` is masked.
    A string with no scheme (a local path) is returned as it is. Never raises.
    """
    scheme = _SCHEME.match(uri, len(uri) - len(uri.lstrip()))
    if scheme is None:
        return uri
    start = scheme.end()
    has_authority = uri.startswith("//", start)
    if has_authority:
        start += 2
    at = uri.rfind("@", start) if has_authority else -1
    query = _first_of(uri, "?#", start)
    if at != -1 and query != -1 and query < at:
        return uri[:start] + MASK
    head, rest = (uri[:start] + MASK, uri[at:]) if at != -1 else (uri[:start], uri[start:])
    query = _first_of(rest, "?#", 0)
    if query == -1:
        return head + rest
    return head + rest[:query] + _mask_query(rest[query:])


def _first_of(text: str, characters: str, start: int) -> int:
    found = [index for index in (text.find(character, start) for character in characters) if index != -1]
    return min(found, default=-1)


def _mask_query(tail: str) -> str:
    """``?a=1&b#frag`` -> ``?a=***&***#***``: names kept where they look like names."""
    query, hash_mark, fragment = tail.partition("#")
    masked = query
    if query.startswith("?"):
        masked = "?" + "&".join(_mask_parameter(item) for item in query[1:].split("&"))
    return masked + (f"#{MASK}" if hash_mark and fragment else hash_mark)


def _mask_parameter(item: str) -> str:
    name, equals, _ = item.partition("=")
    if equals and _PARAMETER_NAME.fullmatch(name):
        return f"{name}={MASK}"
    return MASK if item else item
