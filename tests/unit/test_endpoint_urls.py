"""Endpoint URLs: https only, and never an address inside the network, unless allowed."""

from __future__ import annotations

import pytest

from eventflo.endpoint_urls import EndpointUrlError, check_address, check_url


def resolving_to(*addresses: str):
    """A resolver answering ``addresses`` for any host, as a DNS server of an attacker's choice."""

    def resolve(host: str, port: int) -> list[str]:
        return list(addresses)

    return resolve


PUBLIC = resolving_to("93.184.216.34")


def test_a_public_https_url_is_accepted():
    url = "https://hooks.example.com/eventflo?team=ops"
    assert check_url(url, allow_private=False, resolver=PUBLIC) == url


@pytest.mark.parametrize(
    ("address", "named"),
    [
        ("127.0.0.1", "a loopback address"),
        ("::1", "a loopback address"),
        ("10.1.2.3", "a private address"),
        ("172.16.0.1", "a private address"),
        ("192.168.1.1", "a private address"),
        ("fd12::1", "a private address"),
        ("169.254.169.254", "a cloud metadata service"),
        ("fd00:ec2::254", "a cloud metadata service"),
        ("100.100.100.200", "a cloud metadata service"),
        ("169.254.1.1", "a link-local address"),
        ("fe80::1", "a link-local address"),
        ("224.0.0.1", "a multicast address"),
        ("0.0.0.0", "an unspecified address"),
        ("100.64.0.1", "not a public address"),
        ("::ffff:127.0.0.1", "a loopback address"),  # IPv4-mapped IPv6
        ("2002:a9fe:a9fe::", "a cloud metadata service"),  # 6to4 carrying 169.254.169.254
        ("2002:7f00:1::", "a loopback address"),  # 6to4 carrying 127.0.0.1
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", "a private address"),  # Teredo, 192.0.2.45
        ("fec0::1", "a site-local address"),
        # IANA special-purpose: refused whatever this Python's own tables say of it.
        ("192.0.0.8", "(a private address|not a public address)"),
        ("198.18.0.1", "(a private address|not a public address)"),
    ],
)
def test_an_address_inside_the_network_is_refused_with_what_it_is(address, named):
    with pytest.raises(EndpointUrlError, match=f"resolves to .*, {named};"):
        check_url("https://hooks.example.com/", allow_private=False, resolver=resolving_to(address))
    with pytest.raises(EndpointUrlError, match=named):
        check_address(address, allow_private=False)


def test_one_private_address_among_public_ones_is_enough_to_refuse():
    with pytest.raises(EndpointUrlError, match="10.0.0.5, a private address"):
        check_url(
            "https://hooks.example.com/",
            allow_private=False,
            resolver=resolving_to("93.184.216.34", "10.0.0.5"),
        )


def test_an_ip_literal_host_is_checked_like_a_name(monkeypatch):
    with pytest.raises(EndpointUrlError, match="loopback"):
        check_url("https://127.0.0.1:8443/hook", allow_private=False)
    with pytest.raises(EndpointUrlError, match="loopback"):
        check_url("https://[::1]/hook", allow_private=False)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://hooks.example.com/", "must start with https://"),
        ("ftp://hooks.example.com/", "must start with https://"),
        ("hooks.example.com/x", "must start with https://"),
        ("https:///path", "has no host"),
        ("https://user:pw@hooks.example.com/", "user name or password"),
        ("https://hooks.example.com/#frag", "fragment"),
        ("https://hooks.example.com:99999/", "malformed"),
        ("https://hooks.example.com:0/", "port must be from 1 to 65535"),
        ("https://hooks.example.com/a b", "spaces or control characters"),
        ("https://hooks.example.com/\n", "spaces or control characters"),
        ("https://hooks.example.com/" + "a" * 2048, "longer than 2048"),
    ],
)
def test_malformed_urls_are_refused_saying_why(url, message):
    with pytest.raises(EndpointUrlError, match=message):
        check_url(url, allow_private=False, resolver=PUBLIC)


def test_a_name_that_does_not_resolve_is_refused():
    with pytest.raises(EndpointUrlError, match="does not resolve"):
        check_url("https://no-such-host.invalid/", allow_private=False)


def test_allowing_private_endpoints_allows_http_and_loopback_without_resolving():
    def never(host: str, port: int) -> list[str]:
        raise AssertionError("allowed URLs are not resolved")

    url = "http://127.0.0.1:9000/hook"
    assert check_url(url, allow_private=True, resolver=never) == url
    check_address("127.0.0.1", allow_private=True)
    with pytest.raises(EndpointUrlError, match="must start with https://"):
        check_url("ftp://127.0.0.1/", allow_private=True, resolver=never)


def test_the_scheme_is_stored_in_lower_case():
    assert check_url("HTTPS://Hooks.example.com/A", allow_private=False, resolver=PUBLIC) == (
        "https://Hooks.example.com/A"
    )
    assert check_url("Http://127.0.0.1/", allow_private=True) == "http://127.0.0.1/"


def test_a_refusal_names_the_address_it_carries():
    with pytest.raises(EndpointUrlError, match=r"2002:7f00:1:: \(carrying 127.0.0.1\)"):
        check_address("2002:7f00:1::", allow_private=False)
