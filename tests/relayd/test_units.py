"""relayd's small pure parts: settings, token bucket, outbox, handshake decisions."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from relayd.handshake import Accepted, Refused, check_handshake
from relayd.outbox import Outbox, OutboxClosed, SharedFrames
from relayd.ratelimit import TokenBucket
from relayd.relay import Relay
from relayd.settings import DEFAULT_ORIGINS, Settings, parse_settings
from tests.support.keys import KeyRing
from tests.support.stubpeer import drain, frames_of, room_with_clients
from wire.envelope import vm_frame
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


async def test_outbox_poke_wakes_the_consumer_with_nothing_queued() -> None:
    box = Outbox(max_messages=5, max_chars=100)
    box.poke()
    with trio.fail_after(1):
        await box.wait()  # returns: the writer has other work (its cursors)
    box.poke()
    assert box.take_entries(10) == []  # a take clears the poke
    with trio.move_on_after(0.05) as waited:
        await box.wait()
    assert waited.cancelled_caught
    assert box.offer("x")
    assert box.take_entries(10) == ["x"]


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


async def test_a_vm_read_reaches_every_client_in_order_as_shared_chunks() -> None:
    relay = Relay(Settings(), TokenVerifier({}, issuer="ffcloud"))
    vm, clients = room_with_clients(relay, [100, 100])
    frames = [relay_frame(1), relay_frame(2), relay_frame(3, "status"), *map(relay_frame, (4, 5))]
    relay.vm_frames(vm, [*frames])
    first, second = (drain(relay, c) for c in clients)
    # The hot path's run is one chunk of the log; the status frame between
    # them takes the full path, its own chunk.
    assert [e.frames for e in first if isinstance(e, SharedFrames)] == [
        frames[:2],
        frames[2:3],
        frames[3:],
    ]
    assert all(a is b for a, b in zip(first, second, strict=True))  # one object for both
    # Counted for the metrics once each (the hello came in too).
    assert relay.stats.in_count == {"vm:hello": 1, "vm:claude_message": 4, "vm:status": 1}
    assert relay.stats.in_chars["vm:claude_message"] == sum(len(f) for f in frames) - len(frames[2])
    room = relay.router.find_room("w1")
    assert room is not None
    assert room.status == "running"


async def test_a_client_with_a_tiny_queue_still_gets_every_frame_from_the_log() -> None:
    relay = Relay(Settings(), TokenVerifier({}, issuer="ffcloud"))
    vm, (fast, small) = room_with_clients(relay, [100, 1])
    frames = [relay_frame(seq) for seq in range(1, 6)]
    relay.vm_frames(vm, [*frames])
    relay.vm_frames(vm, [relay_frame(6)])
    assert not small.closing
    for client in (fast, small):
        assert frames_of(drain(relay, client)) == [*frames, relay_frame(6)]


async def test_a_writer_reads_its_cursor_in_pieces_and_the_rest_stays_ready() -> None:
    relay = Relay(Settings(), TokenVerifier({}, issuer="ffcloud"))
    vm, (client,) = room_with_clients(relay, [100])
    frames = [relay_frame(seq) for seq in range(1, 41)]
    for first in range(0, 40, 8):
        relay.vm_frames(vm, [*frames[first : first + 8]])
    (cursor,) = client.ready
    got, chars = relay.read_log(cursor, 3 * len(frames[0]))
    assert cursor.awake  # more to come
    assert chars >= 3 * len(frames[0])
    rest = drain(relay, client)
    assert frames_of(got) + frames_of(rest) == frames
    assert not client.ready


async def test_made_up_types_do_not_grow_the_metrics() -> None:
    relay = Relay(Settings(), TokenVerifier({}, issuer="ffcloud"))
    vm, (client,) = room_with_clients(relay, [100])
    for i in range(50):
        await relay._client_frame(client, f'{{"type":"made_up_{i}"}}')
    relay.vm_frames(vm, [f'{{"type":"vm_made_up_{i}"}}' for i in range(50)])
    assert relay.stats.in_count["client:other"] == 50
    assert relay.stats.in_count["vm:other"] == 50
    assert not [k for k in relay.stats.in_count if "made_up" in k]
    assert len(client.errors) == 50  # each still gets its unknown_type error
