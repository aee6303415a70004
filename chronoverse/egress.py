"""The HEARTBEAT egress guard: which addresses a job's HTTP request may connect to.

Everything here is a pure decision over addresses that are already resolved, except
:func:`resolve` and the start-up resolution of the stack's own host names in
:func:`policy_from_settings`; both take the resolver as an argument, so tests never touch DNS.

The rules, in order (see docs/security.md):

1. an IPv4-mapped IPv6 address (``::ffff:a.b.c.d``) is judged as its IPv4 address, and so is
   every other IPv6 form that embeds one (6to4, NAT64 ``64:ff9b::/96`` and ``64:ff9b:1::/48``,
   SIIT ``::ffff:0:a.b.c.d``, IPv4-compatible ``::a.b.c.d``);
2. link-local, cloud-metadata, unspecified, multicast and broadcast addresses are always refused,
   and so is every port of the stack's own services (``denied_endpoints``), whatever the
   allow-list says;
3. an address in the operator's allow-list is allowed;
4. a public address is allowed; anything else (loopback, private, shared, reserved, the
   deprecated site-local ``fec0::/10``) is refused.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network, IPv6Address, IPv6Network
from typing import Any, Protocol
from urllib.parse import urlsplit

import psycopg
from psycopg.conninfo import conninfo_to_dict

from chronoverse.errors import EgressRefused, UnresolvableHostError
from chronoverse.settings import (
    DockerSettings,
    EgressSettings,
    HealthSettings,
    KafkaSettings,
    PostgresSettings,
    RedisSettings,
    split_host_port,
)

logger = logging.getLogger(__name__)

IPAddress = IPv4Address | IPv6Address
IPNetwork = IPv4Network | IPv6Network

LOOPBACK: tuple[IPNetwork, ...] = (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128"))
_LINK_LOCAL = (IPv4Network("169.254.0.0/16"), IPv6Network("fe80::/10"))
# 169.254.169.254 is link-local anyway; AWS also answers on fd00:ec2::254 (a private range).
_METADATA = (IPv4Address("169.254.169.254"), IPv6Address("fd00:ec2::254"))
# Linux connects 0.0.0.0 and :: to the host itself; 0.0.0.0/8 is "this network".
_UNSPECIFIED = (IPv4Network("0.0.0.0/8"), IPv6Network("::/128"))
_BROADCAST = IPv4Address("255.255.255.255")
# IPv6 forms that carry an IPv4 address some gateway may deliver to: judged as that address too.
_NAT64 = IPv6Network("64:ff9b::/96")
# Local-use NAT64 (RFC 8215): the IPv4 address is the last 32 bits.
_LOCAL_NAT64 = IPv6Network("64:ff9b:1::/48")
# SIIT's IPv4-translated form (RFC 2765), ::ffff:0:a.b.c.d.
_IPV4_TRANSLATED = IPv6Network("::ffff:0:0:0/96")
_IPV4_COMPATIBLE = IPv6Network("::/96")
# Deprecated site-local (RFC 3879): Python calls it global, but routers may still deliver it
# inside a site.
_SITE_LOCAL = IPv6Network("fec0::/10")

# The stack's ports that are open on loopback whatever the settings say: the workers' health
# and metrics listeners (their defaults) and a Docker engine's TCP API.
HEALTH_PORTS = (9101, 9102, 9103, 9104)
DOCKER_PORTS = (2375, 2376)
_DEFAULT_PORTS = {"http": 80, "https": 443}


class Resolver(Protocol):
    """``socket.getaddrinfo``, or a fake of it: the fifth item of each answer is the sockaddr."""

    def __call__(self, host: str, port: int, /) -> Sequence[tuple[Any, Any, Any, Any, Any]]: ...


@dataclass(frozen=True, kw_only=True)
class EgressPolicy:
    """What a HEARTBEAT may connect to. The empty policy allows public addresses only."""

    allow: tuple[IPNetwork, ...] = ()
    """Operator allow-list of CIDRs governing loopback, private and other non-public ranges."""
    denied_endpoints: tuple[tuple[IPNetwork, int], ...] = ()
    """The stack's own services: ``(network, port)`` pairs refused even if ``allow`` covers them."""


@dataclass(frozen=True, kw_only=True)
class Destination:
    """Where a checked endpoint may be connected to: every address was checked."""

    host: str
    """The URL's host, as the Host header and TLS should name it (no brackets)."""
    port: int
    addresses: tuple[IPAddress, ...]
    """In the resolver's order; connect to these, never to a fresh resolution of ``host``."""

    @property
    def address(self) -> IPAddress:
        """The first address to connect to."""
        return self.addresses[0]


