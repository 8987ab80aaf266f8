"""Where EPU may send a webhook: https URLs without credentials, to public addresses only.

A webhook URL lets a client choose where EPU sends requests; without these rules EPU could be
made to probe or attack its own network or a third party's. The address rule is checked when
the subscription is registered and again on the address actually connected to at each
delivery (a name may resolve elsewhere later: DNS rebinding).
"""

import ipaddress
import socket
from urllib.parse import urlsplit

MAX_URL_LENGTH = 2000
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(Exception):
    """The URL may not be called; the message says why, for the client."""


def embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, NAT64, 6to4, Teredo), if any."""
    if address.version == 4:
        return None
    if address.ipv4_mapped:
        return address.ipv4_mapped
    if address in ipaddress.ip_network("64:ff9b::/96"):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour:
        return address.sixtofour
    if address.teredo:
        return address.teredo[1]
    return None


def refusal(address: IPAddress) -> str | None:
    """Why EPU may not connect to this address, or None when it is a public unicast one."""
    inner = embedded_ipv4(address)
    if inner is not None:
        why = refusal(inner)
        return f"{why} (as {address})" if why else None
    if address.is_loopback:
        return f"{address} is a loopback address"
    if address.is_link_local:
        return f"{address} is a link-local address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if address.is_reserved or address.is_unspecified:
        return f"{address} is a reserved address"
    if address.is_private:
        return f"{address} is a private address"
    if not address.is_global:
        return f"{address} is a reserved address"
    return None


def parse(url: str, *, allow_http: bool) -> tuple[str, str, int]:
    """(scheme, host, port) of an acceptable URL, or UrlRefused."""
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"must be at most {MAX_URL_LENGTH} characters")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url):
        raise UrlRefused("must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise UrlRefused(f"is not a valid URL ({error})") from error
    scheme = parts.scheme.lower()
    if scheme != "https" and not (scheme == "http" and allow_http):
        raise UrlRefused("must be an https:// URL")
    if parts.username is not None or parts.password is not None:
        raise UrlRefused("must not contain credentials (user:password@)")
    if parts.fragment or url.endswith("#"):
        raise UrlRefused("must not have a fragment (#...)")
    host = parts.hostname
    if not host:
        raise UrlRefused("must name a host")
    try:
        host.encode("idna")
    except UnicodeError as error:
        raise UrlRefused("has a host name that is not valid") from error
    return scheme, host, port or (443 if scheme == "https" else 80)


def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address the host name resolves to (an IP literal resolves to itself)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise UrlRefused(f"has a host that does not resolve ({host})") from error
    addresses = []
    for info in infos:
        address = ipaddress.ip_address(info[4][0].split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


def check(url: str, *, allow_http: bool, allow_private: bool) -> None:
    """Registration: the URL is acceptable and every address of its host is public."""
    _scheme, host, port = parse(url, allow_http=allow_http)
    addresses = resolve(host, port)
    if not addresses:
        raise UrlRefused(f"has a host that does not resolve ({host})")
    if allow_private:
        return
    for address in addresses:
        why = refusal(address)
        if why:
            raise UrlRefused(f"resolves to a forbidden address: {why}")
