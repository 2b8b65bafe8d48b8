"""The opening handshake: well-formed upgrades pass, everything else gets its status."""

from __future__ import annotations

import base64

import h11
import pytest
import trio
import trio.testing

from relayd.wsupgrade import BadUpgrade, Handshake, accept_token, check_upgrade

KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
GOOD = [
    (b"Host", b"relay.example"),
    (b"Upgrade", b"websocket"),
    (b"Connection", b"keep-alive, Upgrade"),
    (b"Sec-WebSocket-Key", KEY),
    (b"Sec-WebSocket-Version", b"13"),
    (b"Sec-WebSocket-Protocol", b"ffcloud.v1, bearer.abc"),
]


def request(headers: list[tuple[bytes, bytes]], method: bytes = b"GET") -> h11.Request:
    return h11.Request(method=method, target=b"/v1/client?x=1", headers=headers)


def test_accept_token_is_rfc_6455s_example() -> None:
    assert accept_token(KEY) == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_a_good_upgrade_is_read_whole() -> None:
    upgrade = check_upgrade(request(GOOD))
    assert upgrade.target == "/v1/client?x=1"
    assert upgrade.subprotocols == ["ffcloud.v1", "bearer.abc"]
    assert upgrade.key == KEY
    assert (b"sec-websocket-version", b"13") in upgrade.headers


def without(name: bytes) -> list[tuple[bytes, bytes]]:
    return [(k, v) for k, v in GOOD if k != name]


@pytest.mark.parametrize(
    ("headers", "method", "status"),
    [
        (GOOD, b"POST", 405),
        (without(b"Upgrade"), b"GET", 426),
        (without(b"Connection"), b"GET", 426),
        ([*without(b"Sec-WebSocket-Version"), (b"Sec-WebSocket-Version", b"8")], b"GET", 426),
        (without(b"Sec-WebSocket-Version"), b"GET", 426),
        (without(b"Sec-WebSocket-Key"), b"GET", 400),
        ([*without(b"Sec-WebSocket-Key"), (b"Sec-WebSocket-Key", b"short")], b"GET", 400),
        ([*GOOD, (b"Sec-WebSocket-Key", base64.b64encode(b"x" * 16))], b"GET", 400),
    ],
)
def test_a_bad_upgrade_is_refused_with_its_status(
    headers: list[tuple[bytes, bytes]], method: bytes, status: int
) -> None:
    with pytest.raises(BadUpgrade) as refused:
        check_upgrade(request(headers, method))
    assert refused.value.status == status


async def test_pipelined_bytes_are_handed_to_the_websocket() -> None:
    left, right = trio.testing.memory_stream_pair()
    head = b"".join(k + b": " + v + b"\r\n" for k, v in GOOD)
    await left.send_all(b"GET /v1/vm HTTP/1.1\r\n" + head + b"\r\n" + b"\x81\x80abcd")
    handshake = Handshake(right)
    with trio.fail_after(5):
        upgrade = await handshake.read_request()
        assert upgrade is not None
        pending = await handshake.accept("ffcloud.v1")
        response = await left.receive_some(4096)
    assert pending == b"\x81\x80abcd"
    assert response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in response
    assert b"Sec-WebSocket-Protocol: ffcloud.v1\r\n" in response


async def test_a_refusal_is_a_json_response() -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    handshake = Handshake(right)
    with trio.fail_after(5):
        with pytest.raises(BadUpgrade) as refused:
            await handshake.read_request()
        await handshake.refuse(refused.value.status, b'{"error":{}}', refused.value.headers)
        response = await left.receive_some(4096)
    assert response.startswith(b"HTTP/1.1 426 Upgrade Required\r\n")
    assert b"Content-Type: application/json\r\n" in response
    assert b"Upgrade: websocket\r\n" in response
    assert response.endswith(b'\r\n\r\n{"error":{}}')


async def test_garbage_and_a_huge_head_are_refused() -> None:
    huge = b"GET / HTTP/1.1\r\n" + b"X: y\r\n" * 5000
    for data, status in ((b"\x16\x03\x01 not http\r\n\r\n", 400), (huge, 431)):
        left, right = trio.testing.memory_stream_pair()
        await left.send_all(data)
        handshake = Handshake(right)
        with trio.fail_after(5):
            with pytest.raises(BadUpgrade) as refused:
                await handshake.read_request()
            assert refused.value.status == status
            await handshake.refuse(status, b"{}")
            response = await left.receive_some(4096)
        assert response.startswith(f"HTTP/1.1 {status} ".encode())


async def test_a_peer_that_leaves_mid_request_is_none() -> None:
    left, right = trio.testing.memory_stream_pair()
    await left.send_all(b"GET / HTTP/1.1\r\nHo")
    await left.aclose()
    with trio.fail_after(5):
        assert await Handshake(right).read_request() is None
