"""Pure logic: login throttling, placement, loopback detection, the CSP, cut-offs."""

from __future__ import annotations

import datetime as dt

from controlplane.coordinator import users_to_cut_off
from controlplane.placement import plan_placement
from controlplane.web import content_security_policy, is_loopback


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


def test_each_password_change_cuts_a_user_off_once() -> None:
    t1 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    t2 = t1 + dt.timedelta(seconds=3)
    # A fresh process acts on every change it is shown.
    assert users_to_cut_off({}, {"alice": t1, "bob": t1}) == ["alice", "bob"]
    # Acted on: not again.
    assert users_to_cut_off({"alice": t1, "bob": t1}, {"alice": t1, "bob": t1}) == []
    # Changed again: again; and a change dated earlier (another host's clock) counts too.
    assert users_to_cut_off({"alice": t1, "bob": t2}, {"alice": t2, "bob": t1}) == [
        "alice",
        "bob",
    ]
