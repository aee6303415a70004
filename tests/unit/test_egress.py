"""The egress policy over resolved addresses: pure functions, a fake resolver, no network."""

from __future__ import annotations

from ipaddress import IPv4Network, IPv6Network, ip_address, ip_network

import pytest

from chronoverse.egress import (
    EgressPolicy,
    check_address,
    check_endpoint,
    literal_refusal,
    policy_from_settings,
    resolve,
)
from chronoverse.errors import ConfigurationError, EgressRefused, UnresolvableHostError
from chronoverse.settings import EgressSettings
from services.execution_worker.settings import Settings as ExecutionSettings
from services.server.settings import Settings as ServerSettings
from tests.resolvers import fake_resolver

LOOPBACK = (IPv4Network("127.0.0.0/8"), IPv6Network("::1/128"))
EVERYTHING = (IPv4Network("0.0.0.0/0"), IPv6Network("::/0"))
SECRET = {"CHRONOVERSE_SECRET_KEYS": "MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI="}


def refused(policy: EgressPolicy, address: str, port: int = 80) -> str | None:
    return check_address(policy, ip_address(address), port)


def test_loopback_is_refused_by_default_and_allowed_by_the_allow_list() -> None:
    assert "loopback" in (refused(EgressPolicy(), "127.0.0.1") or "")
    assert "loopback" in (refused(EgressPolicy(), "::1") or "")
    assert refused(EgressPolicy(allow=LOOPBACK), "127.0.0.1") is None
    assert refused(EgressPolicy(allow=LOOPBACK), "127.3.2.1") is None
    assert refused(EgressPolicy(allow=LOOPBACK), "::1") is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [("10.1.2.3", "private"), ("192.168.1.1", "private"), ("100.64.0.1", "CGNAT")],
)
def test_non_public_ranges_need_the_allow_list(address: str, kind: str) -> None:
    assert kind in (refused(EgressPolicy(), address) or "")
    assert refused(EgressPolicy(allow=(ip_network(address),)), address) is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("169.254.169.254", "metadata"),
        ("169.254.1.1", "link-local"),
        ("fe80::1", "link-local"),
        ("fd00:ec2::254", "metadata"),
        ("0.0.0.0", "unspecified"),
        ("0.1.2.3", "unspecified"),
        ("::", "unspecified"),
        ("224.0.0.1", "multicast"),
        ("ff02::1", "multicast"),
        ("255.255.255.255", "broadcast"),
        ("::ffff:169.254.169.254", "metadata"),
        ("::ffff:0.0.0.0", "unspecified"),
        ("2002:a9fe:a9fe::", "metadata"),  # 6to4 around 169.254.169.254
        ("64:ff9b::a9fe:a9fe", "metadata"),  # NAT64 around it
    ],
)
def test_some_addresses_are_always_refused(address: str, kind: str) -> None:
    assert kind in (refused(EgressPolicy(allow=EVERYTHING), address) or "")


def test_an_ipv4_mapped_address_is_judged_as_ipv4() -> None:
    assert "loopback" in (
        refused(EgressPolicy(allow=(IPv6Network("::/0"),)), "::ffff:7f00:1") or ""
    )
    assert refused(EgressPolicy(allow=LOOPBACK), "::ffff:127.0.0.1") is None


@pytest.mark.parametrize(
    "address",
    [
        "::ffff:0:7f00:1",  # SIIT ::ffff:0:127.0.0.1
        "::ffff:0:127.0.0.1",
        "64:ff9b:1::7f00:1",  # local-use NAT64 around 127.0.0.1
        "64:ff9b:1:ab::7f00:1",
        "64:ff9b::7f00:1",
        "::7f00:1",  # IPv4-compatible
    ],
)
def test_ipv6_forms_that_embed_ipv4_are_judged_by_the_embedded_address(address: str) -> None:
    assert "127.0.0.1" in (refused(EgressPolicy(), address) or "")
    assert "loopback" in (refused(EgressPolicy(), address) or "")
    # Allowing the IPv6 range does not help; allowing the embedded loopback does.
    assert refused(EgressPolicy(allow=(IPv6Network("::/0"),)), address) is not None
    assert refused(EgressPolicy(allow=LOOPBACK), address) is None


@pytest.mark.parametrize(
    ("address", "kind"),
    [
        ("::ffff:0:a9fe:a9fe", "metadata"),
        ("64:ff9b:1::a9fe:a9fe", "metadata"),
        ("::ffff:0:a00:5", "private"),
        ("64:ff9b:1::a00:5", "private"),
    ],
)
def test_embedded_forms_of_refused_ipv4_addresses(address: str, kind: str) -> None:
    assert kind in (refused(EgressPolicy(), address) or "")


