"""Where a completion webhook may go. Pure: URLs and addresses in, a reason or None out.

A webhook URL is given by whoever submits a batch, and workers POST to it from inside
the network: without rules it reaches Redis, the metadata service or any internal host
(server-side request forgery). So a URL must be `https` (`http` only if
PHONEBATCH_WEBHOOK_ALLOW_HTTP says so) with a host, and no address it stands for may be
private, loopback, link-local, multicast, reserved or unspecified, unless the allowlist
(PHONEBATCH_WEBHOOK_ALLOWLIST: hosts, addresses, networks) names it. Literal addresses
(in every form a resolver accepts: `0x7f000001`, `2130706433`, `127.1`) are refused at
submit; names are checked on every address they resolve to right before the worker
connects (`worker.webhook_pump`), so a name that resolves elsewhere later (DNS
rebinding) is refused too.
"""

from __future__ import annotations

import ipaddress
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from config import Settings
from jobs.batch.urls import safe_url

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Destinations:
    """The rules from the settings: whether `http` is allowed, and what is allowed even
    though it is internal (exact host names, and networks or single addresses)."""

    allow_http: bool = False
    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = field(default=())

    @classmethod
    def parse(cls, allow_http: bool, allowlist: str) -> Destinations:
        hosts, networks = set(), []
        for entry in (e.strip() for e in allowlist.split(",")):
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                hosts.add(entry.lower().rstrip("."))
        return cls(allow_http, frozenset(hosts), tuple(networks))

    def address_problem(self, address: Address) -> str | None:
        """Why a webhook may not go to `address`, or None."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if any(address in network for network in self.networks):
            return None
        internal = (
            address.is_private or address.is_loopback or address.is_link_local
            or address.is_multicast or address.is_reserved or address.is_unspecified
        )  # fmt: skip
        return "it goes to an internal address" if internal else None

    def url_problem(self, url: str) -> str | None:
        """Why a webhook may not go to `url` (checked at submit), or None."""
        try:
            parts = urlsplit(url)
            parts.port  # noqa: B018 - raises on a port out of range
        except ValueError:
            return "it is not a URL"
        schemes = ("https", "http") if self.allow_http else ("https",)
        if parts.scheme.lower() not in schemes:
            allowed = " or ".join(schemes)
            return f"it must be an {allowed} URL (PHONEBATCH_WEBHOOK_ALLOW_HTTP allows http)"
        host = (parts.hostname or "").rstrip(".")
        if not host:
            return "it has no host"
        if host.lower() in self.hosts:
            return None
        if host.lower() == "localhost" or host.lower().endswith(".localhost"):
            return "it goes to an internal address"
        address = literal_address(host)
        return None if address is None else self.address_problem(address)


def literal_address(host: str) -> Address | None:
    """The address a host written as one stands for (any form `inet_aton` reads, so
    `0x7f000001` is 127.0.0.1), or None for a name."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


def destinations(settings: Settings) -> Destinations:
    """The rules the settings give."""
    return Destinations.parse(settings.webhook_allow_http, settings.webhook_allowlist)


def webhook_problem(url: str | None, rules: Destinations) -> str | None:
    """One line saying why a batch may not use this webhook URL (shown without its
    credentials), or None; None for no URL."""
    if url is None:
        return None
    problem = rules.url_problem(url)
    return None if problem is None else f"webhook {safe_url(url)}: {problem}"
