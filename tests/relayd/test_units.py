"""relayd's small pure parts: settings, token bucket, outbox, handshake decisions."""

from __future__ import annotations

from typing import cast

import pytest
import trio
import trio.testing

from relayd.handshake import Accepted, Refused, check_handshake
from relayd.outbox import Outbox, OutboxClosed, SharedFrames
from relayd.ratelimit import TokenBucket
from relayd.relay import Relay
from relayd.settings import DEFAULT_ORIGINS, Settings, parse_settings
from tests.support.keys import KeyRing
from tests.support.stubpeer import StubPeer, room_with_clients
from wire.envelope import vm_frame
from wire.protocol import CloseCode
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


def test_outbox_shared_frames_count_as_their_frames() -> None:
    box = Outbox(max_messages=5, max_chars=100)
    shared = SharedFrames(["ab", "cd", "ef"], 6)
    assert box.offer("x")
    assert box.offer_shared(shared)
    assert (len(box), box.chars) == (4, 7)
    # Too many to fit whole: as many as fit one by one, and False (too slow).
    assert not box.offer_shared(SharedFrames(["g", "h"], 2))
    assert len(box) == 5
    entries = box.take_entries(1000)
    assert entries == ["x", shared, "g"]
    assert (len(box), box.chars) == (0, 0)
    assert box.offer_shared(shared)
    assert box.take(1000) == ["ab", "cd", "ef"]  # take() gives the frames themselves
    box.close()
    assert not box.offer_shared(shared)


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


def relay_frame(seq: int, kind: str = "claude_message") -> str:
    return vm_frame(kind, "w1", seq=seq, epoch="e1", fields={"status": "running"})


async def test_a_vm_read_reaches_every_client_in_order_as_shared_entries() -> None:
    relay = Relay(Settings(), TokenVerifier({}, issuer="ffcloud"))
    vm, clients = room_with_clients(relay, [100, 100])
    frames = [relay_frame(1), relay_frame(2), relay_frame(3, "status"), *map(relay_frame, (4, 5))]
    before = relay.stats.messages_out
    relay.vm_frames(vm, [*frames])
    first, second = (c.outbox.take_entries(1 << 20) for c in clients)
    # The hot path's frames are held and joined; the status frame between them
    # takes the full path, which delivers what was held first.
    assert [e.frames for e in first if isinstance(e, SharedFrames)] == [
        frames[:2],
        frames[2:3],
        frames[3:],
    ]
    assert all(a is b for a, b in zip(first, second, strict=True))  # one object for both
    assert relay.stats.messages_out - before == 10
    # Counted for the metrics once each, in as out (the hello came in too).
    assert relay.stats.in_count == {"vm:hello": 1, "vm:claude_message": 4, "vm:status": 1}
    assert relay.stats.in_chars["vm:claude_message"] == sum(len(f) for f in frames) - len(frames[2])
    assert relay.rooms["w1"].status == "running"


async def test_a_client_too_slow_for_a_read_is_closed_and_the_others_get_it_all() -> None:
    relay = Relay(Settings(), TokenVerifier({}, issuer="ffcloud"))
    vm, (fast, slow) = room_with_clients(relay, [100, 3])
    frames = [relay_frame(seq) for seq in range(1, 6)]
    relay.vm_frames(vm, [*frames])
    assert slow.close_code == CloseCode.TOO_SLOW
    assert relay.rooms["w1"].clients == [fast]
    assert fast.outbox.take(1 << 20) == frames


async def test_made_up_types_do_not_grow_the_metrics() -> None:
    relay = Relay(Settings(), TokenVerifier({}, issuer="ffcloud"))
    vm, (client,) = room_with_clients(relay, [100])
    for i in range(50):
        await relay._client_frame(client, f'{{"type":"made_up_{i}"}}')
    relay.vm_frames(vm, [f'{{"type":"vm_made_up_{i}"}}' for i in range(50)])
    assert relay.stats.in_count["client:other"] == 50
    assert relay.stats.in_count["vm:other"] == 50
    assert not [k for k in relay.stats.in_count if "made_up" in k]
    assert len(cast(StubPeer, client).errors) == 50  # each still gets its unknown_type error
