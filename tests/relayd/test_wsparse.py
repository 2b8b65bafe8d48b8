"""relayd.wsparse: the client-frame parser, by hand and against wsproto as the reference."""

from __future__ import annotations

import os
import struct
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from wsproto import ConnectionType
from wsproto.connection import Connection, ConnectionState
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage

from relayd.wsparse import (
    MAX_FRAGMENTS,
    ControlFrame,
    FrameError,
    FrameParser,
    Item,
    unmask,
    unmask_py,
)


def frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    masked: bool = True,
    rsv: int = 0,
    mask: bytes = b"\x01\x02\x03\x04",
) -> bytes:
    """A client frame (masked unless told), length minimally encoded."""
    size = len(payload)
    b0 = (0x80 if fin else 0) | rsv << 4 | opcode
    m = 0x80 if masked else 0
    if size < 126:
        head = struct.pack("!BB", b0, m | size)
    elif size < 65536:
        head = struct.pack("!BBH", b0, m | 126, size)
    else:
        head = struct.pack("!BBQ", b0, m | 127, size)
    if not masked:
        return head + payload
    return head + mask + unmask(payload, mask)


def parse(data: bytes, limit: int = 1 << 20, chunk: int = 0) -> list[Item]:
    parser = FrameParser(limit)
    if not chunk:
        return parser.feed(data)
    out: list[Item] = []
    for i in range(0, len(data), chunk):
        out.extend(parser.feed(data[i : i + chunk]))
    return out


def error(items: list[Item]) -> tuple[int, str] | None:
    last = items[-1] if items else None
    return (last.code, last.reason) if isinstance(last, FrameError) else None


@pytest.mark.parametrize("xor", [unmask, unmask_py])
def test_unmask_round_trips(xor: Callable[[bytes, bytes], bytes]) -> None:
    data = os.urandom(1001)
    assert xor(xor(data, b"abcd"), b"abcd") == data
    assert xor(b"", b"abcd") == b""
    assert xor(b"\x00\x00\x00\x00\x00", b"abcd") == b"abcda"


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=5000), st.binary(min_size=4, max_size=4))
def test_the_c_unmask_is_the_python_one(payload: bytes, mask: bytes) -> None:
    assert unmask(payload, mask) == unmask_py(payload, mask)


def test_whole_messages_in_one_read_and_byte_by_byte() -> None:
    data = (
        frame(1, "héllo".encode())
        + frame(2, b"\x00\xff")
        + frame(1, b"x" * 300)
        + frame(1, b"y" * 70000)
        + frame(1, b"")
    )
    expected = ["héllo", b"\x00\xff", "x" * 300, "y" * 70000, ""]
    assert parse(data) == expected
    assert parse(data, chunk=1) == expected
    assert parse(data, chunk=4096) == expected


def test_fragments_with_control_frames_between() -> None:
    data = (
        frame(1, b"ab", fin=False)
        + frame(9, b"ping")
        + frame(0, b"c\xc3", fin=False)  # a UTF-8 sequence split across fragments
        + frame(10, b"")
        + frame(0, b"\xa9d")
    )
    items = parse(data)
    assert items[2] == "abc\xe9d"
    assert [(c.opcode, c.payload) for c in items[:2] if isinstance(c, ControlFrame)] == [
        (9, b"ping"),
        (10, b""),
    ]


def test_protocol_errors_are_1002() -> None:
    cases = [
        frame(1, b"x", masked=False),
        frame(1, b"x", rsv=4),
        frame(3, b"x"),
        frame(11, b"x"),
        frame(0, b"x"),
        frame(1, b"a", fin=False) + frame(1, b"b"),
        frame(9, b"x", fin=False),
        frame(9, b"x" * 126),
        b"\x81\xfe\x00\x05" + b"\x00" * 9,  # 16-bit length for 5 bytes
        b"\x81\xff" + struct.pack("!Q", 200) + b"\x00" * 204,  # 64-bit length for 200
        b"\x81\xff" + struct.pack("!Q", 1 << 63) + b"\x00" * 4,
    ]
    for data in cases:
        items = parse(data)
        failure = error(items)
        assert failure is not None, data
        assert failure[0] == 1002, data