def test_embedded_public_ipv4_is_allowed() -> None:
    assert refused(EgressPolicy(), "::ffff:0:5db8:d70e", 443) is None
    assert refused(EgressPolicy(), "64:ff9b:1::5db8:d70e", 443) is None


def test_embedded_forms_hit_the_stacks_own_ports() -> None:
    policy = EgressPolicy(allow=EVERYTHING, denied_endpoints=((LOOPBACK[0], 6379),))
    assert "this Chronoverse stack" in (refused(policy, "::ffff:0:7f00:1", 6379) or "")
    assert "this Chronoverse stack" in (refused(policy, "64:ff9b:1::7f00:1", 6379) or "")


@pytest.mark.parametrize("address", ["fec0::1", "feff:ffff::1", "fec0:0:0:1::5"])
def test_deprecated_site_local_is_not_public(address: str) -> None:
    assert "site-local" in (refused(EgressPolicy(), address) or "")
    assert refused(EgressPolicy(allow=(IPv6Network("fec0::/10"),)), address) is None


def test_the_stacks_own_ports_are_refused_even_on_an_allowed_address() -> None:
    policy = EgressPolicy(allow=EVERYTHING, denied_endpoints=((LOOPBACK[0], 5432),))
    assert "this Chronoverse stack" in (refused(policy, "127.0.0.1", 5432) or "")
    assert "this Chronoverse stack" in (refused(policy, "::ffff:127.0.0.2", 5432) or "")
    assert refused(policy, "127.0.0.1", 8080) is None


def test_public_addresses_are_allowed() -> None:
    assert refused(EgressPolicy(), "93.184.215.14", 443) is None
    assert refused(EgressPolicy(), "2606:2800:21f:cb07:6820:80da:af6b:8b2c", 443) is None


def test_a_public_stack_endpoint_is_still_refused() -> None:
    policy = EgressPolicy(denied_endpoints=((ip_network("93.184.215.14"), 9092),))
    assert refused(policy, "93.184.215.14", 9092) is not None
    assert refused(policy, "93.184.215.14", 443) is None


def test_an_endpoint_is_refused_when_any_resolved_address_is() -> None:
    # A rebinding name answers with a public and a private address: either may be used next.
    resolver = fake_resolver({"mixed.example": ["93.184.215.14", "10.0.0.5"]})
    with pytest.raises(EgressRefused) as info:
        check_endpoint(EgressPolicy(), "http://mixed.example/", resolver)
    assert "10.0.0.5" in info.value.reason and "mixed.example" in info.value.reason


def test_an_allowed_endpoint_yields_its_checked_addresses() -> None:
    resolver = fake_resolver({"api.example": ["2606:2800::1", "93.184.215.14", "93.184.215.14"]})
    destination = check_endpoint(EgressPolicy(), "https://api.example/health", resolver)
    assert destination.host == "api.example" and destination.port == 443
    assert destination.address == ip_address("2606:2800::1")
    assert destination.addresses == (ip_address("2606:2800::1"), ip_address("93.184.215.14"))


def test_a_name_that_does_not_resolve_is_its_own_error() -> None:
    with pytest.raises(UnresolvableHostError):
        check_endpoint(EgressPolicy(), "http://nowhere.example/", fake_resolver({}))


@pytest.mark.parametrize("host", ["0x7f000001", "2130706433", "127.1", "0177.0.0.1", "[::1]"])
def test_literal_forms_are_their_real_address(host: str) -> None:
    # No resolver call: the C library's literal forms are parsed here, as getaddrinfo would.
    [address] = resolve(host.strip("[]"), 80, fake_resolver({}))
    assert address.is_loopback
    reason = literal_refusal(EgressPolicy(), f"http://{host}:8080/")
    assert reason is not None and "loopback" in reason
    assert literal_refusal(EgressPolicy(allow=LOOPBACK), f"http://{host}:8080/") is None