def check_address(policy: EgressPolicy, address: IPAddress, port: int) -> str | None:
    """Why ``policy`` refuses a connection to ``address:port``, or None when it is allowed."""
    address = _unmapped(address)
    if address in _METADATA:
        return f"{address} is a cloud metadata address"
    if _within(address, _LINK_LOCAL):
        return f"{address} is a link-local address"
    if _within(address, _UNSPECIFIED):
        return f"{address} is an unspecified address"
    if address.is_multicast:
        return f"{address} is a multicast address"
    if address == _BROADCAST:
        return f"{address} is the broadcast address"
    for network, denied_port in policy.denied_endpoints:
        if port == denied_port and address in network:
            return f"{_join(address, port)} is a service of this Chronoverse stack"
    embedded = _embedded_ipv4(address)
    if embedded is not None:
        # Judged by the address it embeds, which is where a gateway would deliver it.
        reason = check_address(policy, embedded, port)
        if reason is not None:
            return f"{address} embeds {embedded}, and {reason}"
        return None
    if _within(address, policy.allow):
        return None
    if address.is_global and address not in _SITE_LOCAL:
        return None
    return f"{address} is {_kind(address)}, which CHRONOVERSE_EGRESS_ALLOW_CIDRS does not allow"


def parse_literal(host: str) -> IPAddress | None:
    """The address a host is a literal for, in any form the C library accepts (``127.1``,
    ``0x7f000001``, ``2130706433``, ``[::1]``), or None for a host name."""
    bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    try:
        return _unmapped(ipaddress.ip_address(bare))
    except ValueError:
        pass
    try:
        # What getaddrinfo does with an IPv4 literal: shorthand, hex and octal forms included.
        return IPv4Address(socket.inet_aton(bare))
    except (OSError, ValueError):
        return None


def resolve(host: str, port: int, resolver: Resolver = socket.getaddrinfo) -> list[IPAddress]:
    """The addresses of ``host`` without duplicates, in the resolver's order (the only I/O)."""
    literal = parse_literal(host)
    if literal is not None:
        return [literal]
    try:
        answers = resolver(host, port)
    except (OSError, UnicodeError) as exc:
        raise UnresolvableHostError(host) from exc
    addresses: list[IPAddress] = []
    for *_, sockaddr in answers:
        if not isinstance(sockaddr[0], str):
            continue
        try:
            # A scope ("fe80::1%eth0") says which interface; the address is what is judged.
            address = _unmapped(ipaddress.ip_address(sockaddr[0].partition("%")[0]))
        except ValueError:
            continue
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UnresolvableHostError(host)
    return addresses


def endpoint_host_port(url: str) -> tuple[str, int]:
    """The host (no brackets) and port an http(s) URL connects to, or EgressRefused."""
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise EgressRefused("the URL is not valid") from exc
    default = _DEFAULT_PORTS.get(parts.scheme.lower())
    if default is None or not parts.hostname:
        raise EgressRefused("only http:// and https:// URLs with a host can be reached")
    try:
        port = parts.port
    except ValueError as exc:
        raise EgressRefused("the URL's port is not a number from 1 to 65535") from exc
    if port == 0:
        raise EgressRefused("the URL's port is not a number from 1 to 65535")
    return parts.hostname, default if port is None else port


def check_endpoint(
    policy: EgressPolicy, url: str, resolver: Resolver = socket.getaddrinfo
) -> Destination:
    """Resolve the URL's host and check every address: one refused address refuses the endpoint,
    since a resolver that answers with several may hand any of them to the next lookup.

    Raises EgressRefused, or UnresolvableHostError when the host has no address.
    """
    host, port = endpoint_host_port(url)
    addresses = resolve(host, port, resolver)
    literal = parse_literal(host) is not None
    for address in addresses:
        reason = check_address(policy, address, port)
        if reason is not None:
            if literal:
                raise EgressRefused(reason)
            raise EgressRefused(
                f"{host} resolves to {address}, and {reason}",
                public_reason=f"{host} resolves to an address the egress policy does not allow "
                "(see CHRONOVERSE_EGRESS_ALLOW_CIDRS)",
            )
    return Destination(host=host, port=port, addresses=tuple(addresses))


def literal_refusal(policy: EgressPolicy, url: str) -> str | None:
    """At creation, without DNS: why an endpoint whose host is an IP literal is refused.

    None for a host name (checked when the job runs) and for an allowed address.
    """
    try:
        host, port = endpoint_host_port(url)
    except EgressRefused as exc:
        return exc.reason
    address = parse_literal(host)
    if address is None:
        return None
    return check_address(policy, address, port)


def policy_from_settings(
    settings: EgressSettings, *, resolver: Resolver = socket.getaddrinfo
) -> EgressPolicy:
    """The policy for a process: the allow-list, and the stack endpoints its settings name.

    A service's settings name the stack endpoints they know (the server's have no Kafka or
    Docker); host names among them are resolved once, here.
    """
    denied: dict[tuple[IPNetwork, int], None] = {}
    for host, port in stack_endpoints(settings):
        for network in _stack_networks(host, port, resolver):
            denied[(network, port)] = None
    policy = EgressPolicy(allow=settings.egress_allow_networks, denied_endpoints=tuple(denied))
    logger.info(
        "egress policy: allowing public addresses and %s; refusing %d stack endpoint(s)",
        ", ".join(str(n) for n in policy.allow) or "nothing else",
        len(policy.denied_endpoints),
        extra={"action": "egress_policy"},
    )
    return policy


