"""Sending an HTTP request to an address the egress guard checked, not to whatever the name
resolves to next (HEARTBEAT requests and webhook deliveries).

The URL's host is replaced by each checked address in turn; the Host header and TLS (SNI, and
the certificate check) keep the original name, so a resolver that answers differently the next
time (DNS rebinding) cannot steer the connection elsewhere.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx

from chronoverse.egress import Destination, parse_literal


def host_and_tls(url: httpx.URL, destination: Destination) -> tuple[dict[str, str], dict[str, Any]]:
    """The headers and httpx extensions a request for ``url`` needs when it goes to one of
    ``destination``'s checked addresses: its Host, and the name its certificate is checked
    against (the name, or the address for a URL that named one)."""
    headers = {"Host": url.netloc.decode("ascii")}
    extensions: dict[str, Any] = {}
    if url.scheme == "https":
        literal = parse_literal(destination.host)
        extensions["sni_hostname"] = (
            url.raw_host.decode("ascii") if literal is None else str(destination.address)
        )
        # The pool keys connections by address: a kept-alive connection verified for another
        # name on the same address must not carry this request.
        headers["Connection"] = "close"
    return headers, extensions


def targets(url: httpx.URL, destination: Destination) -> Iterator[tuple[httpx.URL, bool]]:
    """``url`` sent to each checked address in turn, and whether it is the last one (a connection
    refused by one address, say without an IPv6 route, moves on to the next)."""
    last = len(destination.addresses) - 1
    for index, address in enumerate(destination.addresses):
        yield url.copy_with(host=str(address), port=destination.port), index == last
