"""The WebSocket opening handshake, server side (RFC 6455 section 4.2), over h11.

relayd reads the HTTP request with h11, checks that it is a well-formed
WebSocket upgrade (:func:`check_upgrade`, pure), and then either refuses it
with an HTTP response carrying a JSON body or accepts it with ``101
Switching Protocols``. Bytes the peer sent behind its request (a VM may
pipeline its first frame) are handed on to the connection, so no frame is
lost or read twice.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from typing import Final

import attrs
import h11
import trio

from relayd.httpanswer import response_bytes

#: Longest request head relayd reads (request line and headers).
MAX_REQUEST_BYTES: Final = 16 * 1024
#: Bytes read from the socket at a time during the handshake.
_READ_SIZE: Final = 4096

_GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_VERSION: Final = b"13"


def accept_token(key: bytes) -> bytes:
    """The ``Sec-WebSocket-Accept`` value for a ``Sec-WebSocket-Key``."""
    return base64.b64encode(hashlib.sha1(key.strip() + _GUID, usedforsecurity=False).digest())


class BadUpgrade(Exception):
    """The request is not a WebSocket upgrade relayd can accept: answer ``status``."""

    def __init__(
        self, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


@attrs.frozen
class UpgradeRequest:
    """A well-formed WebSocket upgrade request."""

    target: str
    #: Every header as received, names lower-cased.
    headers: list[tuple[bytes, bytes]]
    #: ``Sec-WebSocket-Protocol`` values, in order.
    subprotocols: list[str]
    key: bytes


def _tokens(value: bytes) -> list[str]:
    return [t.strip().lower() for t in value.decode("latin-1").split(",") if t.strip()]


def check_upgrade(request: h11.Request) -> UpgradeRequest:
    """The request as an :class:`UpgradeRequest`, or :class:`BadUpgrade` saying why not."""
    if request.method != b"GET":
        raise BadUpgrade(405, "a WebSocket handshake is a GET", ((b"Allow", b"GET"),))
    headers = [(name.lower(), value) for name, value in request.headers]
    connection: list[str] = []
    upgrade: list[str] = []
    subprotocols: list[str] = []
    versions: list[bytes] = []
    keys: list[bytes] = []
    for name, value in headers:
        if name == b"connection":
            connection += _tokens(value)
        elif name == b"upgrade":
            upgrade += _tokens(value)
        elif name == b"sec-websocket-protocol":
            subprotocols += [t.strip() for t in value.decode("latin-1").split(",") if t.strip()]
        elif name == b"sec-websocket-version":
            versions.append(value.strip())
        elif name == b"sec-websocket-key":
            keys.append(value.strip())
    if "upgrade" not in connection or "websocket" not in upgrade:
        raise BadUpgrade(
            426,
            "relayd speaks WebSocket only: send an Upgrade: websocket request",
            ((b"Upgrade", b"websocket"),),
        )
    if versions != [_VERSION]:
        raise BadUpgrade(426, "WebSocket version 13 only", ((b"Sec-WebSocket-Version", _VERSION),))
    if len(keys) != 1 or not _valid_key(keys[0]):
        raise BadUpgrade(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    return UpgradeRequest(
        target=request.target.decode("ascii", "replace"),
        headers=headers,
        subprotocols=subprotocols,
        key=keys[0],
    )


def _valid_key(key: bytes) -> bool:
    try:
        return len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        return False


class Handshake:
    """One connection's handshake: read the request, then accept or refuse it."""

    def __init__(self, stream: trio.abc.Stream) -> None:
        self._stream = stream
        self._http = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_REQUEST_BYTES)
        self._request: UpgradeRequest | None = None

    async def read_request(self) -> UpgradeRequest | None:
        """Read the request; None when the peer left first. Raises :class:`BadUpgrade`."""
        while True:
            try:
                event = self._http.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadUpgrade(exc.error_status_hint, "malformed HTTP request") from None
            if isinstance(event, h11.Request):
                request = check_upgrade(event)
                # A handshake has no body: its end follows at once, and h11 then
                # pauses, holding what came behind it for the WebSocket.
                try:
                    end = self._http.next_event()
                except h11.RemoteProtocolError:
                    end = None
                if not isinstance(end, h11.EndOfMessage):
                    raise BadUpgrade(400, "a WebSocket handshake has no body")
                self._request = request
                return request
            if event is h11.NEED_DATA:
                try:
                    data = await self._stream.receive_some(_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    return None
                if not data:
                    return None
                self._http.receive_data(bytes(data))
            else:  # ConnectionClosed, or anything but a request first
                return None

    async def refuse(
        self, status: int, body: bytes, headers: tuple[tuple[bytes, bytes], ...] = ()
    ) -> None:
        """Answer with an HTTP error and a JSON body (the caller then closes the stream)."""
        data = response_bytes(self._http, status, b"application/json", body, headers=headers)
        await self._stream.send_all(data)

    async def accept(self, subprotocol: str) -> bytes:
        """Switch to WebSocket; returns what the peer already sent behind its request."""
        request = self._request
        assert request is not None, "accept() before read_request()"
        headers = [
            (b"Upgrade", b"websocket"),
            (b"Connection", b"Upgrade"),
            (b"Sec-WebSocket-Accept", accept_token(request.key)),
            (b"Sec-WebSocket-Protocol", subprotocol.encode("ascii")),
        ]
        data = self._http.send(
            h11.InformationalResponse(
                status_code=101, headers=headers, reason=b"Switching Protocols"
            )
        )
        await self._stream.send_all(data or b"")
        pending, _closed = self._http.trailing_data
        return bytes(pending)
