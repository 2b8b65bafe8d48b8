"""Every handshake refusal, end to end over loopback, and the two ways a token may come."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import jwt
import trio
from trio_websocket import ConnectionRejected

from tests.support.relayd import Relayd, recv_json, send_json, start_relayd
from wire.protocol import CLIENT_PATH, SUBPROTOCOL, VM_PATH, Scope
from wire.tokens import SigningKey


def _b64(obj: Mapping[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).rstrip(b"=").decode()


def _alg_none(relay: Relayd) -> str:
    claims = jwt.decode(relay.client_token("u1"), options={"verify_signature": False})
    return f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': relay.keys.key.kid})}.{_b64(claims)}."


def _hs256_with_public_key(relay: Relayd) -> str:
    claims = jwt.decode(relay.client_token("u1"), options={"verify_signature": False})
    public = relay.keys.key.public_jwk()["x"].encode()
    header = {"alg": "HS256", "typ": "JWT", "kid": relay.keys.key.kid}
    signing_input = f"{_b64(header)}.{_b64(claims)}".encode()
    import hashlib
    import hmac

    sig = hmac.new(public, signing_input, hashlib.sha256).digest()
    return signing_input.decode() + "." + base64.urlsafe_b64encode(sig).rstrip(b"=").decode()


async def _status(relay: Relayd, path: str, **kwargs: object) -> int:
    with trio.fail_after(10):
        try:
            async with relay.connect(path, **kwargs):  # type: ignore[arg-type]
                return 101
        except ConnectionRejected as exc:
            body = json.loads(exc.body or b"{}")
            assert "error" in body, body
            return int(exc.status_code)


CASES: list[tuple[str, str, Callable[[Relayd], dict[str, object]], int]] = [
    ("no token", CLIENT_PATH, lambda r: {}, 401),
    (
        "query token",
        CLIENT_PATH + "?token=abc",
        lambda r: {},
        401,
    ),
    (
        "query token beside a good header",
        CLIENT_PATH + "?access_token=x",
        lambda r: {"token": r.client_token("u1")},
        401,
    ),
    ("alg none", CLIENT_PATH, lambda r: {"token": _alg_none(r)}, 401),
    (
        "HS256 signed with the public key",
        CLIENT_PATH,
        lambda r: {"token": _hs256_with_public_key(r)},
        401,
    ),
    (
        "expired",
        CLIENT_PATH,
        lambda r: {"token": r.keys.token("u1", Scope.CLIENT, ttl=60, now=time.time() - 3600)},
        401,
    ),
    (
        "wrong audience",
        CLIENT_PATH,
        lambda r: {"token": r.keys.token("u1", Scope.CLIENT, extra={"aud": "someone-else"})},
        401,
    ),
    (
        "wrong issuer",
        CLIENT_PATH,
        lambda r: {"token": r.keys.token("u1", Scope.CLIENT, issuer="evil")},
        401,
    ),
    (
        "unknown kid",
        CLIENT_PATH,
        lambda r: {"token": r.keys.token("u1", Scope.CLIENT, key=_stranger())},
        401,
    ),
    ("vm token on /v1/client", CLIENT_PATH, lambda r: {"token": r.vm_token("vm1")}, 403),
    ("client token on /v1/vm", VM_PATH, lambda r: {"token": r.client_token("u1")}, 403),
    (
        "foreign origin",
        CLIENT_PATH,
        lambda r: {"token": r.client_token("u1"), "origin": "https://evil.example"},
        403,
    ),
    (
        "no subprotocol",
        CLIENT_PATH,
        lambda r: {"token": r.client_token("u1"), "subprotocols": []},
        400,
    ),
    ("unknown path", "/v2/client", lambda r: {"token": r.client_token("u1")}, 404),
    (
        "garbage token",
        CLIENT_PATH,
        lambda r: {"token": "not-a-jwt"},
        401,
    ),
    (
        "token without a scope claim",
        CLIENT_PATH,
        lambda r: {"token": _without_claim(r, "scope")},
        401,
    ),
]


def _stranger() -> SigningKey:
    return SigningKey.generate("stranger")


def _without_claim(relay: Relayd, claim: str) -> str:
    claims = jwt.decode(relay.client_token("u1"), options={"verify_signature": False})
    del claims[claim]
    return jwt.encode(
        claims, relay.keys.key.private_key, algorithm="EdDSA", headers={"kid": relay.keys.key.kid}
    )


async def test_every_refusal(relay: Relayd) -> None:
    """Each case is refused with its status; a good token still works afterwards."""
    got = {name: await _status(relay, path, **make(relay)) for name, path, make, _ in CASES}
    assert got == {name: status for name, _path, _make, status in CASES}
    stats = await relay.control.request("stats")
    assert stats["drops"]["refusedHandshakes"] == len(CASES)
    assert await _status(relay, CLIENT_PATH, token=relay.client_token("u1")) == 101


async def test_header_token_and_allowed_origin(relay: Relayd) -> None:
    with trio.fail_after(10):
        async with relay.connect_client("u1", origin="http://localhost:8080") as ws:
            assert ws.subprotocol == SUBPROTOCOL


async def test_bearer_subprotocol_is_accepted_and_not_echoed(relay: Relayd) -> None:
    with trio.fail_after(10):
        async with relay.connect_client(
            "u1", bearer_subprotocol=True, origin="http://127.0.0.1:8080"
        ) as ws:
            assert ws.subprotocol == SUBPROTOCOL
            await send_json(ws, {"type": "subscribe", "workspaceId": "nope"})
            reply = await recv_json(ws)
            assert reply["code"] == "not_found"


async def test_token_never_logged(relay: Relayd) -> None:
    token = relay.client_token("u1")
    with trio.fail_after(10):
        async with relay.connect_client("u1", token=token):
            pass
        await _status(relay, CLIENT_PATH + "?token=" + token)
        await relay.control.request("stats")
    text = json.dumps(relay.logs)
    assert "client connected" in text
    assert token not in text
    assert token.split(".")[2] not in text


async def _raw_exchange(relay: Relayd, data: bytes) -> bytes:
    """Send raw bytes; everything relayd answers until it drops the connection."""
    stream = await trio.open_tcp_stream(relay.host, relay.port)
    await stream.send_all(data)
    answer = b""
    while chunk := await stream.receive_some(4096):
        answer += chunk
    return answer


async def test_what_is_not_a_websocket_upgrade_is_refused_in_json(relay: Relayd) -> None:
    with trio.fail_after(20):
        plain = await _raw_exchange(relay, b"GET /v1/client HTTP/1.1\r\nHost: x\r\n\r\n")
        assert plain.startswith(b"HTTP/1.1 426 ")
        head, _, body = plain.partition(b"\r\n\r\n")
        assert b"Upgrade: websocket" in head
        assert json.loads(body)["error"]["code"] == "bad_handshake"
        garbage = await _raw_exchange(relay, b"\x16\x03\x01\x02\x00 hello\r\n\r\n")
        assert garbage.startswith(b"HTTP/1.1 400 ")
        stats = await relay.control.request("stats")
        assert stats["drops"]["refusedHandshakes"] >= 2


async def test_an_unfinished_handshake_is_dropped_after_the_timeout(tmp_path: Path) -> None:
    async with start_relayd(tmp_path, args=["--handshake-timeout", "0.3"]) as relay:
        with trio.fail_after(10):
            started = trio.current_time()
            stream = await trio.open_tcp_stream(relay.host, relay.port)
            await stream.send_all(b"GET /v1/client HTTP/1.1\r\nHost: x\r\n")  # and no more
            assert await stream.receive_some(4096) == b""
            assert trio.current_time() - started >= 0.3