def test_literal_refusal_at_creation() -> None:
    policy = EgressPolicy(allow=EVERYTHING, denied_endpoints=((LOOPBACK[0], 5432),))
    assert "metadata" in (literal_refusal(policy, "http://169.254.169.254/latest/") or "")
    assert "metadata" in (literal_refusal(policy, "http://[fd00:ec2::254]/") or "")
    assert literal_refusal(policy, "http://127.0.0.1:5432/") is not None
    assert literal_refusal(policy, "http://127.0.0.1:8080/healthz") is None
    # Host names are only known at run time.
    assert literal_refusal(EgressPolicy(), "http://localhost:5432/") is None
    assert literal_refusal(EgressPolicy(), "http://example.com:99999/") is not None


def test_the_policy_from_settings_denies_the_stack_and_keeps_the_api_port() -> None:
    settings = ExecutionSettings.from_environ(
        {
            **SECRET,
            "CHRONOVERSE_EGRESS_ALLOW_CIDRS": "127.0.0.0/8,::1/128,10.0.0.0/8",
            "CHRONOVERSE_DATABASE_URL": "postgresql://u:p@db.internal:6543/chronoverse",
            "CHRONOVERSE_REDIS_URL": "redis://127.0.0.1:6379/0",
            "CHRONOVERSE_KAFKA_BOOTSTRAP_SERVERS": "PLAINTEXT://broker-a:9092,10.0.0.9",
            "CHRONOVERSE_DOCKER_HOST": "tcp://10.0.0.8:2375",
            "CHRONOVERSE_EGRESS_DENY": "vault.internal:8200,[fd00::/8]:6379",
        }
    )
    resolver = fake_resolver({"db.internal": ["10.0.0.7"], "broker-a": ["10.0.0.6"]})
    policy = policy_from_settings(settings, resolver=resolver)  # vault.internal: a warning
    assert policy.allow == (
        ip_network("127.0.0.0/8"),
        ip_network("::1/128"),
        ip_network("10.0.0.0/8"),
    )
    for address, port in [
        ("10.0.0.7", 6543),
        ("127.0.0.1", 6379),
        ("127.9.9.9", 6379),
        ("::1", 6379),
        ("10.0.0.6", 9092),
        ("10.0.0.9", 9092),
        ("10.0.0.8", 2375),
        ("127.0.0.1", 9103),  # this worker's health port
        ("127.0.0.1", 9101),
        ("fd00::1", 6379),
    ]:
        assert refused(policy, address, port) is not None, (address, port)
    assert refused(policy, "127.0.0.1", 8080) is None
    assert refused(policy, "10.0.0.7", 80) is None


def test_the_servers_policy_uses_the_endpoints_it_knows() -> None:
    settings = ServerSettings.from_environ({**SECRET, "CHRONOVERSE_EGRESS_ALLOW_CIDRS": "::/0"})
    policy = policy_from_settings(settings, resolver=fake_resolver({}))
    assert refused(policy, "::1", 5432) is not None  # the default database URL: 127.0.0.1
    assert refused(policy, "::1", 6379) is not None
    assert refused(policy, "::1", 8080) is None


def test_the_allow_list_setting_is_parsed_and_checked() -> None:
    assert EgressSettings.from_environ({}).egress_allow_networks == ()
    settings = EgressSettings.from_environ(
        {"CHRONOVERSE_EGRESS_ALLOW_CIDRS": " 127.0.0.0/8 , ::1/128,"}
    )
    assert settings.egress_allow_networks == (ip_network("127.0.0.0/8"), ip_network("::1/128"))
    with pytest.raises(ConfigurationError) as info:
        EgressSettings.from_environ({"CHRONOVERSE_EGRESS_ALLOW_CIDRS": "127.0.0.0/8,10.0.0.1/8"})
    assert info.value.setting == "CHRONOVERSE_EGRESS_ALLOW_CIDRS"
    assert "10.0.0.1/8" in info.value.message
    with pytest.raises(ConfigurationError, match="CHRONOVERSE_EGRESS_ALLOW_CIDRS"):
        EgressSettings.from_environ({"CHRONOVERSE_EGRESS_ALLOW_CIDRS": "localhost"})


def test_the_deny_setting_is_checked() -> None:
    settings = EgressSettings.from_environ({"CHRONOVERSE_EGRESS_DENY": "a:1,[::1]:2,10.0.0.0/8:3"})
    assert settings.egress_deny_endpoints == (("a", 1), ("::1", 2), ("10.0.0.0/8", 3))
    for bad in ["a", "a:0", "a:http", "::1:80", "10.0.0.1/8:3"]:
        with pytest.raises(ConfigurationError, match="CHRONOVERSE_EGRESS_DENY"):
            EgressSettings.from_environ({"CHRONOVERSE_EGRESS_DENY": bad})
