"""A fake ``socket.getaddrinfo`` for the egress guard's tests: no test ever asks real DNS."""

from __future__ import annotations

import socket
from collections.abc import Mapping, Sequence
from typing import Any

from chronoverse.egress import Resolver


def fake_resolver(answers: Mapping[str, Sequence[str]]) -> Resolver:
    """getaddrinfo over a fixed table; an unknown name fails as DNS would."""

    def resolver(host: str, port: int, /) -> list[tuple[Any, Any, Any, Any, Any]]:
        if host not in answers:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return [
            (
                socket.AF_INET6 if ":" in address else socket.AF_INET,
                socket.SOCK_STREAM,
                6,
                "",
                (address, port, 0, 0) if ":" in address else (address, port),
            )
            for address in answers[host]
        ]

    return resolver