def test_errors_end_the_parser_and_keep_what_came_before() -> None:
    parser = FrameParser(100)
    items = parser.feed(frame(1, b"ok") + frame(1, b"\xff") + frame(1, b"never"))
    assert items[0] == "ok"
    assert error(items) == (1007, "text is not valid UTF-8")
    assert len(items) == 2
    assert parser.failed
    assert parser.feed(frame(1, b"more")) == []


def test_size_limit_is_1009_from_the_header() -> None:
    # The payload is never buffered: the header alone says it is too big.
    assert error(parse(frame(1, b"x" * 101)[:20], limit=100)) == (1009, "message too big")
    assert parse(frame(1, b"x" * 100), limit=100) == ["x" * 100]
    fragmented = frame(1, b"x" * 60, fin=False) + frame(0, b"x" * 41)
    assert error(parse(fragmented, limit=100))[0] == 1009  # type: ignore[index]
    assert parse(frame(1, b"x" * 60, fin=False) + frame(0, b"x" * 40), limit=100) == ["x" * 100]


def test_a_message_in_too_many_fragments_is_1009() -> None:
    most = frame(1, b"a", fin=False) + frame(0, b"b", fin=False) * (MAX_FRAGMENTS - 2)
    assert parse(most + frame(0, b"c")) == ["a" + "b" * (MAX_FRAGMENTS - 2) + "c"]
    too_many = most + frame(0, b"b", fin=False) + frame(0, b"c")
    assert error(parse(too_many)) == (1009, "message in too many fragments")


def test_invalid_utf8_in_fragments_is_1007() -> None:
    data = frame(1, b"a\xc3", fin=False) + frame(0, b"(")
    assert error(parse(data))[0] == 1007  # type: ignore[index]


def test_a_big_frame_in_many_reads_is_held_not_reparsed() -> None:
    data = frame(1, b"z" * 300_000)
    parser = FrameParser(1 << 20)
    fed = 0
    while len(data) - fed > 1000:
        assert parser.feed(data[fed : fed + 1000]) == []
        fed += 1000
        assert parser.buffered == fed
    assert parser.feed(data[fed:]) == ["z" * 300_000]
    assert parser.buffered == 0


# -- against wsproto -----------------------------------------------------------


def reference(chunks: list[bytes]) -> tuple[list[object], int | None, bool]:
    """wsproto's reading: messages and control frames, error code, and whether a
    frame or message was left incomplete."""
    conn = Connection(ConnectionType.SERVER)
    out: list[object] = []
    text: list[str] = []
    data: list[bytes] = []
    for chunk in chunks:
        conn.receive_data(chunk)
        for event in conn.events():
            if isinstance(event, TextMessage):
                text.append(event.data)
                if event.message_finished:
                    out.append("".join(text))
                    text = []
            elif isinstance(event, BytesMessage):
                data.append(bytes(event.data))
                if event.message_finished:
                    out.append(b"".join(data))
                    data = []
            elif isinstance(event, Ping):
                out.append((9, bytes(event.payload)))
            elif isinstance(event, Pong):
                out.append((10, bytes(event.payload)))
            elif isinstance(event, CloseConnection):
                if conn.state is ConnectionState.REMOTE_CLOSING:
                    out.append("close")
                    return out, None, False
                return out, event.code, False
    return out, None, bool(text or data)


def ours(chunks: list[bytes], limit: int = 1 << 30) -> tuple[list[object], int | None, bool]:
    parser = FrameParser(limit)
    out: list[object] = []
    for chunk in chunks:
        for item in parser.feed(chunk):
            if isinstance(item, FrameError):
                return out, item.code, False
            if isinstance(item, ControlFrame):
                if item.opcode == 8:
                    # Its code and reason as wsproto reads them (relayd.wsconn
                    # checks them the same way; see test_wsconn).
                    closed, code, _ = reference([frame(8, item.payload)])
                    out.extend(closed)
                    return out, code, False
                out.append((item.opcode, item.payload))
            else:
                out.append(item)
    return out, None, bool(parser.buffered or parser.in_message)


