"""Downloads that cannot be pointed at the gateway's own network (SSRF).

Every hop of a download — the first URL and each redirect — is resolved here, every address
the name resolves to must be a public one, and the connection goes to the address that was
checked: the request is sent to the IP itself, with the original `Host` header and TLS SNI
(httpx's `sni_hostname` extension, so the certificate is still verified against the name).
A DNS answer that changes between the check and the connect (rebinding) cannot take effect.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

MAX_REDIRECTS = 5
_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)


class UrlNotAllowed(Exception):
    """The URL, or a redirect it leads to, may not be fetched; the message says why."""


def address_allowed(address: IPAddress) -> bool:
    """True only for a global unicast address (IPv4 inside IPv6 is judged as IPv4)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is None and address.teredo is not None:
            embedded = address.teredo[1]
        if embedded is not None and not address_allowed(embedded):
            return False
    if address in _METADATA or (isinstance(address, ipaddress.IPv4Address) and address in _CGNAT):
        return False
    return address.is_global and not (
        address.is_loopback
        or address.is_private
        or address.is_link_local
        or address.is_multicast
        or address.is_unspecified
        or address.is_reserved
    )


async def resolve(host: str, port: int) -> list[IPAddress]:
    """Every address `host` resolves to (as the operating system resolves it, so numeric
    oddities such as `2130706433` or `0x7f.1` come back as the addresses they mean)."""
    try:
        return [ipaddress.ip_address(host)]
    except ValueError:
        pass
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        raise UrlNotAllowed(f"the host {host!r} cannot be resolved") from exc
    # An IPv6 scope (`fe80::1%eth0`) is dropped: such an address is link-local anyway.
    return [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos]


async def checked_address(url: httpx.URL, allow_private: bool) -> IPAddress:
    """The address to connect to for `url`, once every address of its host passed."""
    if url.scheme not in ("http", "https"):
        raise UrlNotAllowed(f"the scheme {url.scheme!r} is not allowed (http and https only)")
    host = url.raw_host.decode("ascii")
    if not host:
        raise UrlNotAllowed("the URL has no host")
    port = url.port or (443 if url.scheme == "https" else 80)
    addresses = await resolve(host, port)
    if not addresses:
        raise UrlNotAllowed(f"the host {host!r} cannot be resolved")
    if not allow_private:
        for address in addresses:
            if not address_allowed(address):
                raise UrlNotAllowed(
                    f"the host {host!r} is a private, local or reserved address: not allowed"
                )
    return addresses[0]


async def _pinned_request(
    client: httpx.AsyncClient, url: httpx.URL, allow_private: bool
) -> httpx.Request:
    address = await checked_address(url, allow_private)
    host = url.raw_host.decode("ascii")
    return client.build_request(
        "GET",
        url.copy_with(host=str(address)),
        headers={"Host": url.netloc.decode("ascii")},
        extensions={"sni_hostname": host},
    )


@asynccontextmanager
async def guarded_get(
    client: httpx.AsyncClient,
    url: str,
    *,
    allow_private: bool = False,
    max_redirects: int = MAX_REDIRECTS,
) -> AsyncIterator[httpx.Response]:
    """A streamed GET of `url` that follows redirects itself, checking each hop.

    `client` must not follow redirects on its own (`follow_redirects=False`, the default).
    """
    target = httpx.URL(url)
    for _ in range(max_redirects + 1):
        request = await _pinned_request(client, target, allow_private)
        response = await client.send(request, stream=True)
        location = response.headers.get("location")
        if response.status_code in _REDIRECTS and location:
            await response.aclose()
            target = target.join(location)
            continue
        try:
            yield response
        finally:
            await response.aclose()
        return
    raise UrlNotAllowed(f"more than {max_redirects} redirects")
