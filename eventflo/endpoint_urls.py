"""Where deliveries may go: the URL checks that keep a webhook from reaching inside the network.

An endpoint URL is chosen by whoever registers it, and the deliverer sends
requests to it from inside the installation: without checks it could read a
cloud provider's metadata service or an internal admin port (server-side
request forgery). So a URL must be ``https://`` and every address its host
resolves to must be public. The check runs when an endpoint is added, and the
deliverer runs ``check_address`` again on the address it actually connects to,
since a name can resolve elsewhere by then (DNS rebinding).

``EVENTFLO_ALLOW_PRIVATE_ENDPOINTS=on`` lifts both rules (local development,
tests, receivers on the same private network): plain ``http://`` and private
addresses are then accepted.
"""

from __future__ import annotations

import ipaddress
import socket
import urllib.parse
from collections.abc import Callable, Iterable

MAX_URL_CHARS = 2048

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Iterable[str]]

# Metadata services that sit on addresses the generic tests below do not all cover
# (Alibaba's is in the shared 100.64.0.0/10 range, AWS's IPv6 one in fd00::/8); listed
# so the refusal names them.
_METADATA = {
    ipaddress.ip_address("169.254.169.254"): "a cloud metadata service",
    ipaddress.ip_address("fd00:ec2::254"): "a cloud metadata service",
    ipaddress.ip_address("100.100.100.200"): "a cloud metadata service",
}

# The IANA special-purpose ranges that are not globally reachable, spelled out here rather
# than left to the interpreter's ``is_private``/``is_global`` tables, which changed between
# Python patch releases (CVE-2024-4032).
_SPECIAL = tuple(
    ipaddress.ip_network(net)
    for net in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16",
        "198.18.0.0/15", "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
        "::/128", "::1/128", "64:ff9b:1::/48", "100::/64", "2001::/23", "2001:db8::/32",
        "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
    )
)  # fmt: skip


class EndpointUrlError(ValueError):
    """A URL deliveries may not go to; the message says why, in words an operator can act on."""


def resolve(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to (the system resolver, as the HTTP client uses it)."""
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise EndpointUrlError(f"the host {host!r} does not resolve: {exc}") from None
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def check_url(url: str, *, allow_private: bool, resolver: Resolver = resolve) -> str:
    """``url`` when deliveries may go to it; otherwise EndpointUrlError saying why."""
    if len(url) > MAX_URL_CHARS:
        raise EndpointUrlError(f"the URL is longer than {MAX_URL_CHARS} characters")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise EndpointUrlError("the URL contains spaces or control characters")
    try:
        parts = urllib.parse.urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise EndpointUrlError(f"the URL is malformed: {exc}") from None
    if port == 0:
        raise EndpointUrlError("the URL's port must be from 1 to 65535")
    schemes = ("https", "http") if allow_private else ("https",)
    if parts.scheme not in schemes:
        hint = (
            ""
            if allow_private
            else " (plain http:// only with EVENTFLO_ALLOW_PRIVATE_ENDPOINTS=on)"
        )
        raise EndpointUrlError(f"the URL must start with https://{hint}")
    if not parts.hostname:
        raise EndpointUrlError("the URL has no host")
    if parts.username is not None or parts.password is not None:
        raise EndpointUrlError(
            "the URL must not carry a user name or password; receivers check the signature instead"
        )
    if parts.fragment:
        raise EndpointUrlError("the URL must not have a #fragment (it is never sent)")
    # As stored and sent: the scheme in lower case (``HTTPS://`` means the same).
    normalized = urllib.parse.urlunsplit(parts._replace(scheme=parts.scheme.lower()))
    if allow_private:
        return normalized
    port = port or (443 if parts.scheme == "https" else 80)
    for address in resolver(parts.hostname, port):
        check_address(address, allow_private=False)
    return normalized


def check_address(address: str, *, allow_private: bool) -> None:
    """Refuse an address deliveries may not connect to (loopback, private, metadata, …)."""
    if allow_private:
        return
    ip: IpAddress = ipaddress.ip_address(address.split("%", 1)[0])  # without an IPv6 zone
    shown = str(ip)
    if isinstance(ip, ipaddress.IPv6Address):
        # An IPv4 address carried inside IPv6 (mapped, 6to4, Teredo) is judged as IPv4.
        teredo = ip.teredo[1] if ip.teredo is not None else None
        embedded = ip.ipv4_mapped or ip.sixtofour or teredo
        if embedded is not None:
            ip = embedded
            shown = f"{shown} (carrying {ip})"
    why = _why_not_public(ip)
    if why is not None:
        raise EndpointUrlError(
            f"the URL's host resolves to {shown}, {why}; deliveries go only to public addresses"
            " (set EVENTFLO_ALLOW_PRIVATE_ENDPOINTS=on for receivers on a private network)"
        )


def _why_not_public(ip: IpAddress) -> str | None:
    if ip in _METADATA:
        return _METADATA[ip]
    for test, what in (
        ("is_loopback", "a loopback address"),
        ("is_link_local", "a link-local address"),
        ("is_multicast", "a multicast address"),
        ("is_unspecified", "an unspecified address"),
        ("is_private", "a private address"),
        ("is_reserved", "a reserved address"),
    ):
        if getattr(ip, test):
            return what
    if isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local:
        return "a site-local address"
    if not ip.is_global or any(ip in net for net in _SPECIAL if net.version == ip.version):
        return "not a public address"
    return None