def stack_endpoints(settings: EgressSettings) -> list[tuple[str, int]]:
    """``(host, port)`` of the stack's own services found in ``settings``, plus the operator's
    extra list. A host is a name, an address or (from the operator) a CIDR."""
    endpoints = list(settings.egress_deny_endpoints)
    if isinstance(settings, PostgresSettings):
        endpoints += _postgres_endpoints(settings.database_url)
    if isinstance(settings, RedisSettings):
        endpoints += _url_endpoints(settings.redis_url, 6379)
    if isinstance(settings, KafkaSettings):
        for server in settings.kafka_bootstrap_servers.split(","):
            endpoints += _server_endpoints(server.strip().rpartition("://")[2], 9092)
    if isinstance(settings, DockerSettings) and settings.docker_host:
        if settings.docker_host.startswith("tcp://"):
            endpoints += _url_endpoints(settings.docker_host, 2375)
    if isinstance(settings, HealthSettings) and settings.health_port:
        endpoints += [("localhost", settings.health_port)]
        endpoints += [(settings.health_host, settings.health_port)]
    endpoints += [("localhost", port) for port in (*HEALTH_PORTS, *DOCKER_PORTS)]
    return list(dict.fromkeys(endpoints))


def _postgres_endpoints(database_url: str) -> list[tuple[str, int]]:
    try:
        params = conninfo_to_dict(database_url)
    except psycopg.Error:
        logger.warning(
            "egress policy: cannot read the Postgres host from the database URL",
            extra={"action": "egress_stack_unknown"},
        )
        return []
    # No host at all means libpq's Unix socket.
    hosts = str(params.get("hostaddr") or params.get("host") or "").split(",")
    ports = str(params.get("port") or "5432").split(",")
    if len(ports) == 1:
        ports *= len(hosts)
    return [
        (host, int(port) if port.isdigit() else 5432)
        for host, port in zip(hosts, ports, strict=False)
        # A directory is a Unix socket: not reachable over HTTP.
        if host and not host.startswith("/")
    ]


def _url_endpoints(url: str, default_port: int) -> list[tuple[str, int]]:
    parts = urlsplit(url)
    if not parts.hostname:
        return []  # unix:// and the like
    try:
        return [(parts.hostname, parts.port or default_port)]
    except ValueError:
        return []


def _server_endpoints(server: str, default_port: int) -> list[tuple[str, int]]:
    try:
        return [split_host_port(server, default_port)] if server else []
    except ValueError:
        return []


def _stack_networks(host: str, port: int, resolver: Resolver) -> list[IPNetwork]:
    """The networks one stack endpoint is reachable on, as far as a job could tell."""
    if "/" in host:
        return [ipaddress.ip_network(host)]
    if _is_local_name(host):
        return list(LOOPBACK)
    try:
        addresses = resolve(host, port, resolver)
    except UnresolvableHostError:
        logger.warning(
            "egress policy: cannot resolve the stack's %s; its port %d is not guarded there",
            host,
            port,
            extra={"action": "egress_stack_unresolved", "host": host, "port": port},
        )
        return []
    networks: list[IPNetwork] = []
    for address in addresses:
        if address.is_loopback or address.is_unspecified:
            # A service listening on one loopback address (or on all) answers on every one.
            networks += LOOPBACK
        else:
            networks.append(ipaddress.ip_network(address))
    return networks


def _is_local_name(host: str) -> bool:
    name = host.lower().rstrip(".")
    return name in {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"} or (
        name.endswith(".localhost")
    )


def _unmapped(address: IPAddress) -> IPAddress:
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _embedded_ipv4(address: IPAddress) -> IPv4Address | None:
    if not isinstance(address, IPv6Address):
        return None
    if address.sixtofour is not None:
        return address.sixtofour
    if (
        address in _NAT64
        or address in _LOCAL_NAT64
        or address in _IPV4_TRANSLATED
        or (address in _IPV4_COMPATIBLE and int(address) > 1)
    ):
        return IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def _within(address: IPAddress, networks: Iterable[IPNetwork]) -> bool:
    return any(address in network for network in networks)


def _kind(address: IPAddress) -> str:
    if address.is_loopback:
        return "a loopback address"
    if isinstance(address, IPv6Address) and address in _SITE_LOCAL:
        return "a deprecated site-local address"
    if isinstance(address, IPv4Address) and address in IPv4Network("100.64.0.0/10"):
        return "a shared (CGNAT) address"
    if address.is_private:
        return "a private address"
    if address.is_reserved:
        return "a reserved address"
    return "not a public address"


def _join(address: IPAddress, port: int) -> str:
    return f"[{address}]:{port}" if isinstance(address, IPv6Address) else f"{address}:{port}"
