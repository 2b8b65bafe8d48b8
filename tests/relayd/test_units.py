"""relayd's small pure parts: settings, token bucket, outbox, handshake decisions."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from relayd.handshake import Accepted, Refused, check_handshake
from relayd.outbox import Outbox, OutboxClosed
from relayd.ratelimit import TokenBucket
from relayd.settings import DEFAULT_ORIGINS, Settings, parse_settings
from tests.support.keys import KeyRing
from wire.tokens import TokenVerifier


def test_settings_defaults_env_and_flags() -> None:
    assert parse_settings([], {}) == Settings()
    assert Settings().allowed_origins == DEFAULT_ORIGINS
    env = {
        "RELAYD_LISTEN": "0.0.0.0:9000",
        "RELAYD_ALLOWED_ORIGIN": "https://a.example, https://b.example",
        "RELAYD_CLIENT_RATE": "2.5",
        "RELAYD_CONTROL_SOCKET_MODE": "660",
    }
    settings = parse_settings(["--listen", "127.0.0.1:1", "--max-vm-frame", "99"], env)
    assert settings.listen == "127.0.0.1:1"  # the flag wins over the variable
    assert settings.allowed_origins == ("https://a.example", "https://b.example")
    assert settings.client_rate == 2.5
    assert settings.control_socket_mode == 0o660
    assert settings.max_vm_frame == 99
    repeated = parse_settings(
        ["--allowed-origin", "https://x", "--allowed-origin", "https://y"], {}
    )
    assert repeated.allowed_origins == ("https://x", "https://y")


@pytest.mark.parametrize(
    "argv",
    [["--listen", "nohost"], ["--control-socket-mode", "777"], ["--client-rate", "fast"]],
)
def test_settings_refuse_bad_values(argv: list[str]) -> None:
    with pytest.raises(SystemExit):
        parse_settings(argv, {})


def test_token_bucket() -> None:
    bucket = TokenBucket(rate=2, burst=3, now=0)
    assert [bucket.allow(0) for _ in range(4)] == [True, True, True, False]
    assert bucket.allow(0.5)  # one token back after half a second
    assert not bucket.allow(0.5)
    assert [bucket.allow(100) for _ in range(4)] == [True, True, True, False]  # capped at burst


async def test_outbox_bounds_and_backpressure() -> None:
    box = Outbox(max_messages=4, max_chars=100)
    assert all(box.offer("a") for _ in range(4))
    assert not box.offer("a")  # full by count
    assert await box.get_batch(1000) == ["a"] * 4
    assert box.offer("x" * 500)  # one frame always fits, however large
    assert not box.offer("y")  # full by characters
    assert box.take(1000) == ["x" * 500]
    # put() waits while the queue is half full; offer() still has the other half.
    await box.put("p1")
    await box.put("p2")
    entered = trio.Event()
    done = trio.Event()

    async def third() -> None:
        entered.set()
        await box.put("p3")
        done.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(third)
        await entered.wait()
        await trio.testing.wait_all_tasks_blocked()
        assert not done.is_set()
        assert box.offer("relay's own")
        assert box.take(4) == ["p1", "p2"]
        await done.wait()
    assert box.take(1000) == ["relay's own", "p3"]
    box.close()
    assert not box.offer("z")
    with pytest.raises(OutboxClosed):
        await box.get_batch(10)


def test_handshake_decisions() -> None:
    keys = KeyRing()
    verifier = TokenVerifier.from_jwks(keys.jwks(), issuer=keys.issuer)
    good = [(b"authorization", f"Bearer {keys.client_token('u1')}".encode())]

    def check(target: str, headers: list[tuple[bytes, bytes]], protocols: list[str]) -> object:
        return check_handshake(
            target=target,
            headers=headers,
            subprotocols=protocols,
            verifier=verifier,
            allowed_origins=DEFAULT_ORIGINS,
        )

    accepted = check("/v1/client", good, ["ffcloud.v1"])
    assert isinstance(accepted, Accepted)
    assert accepted.claims.sub == "u1"
    origin = [(b"origin", b"http://LOCALHOST:8080/")]
    assert isinstance(check("/v1/client", good + origin, ["ffcloud.v1"]), Accepted)
    two_origins = [*origin, (b"origin", b"http://evil")]
    refused = check("/v1/client", good + two_origins, ["ffcloud.v1"])
    assert isinstance(refused, Refused)
    assert refused.status == 403
    both = check("/v1/client", good, ["ffcloud.v1", f"bearer.{keys.client_token('u2')}"])
    assert isinstance(both, Refused)
    assert both.reason == "token_ambiguous"
    basic = check("/v1/client", [(b"authorization", b"Basic abc")], ["ffcloud.v1"])
    assert isinstance(basic, Refused)
    assert basic.status == 401
    harmless_query = check("/v1/client?v=2", good, ["ffcloud.v1"])
    assert isinstance(harmless_query, Accepted)
