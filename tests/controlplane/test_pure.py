"""Pure logic: login throttling, placement, loopback detection, the CSP, cut-offs."""

from __future__ import annotations

from controlplane.placement import plan_placement
from controlplane.web import content_security_policy, is_loopback, same_host


def test_placement_balances_and_waits_without_vms() -> None:
    assert plan_placement({}, ["w1"]) == []
    assert plan_placement({"a": 2, "b": 0}, ["w1", "w2", "w3"]) == [
        ("w1", "b"),
        ("w2", "b"),
        ("w3", "a"),  # tie 2-2: the smaller id
    ]


def test_loopback_hosts() -> None:
    for host in ("127.0.0.1", "127.0.0.1:8080", "localhost", "localhost:80", "::1", "[::1]:8080"):
        assert is_loopback(host), host
    for other in ("10.0.0.1", "example.com", "", None, "127.0.0.1.evil.com", "[::2]:80"):
        assert not is_loopback(other), other


def test_csp_allows_the_relay_and_no_framing() -> None:
    csp = content_security_policy("wss://relay.example.com")
    assert "connect-src 'self' wss://relay.example.com" in csp
    assert "frame-ancestors 'none'" in csp
    assert "'unsafe-eval'" not in csp


def test_csp_allows_the_relay_origin_so_every_node_behind_it_is_reachable() -> None:
    csp = content_security_policy("wss://ffcloud.example.com/nodes/2")
    assert "connect-src 'self' wss://ffcloud.example.com;" in csp
    assert "/nodes/2" not in csp


def test_same_host_compares_the_origin_with_the_host_header() -> None:
    assert same_host("https://ffcloud.example.com", "ffcloud.example.com")
    assert same_host("https://ffcloud.example.com:443", "ffcloud.example.com")
    assert same_host("http://127.0.0.1:8080", "127.0.0.1:8080")
    assert not same_host("https://evil.example", "ffcloud.example.com")
    assert not same_host("http://127.0.0.1:8081", "127.0.0.1:8080")
    assert not same_host("null", "127.0.0.1:8080")
    assert not same_host("https://ffcloud.example.com", "")
    # nginx's $host has no port: the host name decides.
    assert same_host("https://ffcloud.example.com:8443", "ffcloud.example.com")
    assert not same_host("https://evil.example:8443", "ffcloud.example.com")
    assert same_host("http://[::1]:8080", "[::1]:8080")
    assert not same_host("http://[::1]:8081", "[::1]:8080")
