"""Where the crawl may go: http(s) only, and never to an address off the public internet that
the operator did not declare.

A page can name any URL: ``file:///proc/self/environ``, ``http://127.0.0.1:6379/``,
``http://2130706433/``, a name its owner points at 10.0.0.1. The crawl fetches a URL only if its
scheme is ``http`` or ``https`` and its host is not, literally or once resolved, a loopback,
private, link-local, multicast, reserved or unspecified address (IPv4 or IPv6, an IPv4 address
inside an IPv6 one included), nor ``localhost`` or a ``*.localhost`` name. The exceptions are
the operator's own, and exact:

- an outlet whose start URLs (sitemaps, feeds, listings) name an internal address literally, or
  ``localhost``, may reach that host and port, and no other internal one;
- the transports the crawl is configured with (``MIRROR_URL``, the proxies) may be reached by
  name, whatever they resolve to.

A host NAME in an outlet's start URLs declares nothing: a name that resolves to an internal
address is refused when the crawl connects, whichever outlet it belongs to, because a public
outlet's name pointed at 10.0.0.1 or 127.0.0.1 (DNS rebinding) is the very attack. To crawl an
intranet outlet, give its start URLs by address (``http://10.1.2.3:8080/news/``); the pages it
links to on that address and port are then fetched, and its name (``intranet.corp``) is not.

Plain Python: the Scrapy side is :class:`crawler.middlewares.ConfinementMiddleware`.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

FETCHED_SCHEMES = frozenset({"http", "https"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # the well-known prefix: its last 32 bits are IPv4

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def host_of(url: str) -> str:
    """A URL's host as the network reads it: lower case, percent-escapes decoded, no trailing dot."""
    return unquote(urlsplit(url).hostname or "").rstrip(".")


def literal_address(host: str) -> Address | None:
    """The address a host names literally, read as the C library reads it (so ``2130706433``,
    ``0x7f.1``, ``0177.0.0.1`` and ``127.1`` are all 127.0.0.1); None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, UnicodeError, ValueError):
        return None


def is_internal(address: Address) -> bool:
    """Not an address of the public internet. An IPv6 address that carries an IPv4 one
    (IPv4-mapped, 6to4, NAT64) is judged by the IPv4 address it leads to."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            return is_internal(embedded)
    return (
        address.is_private
        or address.is_loopback
        or address.is_link_local
        or address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or not address.is_global  # 100.64.0.0/10 (carrier-grade NAT) and the like
    )


def is_internal_host(host: str) -> bool:
    """``localhost``, a ``*.localhost`` name (RFC 6761) or an internal address literal."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    address = literal_address(host)
    return address is not None and is_internal(address)


class AddressPolicy:
    """What the crawl may reach, given the URLs the operator declared.

    ``declared``: the outlets' start URLs; one on an internal address literal (or ``localhost``)
    declares that host and port; one on a name declares nothing (see the module's docstring).
    ``transports``: URLs the crawl connects to on its own account (a mirror server, proxies);
    their hosts may resolve to internal addresses.
    """

    def __init__(self, declared: Iterable[str], transports: Iterable[str] = ()):
        self.internal_origins = {origin for url in declared if is_internal_host((origin := _origin(url))[0])}
        self.internal_hosts = {host for host, _ in self.internal_origins}
        self.internal_hosts |= {host_of(url) for url in transports if host_of(url)}

    def refusal(self, url: str) -> str | None:
        """Why ``url`` must not be fetched (``scheme`` or ``internal_address``), or None."""
        if urlsplit(url).scheme not in FETCHED_SCHEMES:
            return "scheme"
        origin = _origin(url)
        if is_internal_host(origin[0]) and origin not in self.internal_origins:
            return "internal_address"
        return None

    def may_connect(self, host: str, address: Address) -> bool:
        """Whether ``host``, resolved to ``address``, may be connected to."""
        return not is_internal(address) or host.lower().rstrip(".") in self.internal_hosts


def _origin(url: str) -> tuple[str, int | None]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return host_of(url), port or _DEFAULT_PORTS.get(parts.scheme)
