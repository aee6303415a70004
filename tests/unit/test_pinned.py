"""Requests to checked addresses (pure): the Host and TLS name stay the URL's, the connection goes
to each checked address in turn. No request is sent."""

from __future__ import annotations

from ipaddress import IPv4Address, IPv6Address

import httpx

from chronoverse.egress import Destination
from services.execution_worker.pinned import host_and_tls, targets

NAMED = Destination(
    host="hooks.example.com",
    port=8443,
    addresses=(IPv4Address("192.0.2.10"), IPv6Address("2001:db8::10")),
)


def test_a_named_https_host_keeps_its_name_for_tls_and_host() -> None:
    headers, extensions = host_and_tls(httpx.URL("https://hooks.example.com:8443/x"), NAMED)
    assert headers == {"Host": "hooks.example.com:8443", "Connection": "close"}
    assert extensions == {"sni_hostname": "hooks.example.com"}


def test_plain_http_needs_only_the_host() -> None:
    headers, extensions = host_and_tls(httpx.URL("http://hooks.example.com:8443/x"), NAMED)
    assert headers == {"Host": "hooks.example.com:8443"}
    assert extensions == {}


def test_an_address_literal_is_its_own_tls_name() -> None:
    literal = Destination(host="192.0.2.10", port=443, addresses=(IPv4Address("192.0.2.10"),))
    _, extensions = host_and_tls(httpx.URL("https://192.0.2.10/x"), literal)
    assert extensions == {"sni_hostname": "192.0.2.10"}


def test_each_checked_address_in_turn_and_never_the_name() -> None:
    sent = list(targets(httpx.URL("https://hooks.example.com:8443/x?a=1"), NAMED))
    assert [(str(url), last) for url, last in sent] == [
        ("https://192.0.2.10:8443/x?a=1", False),
        ("https://[2001:db8::10]:8443/x?a=1", True),
    ]
