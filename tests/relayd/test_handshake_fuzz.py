"""Fuzzing relayd's opening handshake: the HTTP upgrade and the decision on it.

Hypothesis builds hostile handshakes: any request target, header values,
subprotocol lists, Origins, Authorization headers, and tokens (random,
truncated, re-signed with other keys or algorithms, with odd claims, huge).
What must hold:

* :func:`relayd.wsupgrade.check_upgrade` returns an upgrade request or raises
  :class:`~relayd.wsupgrade.BadUpgrade` with a 4xx, nothing else;
* :func:`relayd.handshake.check_handshake` never raises: it answers a
  :class:`~relayd.handshake.Refused` with a status the module documents (and
  a body that encodes), or an :class:`~relayd.handshake.Accepted` only for a
  token our key signed, of the endpoint's scope, unexpired, sent once;
* the handshake over a (memory) stream of arbitrary bytes ends in a request,
  a refusal or the peer's departure, never another exception or a hang.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any
from urllib.parse import urlsplit

import h11
import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from relayd.handshake import Accepted, Refused, check_handshake
from relayd.wsupgrade import MAX_REQUEST_BYTES, BadUpgrade, Handshake, check_upgrade
from wire.protocol import AUDIENCE, CLIENT_PATH, SUBPROTOCOL, VM_PATH, Scope
from wire.tokens import SigningKey, TokenVerifier, issue_token

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
ISSUER = "ffcloud"
ORIGIN = "https://cloud.example.com"
KEY = SigningKey.generate("k1")
OTHER_KEY = SigningKey.generate("k1")  # same kid, another key
VERIFIER = TokenVerifier({KEY.kid: KEY.private_key.public_key()}, issuer=ISSUER)
#: Statuses check_handshake documents.
REFUSALS = {400, 401, 403, 404}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _good(scope: Scope, ttl: float = 600) -> str:
    return issue_token(KEY, sub="u1", scope=scope, issuer=ISSUER, ttl_seconds=ttl)


GOOD = {Scope.CLIENT: _good(Scope.CLIENT), Scope.VM: _good(Scope.VM)}


def _signed(claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    """Claims our own key signs: only the claims (or the header) can be wrong.

    Signed by hand: pyjwt refuses to write most of the odd values.
    """
    head = _b64(json.dumps({"alg": "EdDSA", "kid": "k1", **(header or {})}).encode())
    signing_input = f"{head}.{_b64(json.dumps(claims).encode())}"
    return f"{signing_input}.{_b64(KEY.private_key.sign(signing_input.encode()))}"


def _claims(**changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "u1",
        "iat": now,
        "exp": now + 600,
        "jti": "j",
        "scope": "client",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


odd_values = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.sampled_from([10**400, -(10**400), 1e308, float("inf"), ""]),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)


@st.composite
def tokens(draw: st.DrawFn) -> str:
    """A token as an attacker would send one."""
    kind = draw(st.integers(0, 8))
    good = GOOD[draw(st.sampled_from([Scope.CLIENT, Scope.VM]))]
    if kind == 0:
        return good
    if kind == 1:  # truncated, or one character changed
        cut = draw(st.integers(0, len(good)))
        return good[:cut] + draw(st.sampled_from(["", "A", "-", "=", "."]))
    if kind == 2:  # another key under our kid
        return issue_token(OTHER_KEY, sub="u1", scope=Scope.CLIENT, issuer=ISSUER, ttl_seconds=60)
    if kind == 3:  # other algorithms
        alg = draw(st.sampled_from(["none", "HS256", "RS256", "ES256", "", "EDDSA"]))
        payload = good.split(".")[1]
        header = _b64(json.dumps({"alg": alg, "kid": "k1"}).encode())
        return f"{header}.{payload}.{draw(st.sampled_from(['', 'AAAA', _b64(b'x' * 64)]))}"
    if kind == 4:  # our key, odd claims
        field = draw(st.sampled_from(["iss", "aud", "sub", "exp", "iat", "jti", "scope", "sid"]))
        return _signed(_claims(**{field: draw(odd_values)}))
    if kind == 5:  # our key, odd header
        odd_header = draw(
            st.dictionaries(st.sampled_from(["kid", "alg", "typ", "crit"]), odd_values, max_size=3)
        )
        return _signed(_claims(), {"kid": "k1", **odd_header})
    if kind == 6:  # expired
        return _good(Scope.CLIENT, ttl=-3600)
    if kind == 7:  # huge
        return good * draw(st.integers(2, 400))
    return draw(st.text(st.characters(max_codepoint=255), max_size=200))


latin1 = st.text(st.characters(max_codepoint=255), max_size=60)
targets = st.one_of(
    st.sampled_from([CLIENT_PATH, VM_PATH]),
    st.tuples(st.sampled_from([CLIENT_PATH, VM_PATH, "", "/", "//["]), latin1).map("".join),
    st.sampled_from(
        [
            "//[",
            "http://[::1/v1/client",
            f"http://relay{CLIENT_PATH}",
            f"{CLIENT_PATH}?token=x",
            f"{VM_PATH}?a=aaaaaaaa.bbbbbbbb.c",
            f"{CLIENT_PATH}#frag",
            f"{CLIENT_PATH}?%ff=%ff",
            "*",
        ]
    ),
    latin1,
)


@st.composite
def handshakes(draw: st.DrawFn) -> tuple[str, list[tuple[bytes, bytes]], list[str], str | None]:
    """(target, headers, subprotocols, the token sent if it was sent once)."""
    token = draw(tokens())
    headers: list[tuple[bytes, bytes]] = []
    offered = draw(
        st.lists(
            st.sampled_from([SUBPROTOCOL, "chat", "bearer.", "ffcloud.v2"]) | latin1, max_size=3
        )
    )
    if draw(st.booleans()):
        offered.append(SUBPROTOCOL)
    how = draw(st.sampled_from(["authorization", "subprotocol", "both", "neither", "twice"]))
    scheme = draw(st.sampled_from(["Bearer", "bearer", "Basic", "", "Bearer "]))
    if how in ("authorization", "both", "twice"):
        headers.append((b"authorization", f"{scheme} {token}".encode("latin-1", "replace")))
    if how == "twice":
        headers.append((b"Authorization", f"Bearer {token}".encode("latin-1", "replace")))
    if how in ("subprotocol", "both"):
        offered.append("bearer." + token)
    for _ in range(draw(st.integers(0, 2))):
        origin = draw(st.sampled_from([ORIGIN, ORIGIN + "/", ORIGIN.upper(), "null", ""]) | latin1)
        headers.append((draw(st.sampled_from([b"origin", b"Origin"])), origin.encode("latin-1")))
    for name, value in draw(st.lists(st.tuples(st.binary(max_size=10), st.binary(max_size=40)))):
        headers.append((name, value))
    sent = token if how in ("authorization", "subprotocol", "both") else None
    return draw(targets), headers, offered, sent


@FUZZ
@given(handshakes())
# An absolute-form target is accepted for its path (the test read it wrong).
@example(
    (
        "http://relay" + CLIENT_PATH,
        [(b"authorization", f"Bearer {GOOD[Scope.CLIENT]}".encode())],
        [SUBPROTOCOL],
        GOOD[Scope.CLIENT],
    )
)
# A target urlsplit cannot split (an unclosed IPv6 bracket) raised ValueError.
@example(
    ("//[", [(b"authorization", f"Bearer {GOOD[Scope.CLIENT]}".encode())], [SUBPROTOCOL], None)
)
# Signed claims with a time no float holds raised OverflowError.
@example(
    (
        CLIENT_PATH,
        [(b"authorization", b"Bearer " + _signed(_claims(exp=10**400)).encode())],
        [SUBPROTOCOL],
        None,
    )
)
@example(
    (
        CLIENT_PATH,
        [(b"authorization", b"Bearer " + _signed(_claims(iat=-(10**400))).encode())],
        [SUBPROTOCOL],
        None,
    )
)
def test_any_handshake_is_refused_or_accepted_for_a_good_token(
    handshake: tuple[str, list[tuple[bytes, bytes]], list[str], str | None],
) -> None:
    target, headers, offered, sent = handshake
    decision = check_handshake(
        target=target,
        headers=headers,
        subprotocols=offered,
        verifier=VERIFIER,
        allowed_origins=[ORIGIN],
        revoked=lambda claims: None,
    )
    if isinstance(decision, Refused):
        assert decision.status in REFUSALS, decision
        assert json.loads(decision.body())["error"]["code"] == decision.reason
        return
    assert isinstance(decision, Accepted)
    # The path as relayd reads it: an absolute-form target (RFC 9112) has one too.
    scope = {CLIENT_PATH: Scope.CLIENT, VM_PATH: Scope.VM}[urlsplit(target).path]
    assert decision.scope is scope
    assert sent is not None, "accepted without exactly one token"
    assert_ours(sent.strip(), scope)
    # The subject relayd took is the one our key signed (any non-empty string is
    # a subject, so an odd-claims token with sub "0" is rightly accepted).
    assert decision.claims.sub == json.loads(_unb64(sent.strip().split(".")[1]))["sub"]


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def assert_ours(token: str, scope: Scope) -> None:
    """The token is one our key signed, with EdDSA, for ``scope``, valid now."""
    head, payload, signature = token.split(".")
    KEY.private_key.public_key().verify(_unb64(signature), f"{head}.{payload}".encode())
    header, claims = json.loads(_unb64(head)), json.loads(_unb64(payload))
    assert header["alg"] == "EdDSA"
    assert header["kid"] == KEY.kid
    assert claims["scope"] == str(scope)
    assert claims["aud"] == AUDIENCE
    assert claims["iss"] == ISSUER
    assert claims["exp"] > time.time()


def _request(target: bytes, headers: list[tuple[bytes, bytes]]) -> h11.Request | None:
    try:
        return h11.Request(method=b"GET", target=target, headers=[(b"Host", b"r"), *headers])
    except h11.LocalProtocolError:
        return None  # h11 itself would not parse it off the wire


upgrade_headers = st.lists(
    st.tuples(
        st.sampled_from(
            [
                b"connection",
                b"Upgrade",
                b"sec-websocket-protocol",
                b"Sec-WebSocket-Version",
                b"sec-websocket-key",
                b"origin",
            ]
        ),
        st.sampled_from([b"upgrade", b"websocket", b"13", b"dGhlIHNhbXBsZSBub25jZQ==", b"", b","])
        | st.binary(max_size=40),
    ),
    max_size=8,
)


@FUZZ
@given(target=st.binary(min_size=1, max_size=80), headers=upgrade_headers)
def test_any_upgrade_request_is_checked(target: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    request = _request(target, headers)
    if request is None:
        return
    try:
        upgrade = check_upgrade(request)
    except BadUpgrade as exc:
        refused = exc.status
    else:
        refused = 0
    if refused:
        assert 400 <= refused < 500, refused
        return
    assert len(base64.b64decode(upgrade.key)) == 16
    assert isinstance(upgrade.target, str)


HANDSHAKE = (
    b"GET /v1/client HTTP/1.1\r\nHost: r\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n"
    b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Sec-WebSocket-Protocol: ffcloud.v1\r\n\r\n"
)


@settings(max_examples=150, deadline=None)
@given(
    data=st.one_of(
        st.binary(max_size=300),
        st.tuples(st.integers(0, len(HANDSHAKE)), st.binary(max_size=40)).map(
            lambda cut: HANDSHAKE[: cut[0]] + cut[1] + HANDSHAKE[cut[0] :]
        ),
        st.just(
            HANDSHAKE.replace(b"\r\n\r\n", b"\r\nX: " + b"a" * MAX_REQUEST_BYTES + b"\r\n\r\n")
        ),
        st.just(HANDSHAKE + b"body after the head"),
    ),
    chunk=st.integers(1, 5000),
)
def test_any_bytes_on_the_socket_end_the_handshake(data: bytes, chunk: int) -> None:
    async def main() -> None:
        client, server = trio.testing.memory_stream_pair()
        handshake = Handshake(server)

        async def send() -> None:
            for at in range(0, len(data), chunk):
                await client.send_all(data[at : at + chunk])
            await client.send_eof()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            with trio.fail_after(5):
                refused = 0
                try:
                    request = await handshake.read_request()
                except BadUpgrade as exc:
                    refused = exc.status
                else:
                    assert request is None or request.key
                assert refused == 0 or 400 <= refused < 500, refused
            nursery.cancel_scope.cancel()

    trio.run(main)
