"""The address policy (crawler/confinement.py): what the crawl may reach, in every spelling."""

from __future__ import annotations

import ipaddress

import pytest

from crawler.confinement import AddressPolicy, host_of, is_internal, is_internal_host, literal_address

LOOPBACK_SPELLINGS = [
    "127.0.0.1",
    "127.1",
    "2130706433",
    "0x7f000001",
    "0x7f.1",
    "0177.0.0.1",
    "0177.0.0.01",
    "127.255.255.254",
    "%31%32%37.0.0.1",
    "::1",
    "0:0:0:0:0:0:0:1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "2002:7f00:1::",  # 6to4
    "64:ff9b::7f00:1",  # NAT64
    "localhost",
    "api.localhost",
    "localhost.",
]
INTERNAL = [
    "10.0.0.1",
    "172.16.5.4",
    "192.168.1.1",
    "169.254.169.254",  # the cloud metadata service
    "100.64.0.1",  # carrier-grade NAT
    "0.0.0.0",
    "0",
    "224.0.0.1",
    "240.0.0.1",
    "255.255.255.255",
    "fc00::1",
    "fe80::1",
    "fe80::1%eth0",
    "ff02::1",
    "::",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "0xa000001",
    "012.0.0.1",
]
PUBLIC = [
    "8.8.8.8",
    "93.184.215.14",
    "2606:4700::1111",
    "::ffff:8.8.8.8",
    "news.example.cn",
    "localhost.example",
]


@pytest.mark.parametrize("host", LOOPBACK_SPELLINGS + INTERNAL)
def test_every_spelling_of_an_internal_address_is_internal(host):
    assert is_internal_host(host_of(f"http://{_bracketed(host)}:8080/x"))
    assert AddressPolicy([]).refusal(f"http://{_bracketed(host)}/x") == "internal_address"
    assert AddressPolicy([]).refusal(f"https://{_bracketed(host)}:8443/x?a=1") == "internal_address"


@pytest.mark.parametrize("host", PUBLIC)
def test_public_addresses_and_names_are_fetched(host):
    assert AddressPolicy([]).refusal(f"https://{_bracketed(host)}/a.html") is None


def test_integer_and_short_forms_are_read_as_the_c_library_reads_them():
    for spelling in ("2130706433", "0x7f.1", "0177.0.0.1", "127.1"):
        assert literal_address(spelling) == ipaddress.IPv4Address("127.0.0.1")
    assert literal_address("news.example.cn") is None


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "file://news.example.cn/proc/self/environ",
        "FILE://news.example.cn/etc/passwd",
        "s3://news.example.cn/key",
        "ftp://news.example.cn/x",
        "data:text/html,<p>hi</p>",
        "gopher://news.example.cn/",
        "javascript:alert(1)",
    ],
)
def test_only_http_and_https_are_fetched(url):
    assert AddressPolicy([]).refusal(url) == "scheme"


def test_an_outlet_declared_on_an_internal_address_reaches_that_host_and_port_only():
    policy = AddressPolicy(["http://127.0.0.1:8080/sitemap.xml", "http://intranet.localhost/news/"])
    assert policy.refusal("http://127.0.0.1:8080/a/1.html") is None
    assert policy.refusal("http://intranet.localhost:80/a/1.html") is None
    for other in (
        "http://127.0.0.1:6379/",
        "http://127.0.0.1/",
        "https://127.0.0.1/",  # port 443
        "http://localhost:8080/",
        "http://2130706433:8080/",  # the same address, spelt otherwise: not what was declared
        "http://10.0.0.1:8080/",
    ):
        assert policy.refusal(other) == "internal_address", other


def test_a_resolved_address_is_checked_unless_its_host_was_declared_internal_or_is_a_transport():
    policy = AddressPolicy(["http://127.0.0.1:8080/"], transports=["http://mirror.localhost:9000", ""])
    loopback, private, public = (ipaddress.ip_address(a) for a in ("127.0.0.1", "10.1.2.3", "93.184.215.14"))
    assert not policy.may_connect("news.example.cn", loopback)
    assert not policy.may_connect("news.example.cn", private)
    assert not policy.may_connect("news.example.cn", ipaddress.ip_address("::ffff:127.0.0.1"))
    assert policy.may_connect("news.example.cn", public)
    assert policy.may_connect("127.0.0.1", loopback)
    assert policy.may_connect("mirror.localhost", loopback)
    assert policy.may_connect("MIRROR.localhost.", loopback)


def test_an_outlet_declared_by_a_name_declares_nothing_internal_and_by_address_does():
    """The module's docstring: a name that resolves internal is refused as the crawl connects,
    even the name of an outlet's own start URLs (DNS rebinding); an intranet outlet is declared
    by its address."""
    private = ipaddress.ip_address("10.1.2.3")
    by_name = AddressPolicy(["http://intranet.corp/news/"])
    assert by_name.refusal("http://intranet.corp/news/1.html") is None  # a name: judged on connecting
    assert not by_name.may_connect("intranet.corp", private)
    by_address = AddressPolicy(["http://10.1.2.3:8080/news/"])
    assert by_address.refusal("http://10.1.2.3:8080/news/1.html") is None
    assert by_address.may_connect("10.1.2.3", private)
    assert not by_address.may_connect("intranet.corp", private)


def test_ipv6_addresses_carrying_an_ipv4_one_are_judged_by_it():
    assert not is_internal(ipaddress.ip_address("::ffff:8.8.8.8"))
    assert is_internal(ipaddress.ip_address("::ffff:192.168.0.1"))
    assert not is_internal(ipaddress.ip_address("2002:808:808::"))


def _bracketed(host: str) -> str:
    return f"[{host.replace('%', '%25')}]" if ":" in host else host