texts = st.text(max_size=300)
blobs = st.binary(max_size=300)
controls = st.tuples(st.sampled_from([9, 10]), st.binary(max_size=125))


@st.composite
def streams(draw: st.DrawFn) -> tuple[list[bytes], list[object]]:
    """A valid client byte stream (fragments, interleaved pings/pongs) split at random."""
    data = b""
    expected: list[object] = []
    for _ in range(draw(st.integers(0, 8))):
        if draw(st.booleans()):
            opcode, payload = draw(controls)
            data += frame(opcode, payload, mask=draw(st.binary(min_size=4, max_size=4)))
            expected.append((opcode, payload))
            continue
        is_text = draw(st.booleans())
        message: str | bytes = draw(texts) if is_text else draw(blobs)
        raw = message.encode() if isinstance(message, str) else message
        cuts = sorted(draw(st.lists(st.integers(0, len(raw)), max_size=3)))
        pieces = [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)], strict=True)]
        between: list[tuple[int, bytes]] = []
        for i, piece in enumerate(pieces):
            opcode = (1 if is_text else 2) if i == 0 else 0
            data += frame(opcode, piece, fin=i == len(pieces) - 1)
            if i < len(pieces) - 1 and draw(st.booleans()):
                control = draw(controls)
                data += frame(*control)
                between.append(control)
        expected.extend(between)
        expected.append(message)
    points = sorted(draw(st.lists(st.integers(0, len(data)), max_size=6)))
    chunks = [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]
    return chunks, expected


@settings(max_examples=300, deadline=None)
@given(streams())
def test_valid_streams_read_as_wsproto_reads_them(case: tuple[list[bytes], list[object]]) -> None:
    chunks, expected = case
    assert ours(chunks) == (expected, None, False)
    assert reference(chunks) == (expected, None, False)


def test_a_header_beyond_the_limit_fails_at_once_where_wsproto_waits() -> None:
    # The case the property below met: a length past the limit, no payload yet.
    head = b"\x81\xff" + struct.pack("!Q", 1 << 40) + b"\x01\x02\x03\x04"
    assert ours([head]) == ([], 1009, False)
    assert reference([head]) == ([], None, False)


@settings(max_examples=1000, deadline=None)
@given(streams(), st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=3))
def test_corrupted_streams_fail_where_wsproto_fails(
    case: tuple[list[bytes], list[object]], flips: list[tuple[int, int]]
) -> None:
    chunks, _ = case
    data = bytearray(b"".join(chunks))
    if not data:
        return
    for where, value in flips:
        data[where % len(data)] = value
    whole = [bytes(data)]
    mine, my_error, my_partial = ours(whole)
    theirs, their_error, their_partial = reference(whole)
    if my_error == 1002 and their_error is None:
        # This parser refuses what the first two bytes show at once; wsproto
        # waits for the whole header first (up to 8 length bytes and the mask).
        theirs, their_error, their_partial = reference([*whole, b"\0" * 16])
    if my_error is None and their_error is None:
        assert mine == theirs
        return
    # wsproto checks UTF-8 fragment by fragment, this parser once the message is
    # whole: one may fail while the other still waits for the rest of a message.
    for got, ref in zip(mine, theirs, strict=False):
        assert got == ref
    if my_error is None:
        assert my_partial
        assert their_error == 1007
    elif their_error is None:
        # A flipped length byte can declare a frame beyond this parser's limit:
        # it refuses with 1009 from the header, while wsproto (no limit) waits
        # for a payload that has not begun.
        assert their_partial or "close" in theirs or my_error == 1009, (my_error, theirs)
    else:
        assert my_error == their_error or 1007 in (my_error, their_error)
