"""Pure logic: login throttling, placement, loopback detection, the CSP, cut-offs."""

from __future__ import annotations

import datetime as dt

from controlplane.coordinator import users_to_cut_off
from controlplane.placement import plan_placement
from controlplane.throttle import LoginThrottle
from controlplane.web import content_security_policy, is_loopback


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_throttle_locks_after_max_failures_within_the_window() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=3, window=60, clock=clock)
    keys = ["user:alice", "ip:1.2.3.4"]
    for _ in range(2):
        throttle.failed(keys)
        clock.now += 10
    assert throttle.retry_after(keys) == 0
    throttle.failed(keys)  # third failure at t=20
    assert throttle.retry_after(keys) == 40  # the first (t=0) leaves the window at t=60
    assert throttle.retry_after(["user:alice"]) == 40
    assert throttle.retry_after(["user:bob"]) == 0
    clock.now = 60.5
    assert throttle.retry_after(keys) == 0  # one failure left the window: two remain


def test_a_good_login_clears_only_the_keys_it_names() -> None:
    clock = Clock()
    throttle = LoginThrottle(max_failures=2, window=60, clock=clock)
    throttle.failed(["user:alice", "ip:1.2.3.4"])
    throttle.failed(["user:alice", "ip:1.2.3.4"])
    throttle.succeeded(["user:alice"])
    assert throttle.retry_after(["user:alice"]) == 0
    assert throttle.retry_after(["ip:1.2.3.4"]) > 0


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
