"""relayd's WebSocket connection over an in-memory stream: messages, control frames, closing."""

from __future__ import annotations

import struct

import pytest
import trio
import trio.testing

from relayd.wsconn import ConnectionClosed, WebSocket, encode_close_frame
from relayd.wsframes import encode_text_frame
from relayd.wsparse import OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT
from tests.relayd.test_wsparse import frame


def pair(limit: int = 100, pending: bytes = b"") -> tuple[trio.abc.Stream, WebSocket]:
    peer, server = trio.testing.memory_stream_pair()
    return peer, WebSocket(server, max_message_chars=limit, receive_size=65536, pending=pending)


async def server_frames(peer: trio.abc.Stream) -> list[tuple[int, bytes]]:
    """Everything the server wrote until it dropped the stream, as (opcode, payload)."""
    data = b""
    while chunk := await peer.receive_some(65536):
        data += chunk
    frames = []
    while data:
        size, at = data[1] & 0x7F, 2
        if size == 126:
            size, at = struct.unpack("!H", data[2:4])[0], 4
        frames.append((data[0] & 0x0F, data[at : at + size]))
        data = data[at + size :]
    return frames


async def test_a_read_brings_every_whole_message_in_it() -> None:
    peer, ws = pair(pending=frame(OP_TEXT, b"first"))
    with trio.fail_after(5):
        assert await ws.receive() == ["first"]
        await peer.send_all(
            frame(OP_TEXT, "é".encode()) + frame(OP_BINARY, b"\x00") + frame(OP_TEXT, b"x")[:3]
        )
        assert await ws.receive() == ["é", b"\x00"]
        await peer.send_all(frame(OP_TEXT, b"x")[3:])
        assert await ws.receive() == ["x"]


async def test_pings_are_answered_and_pongs_answer_pings() -> None:
    peer, ws = pair()
    with trio.fail_after(5):
        await peer.send_all(frame(OP_PING, b"hi") + frame(OP_TEXT, b"a"))
        assert await ws.receive() == ["a"]
        assert await peer.receive_some(100) == bytes((0x80 | OP_PONG, 2)) + b"hi"
        answered: list[int] = []

        async def ping(n: int) -> None:
            await ws.ping()
            answered.append(n)

        async with trio.open_nursery() as nursery:
            for n in (1, 2, 3):
                nursery.start_soon(ping, n)
                await trio.testing.wait_all_tasks_blocked()
            sent = await peer.receive_some(100)
            assert len(sent) == 30
            assert sent[0] == 0x80 | OP_PING
            # An unknown pong answers nothing; the second ping's pong answers
            # the first two, not the third.
            await peer.send_all(frame(OP_PONG, b"nope") + frame(OP_PONG, bytes(sent[12:20])))
            await peer.send_all(frame(OP_TEXT, b"b"))
            assert await ws.receive() == ["b"]
            await trio.testing.wait_all_tasks_blocked()
            assert sorted(answered) == [1, 2]
            await peer.send_all(frame(OP_PONG, bytes(sent[22:30])) + frame(OP_TEXT, b"c"))
            assert await ws.receive() == ["c"]
        assert answered[2] == 3


async def test_the_peers_close_is_echoed_after_its_last_messages() -> None:
    peer, ws = pair()
    close = struct.pack("!H", 4000) + b"bye"
    await peer.send_all(frame(OP_TEXT, b"last") + frame(OP_CLOSE, close) + frame(OP_TEXT, b"x"))
    with trio.fail_after(5):
        assert await ws.receive() == ["last"]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.receive()
        assert (closed.value.code, closed.value.reason) == (4000, "bye")
        assert await server_frames(peer) == [(OP_CLOSE, struct.pack("!H", 4000))]
        with pytest.raises(ConnectionClosed):
            await ws.send_encoded(encode_text_frame("late"))


@pytest.mark.parametrize(
    ("data", "code"),
    [
        (frame(OP_TEXT, b"y" * 101), 1009),  # over the limit in characters
        (frame(OP_TEXT, b"\xff"), 1007),
        (frame(OP_TEXT, b"x", masked=False), 1002),
        (frame(OP_CLOSE, b"\x03"), 1002),
        (frame(OP_CLOSE, struct.pack("!H", 1005)), 1002),
        (frame(OP_CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
    ],
)
async def test_bad_input_fails_the_connection_with_its_code(data: bytes, code: int) -> None:
    peer, ws = pair()
    await peer.send_all(frame(OP_TEXT, b"ok") + data)
    with trio.fail_after(5):
        assert await ws.receive() == ["ok"]
        with pytest.raises(ConnectionClosed) as closed:
            await ws.receive()
        assert closed.value.code == code
        ((opcode, payload),) = await server_frames(peer)
    assert opcode == OP_CLOSE
    assert struct.unpack("!H", payload[:2])[0] == code


async def test_close_waits_for_the_peers_answer_read_by_the_receiver() -> None:
    peer, ws = pair()
    closed_by: list[int] = []

    async def reader() -> None:
        try:
            while True:
                await ws.receive()
        except ConnectionClosed as closed:
            closed_by.append(closed.code)

    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(ws.aclose, 4008, "too slow")
            await trio.testing.wait_all_tasks_blocked()
            assert await peer.receive_some(100) == encode_close_frame(4008, "too slow")
            assert ws.closed is None  # waiting for the answer
            await peer.send_all(frame(OP_CLOSE, struct.pack("!H", 4008)))
        assert closed_by == [4008]
        assert await peer.receive_some(100) == b""  # and TCP is dropped


async def test_close_reads_the_answer_itself_when_nobody_receives() -> None:
    peer, ws = pair()
    await peer.send_all(frame(OP_TEXT, b"unread") + frame(OP_CLOSE, struct.pack("!H", 1000)))
    with trio.fail_after(5):
        await ws.aclose(1001, "going away")
        assert ws.closed is not None
        assert ws.closed.code == 1000
        assert await server_frames(peer) == [(OP_CLOSE, encode_close_frame(1001, "going away")[2:])]


async def test_a_lost_connection_is_1006() -> None:
    peer, ws = pair()
    await peer.aclose()
    with trio.fail_after(5), pytest.raises(ConnectionClosed) as closed:
        await ws.receive()
    assert closed.value.code == 1006
    with pytest.raises(ConnectionClosed):
        await ws.ping()


def test_a_long_close_reason_is_cut_on_a_character_boundary() -> None:
    encoded = encode_close_frame(1000, "é" * 100)
    assert len(encoded) == 2 + 2 + 122
    assert encoded[4:].decode() == "é" * 61
