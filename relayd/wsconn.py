"""A server-side WebSocket connection after its handshake: relayd's own, on a trio stream.

Why relayd does not use trio-websocket's connection object: that object runs a
reader task per connection which parses frames with wsproto and hands each
message through a memory channel to the task that handles it, and writes
each message with its own ``send_all``. Per VM frame that is a scheduler hop,
several event objects and, per client, a syscall; at fan-out rates this was
most of relayd's CPU. Here the task that handles a peer's messages reads the
socket itself: one read, every whole frame in it parsed in one go
(:class:`relayd.wsparse.FrameParser`), the messages returned as a list. What
goes out is written by whoever sends, under a lock that costs nothing when
free; relayd's writers send many frames per write (:mod:`relayd.wsframes`).

The rules kept:

* Control frames are answered as they are read: a ping with its pong, a close
  frame with a close frame carrying the same code (RFC 6455 5.5.1), after which
  the server drops TCP first (7.1.1). Pongs answer pings (:meth:`ping`); a
  pong answers every earlier ping too.
* A frame the parser refuses fails the connection with the parser's code
  (1002, 1007, 1009) and a text message longer than ``max_message_chars``
  characters with 1009; messages before the bad frame are still returned.
* Once a close frame is sent nothing more is written, and once the connection
  is over every call raises :class:`ConnectionClosed` with its code (1006
  when TCP went away without a close frame).
* Nothing here cancels a write half-way; a write that is cancelled anyway
  (the connection is being torn down) drops the stream, never to be written
  to again.
"""

from __future__ import annotations

import collections
import struct
from collections.abc import Callable
from typing import Final

import trio

from relayd.wsparse import (
    INVALID_DATA,
    MESSAGE_TOO_BIG,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    PROTOCOL_ERROR,
    ControlFrame,
    FrameError,
    FrameParser,
)

#: Close code for a connection that ended without a close frame (RFC 6455 7.1.5).
ABNORMAL_CLOSURE: Final = 1006
#: Close code read from a close frame that carried none (RFC 6455 7.1.5).
NO_STATUS: Final = 1005
#: Longest close reason, in bytes (a control frame's payload is at most 125).
_MAX_REASON: Final = 123


class ConnectionClosed(Exception):
    """The connection is over: the close code and reason (1006: no close frame)."""

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def encode_control_frame(opcode: int, payload: bytes = b"") -> bytes:
    """An unmasked control frame (a server's): ping, pong or close."""
    return bytes((0x80 | opcode, len(payload))) + payload


def encode_close_frame(code: int, reason: str = "") -> bytes:
    """A close frame with ``code`` and ``reason`` (cut to fit, on a character boundary)."""
    raw = reason.encode()[:_MAX_REASON].decode(errors="ignore").encode()
    return encode_control_frame(OP_CLOSE, struct.pack("!H", code) + raw)


def _valid_close_code(code: int) -> bool:
    # RFC 6455 7.4: the codes a peer may send (1004-1006 and 1015 are reserved).
    return 1000 <= code <= 1003 or 1007 <= code <= 1014 or 3000 <= code <= 4999


class _SendLock:
    """A lock for the stream's writes that does not yield when it is free.

    ``trio.Lock`` yields to the scheduler on every acquire; relayd takes this
    lock once per batch of frames, and the write itself yields anyway.
    """

    __slots__ = ("_held", "_waiters")

    def __init__(self) -> None:
        self._held = False
        #: Made by the first writer that has to wait.
        self._waiters: trio.lowlevel.ParkingLot | None = None

    async def acquire(self) -> None:
        while self._held:
            if self._waiters is None:
                self._waiters = trio.lowlevel.ParkingLot()
            await self._waiters.park()
        self._held = True

    def release(self) -> None:
        self._held = False
        if self._waiters is not None:
            self._waiters.unpark()


class WebSocket:
    """One accepted WebSocket connection (server side, no extension negotiated)."""

    __slots__ = (
        "_close_sent",
        "_closed",
        "_done",
        "_draining",
        "_lock",
        "_parser",
        "_pending",
        "_ping_answered",
        "_ping_id",
        "_ping_sent",
        "_pings",
        "_receive_size",
        "_receiving",
        "_socket",
        "_stream",
        "blocked_since",
        "max_message_chars",
        "on_blocked",
        "progress_at",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        max_message_chars: int,
        receive_size: int,
        pending: bytes = b"",
    ) -> None:
        self._stream = stream
        self.max_message_chars = max_message_chars
        self._receive_size = receive_size
        # A character is at most 4 bytes of UTF-8: the parser bounds bytes,
        # receive() then checks characters.
        self._parser = FrameParser(4 * max_message_chars)
        self._pending = pending
        self._lock = _SendLock()
        self._receiving = False
        self._draining = False
        #: Set once a close frame went out: nothing more is written.
        self._close_sent = False
        #: How the connection ended, once it has.
        self._closed: ConnectionClosed | None = None
        #: Set once the connection is over (made by the first that waits for it).
        self._done: trio.Event | None = None
        #: The trio socket under a SocketStream: written directly, so that a
        #: write that blocks is seen (:attr:`blocked_since`, :attr:`progress_at`).
        self._socket = stream.socket if isinstance(stream, trio.SocketStream) else None
        #: When the write in progress found the socket full (None: not blocked)
        #: and when the socket last took bytes; ``on_blocked`` is called as it blocks.
        self.blocked_since: float | None = None
        self.progress_at = 0.0
        self.on_blocked: Callable[[], None] | None = None
        self._ping_id = 0
        #: The latest ping from :meth:`ping_frame`, and whether its pong came.
        self._ping_sent: bytes | None = None
        self._ping_answered = True
        #: Pings of :meth:`ping` waiting for their pong (made on first use).
        self._pings: collections.OrderedDict[bytes, trio.Event] | None = None

    async def _wait_done(self) -> None:
        if self._closed is not None:
            return
        if self._done is None:
            self._done = trio.Event()
        await self._done.wait()

    @property
    def open(self) -> bool:
        """True until a close frame went out (or the connection ended): then it is closing."""
        return not self._close_sent

    @property
    def closed(self) -> ConnectionClosed | None:
        """How the connection ended (code and reason), or None while it is open."""
        return self._closed

    # -- reading ---------------------------------------------------------------

    async def receive(self) -> list[str | bytes]:
        """The peer's next messages: every whole one a socket read brought, in order.

        Returns at least one message (``str`` for text, ``bytes`` for binary);
        control frames are answered on the way. Raises :class:`ConnectionClosed`
        once the connection is over (after returning what came before the end).
        """
        if self._receiving:
            if not self._draining:
                raise trio.BusyResourceError("another task is already receiving")
            # aclose() is reading the peer's last frames: they are not wanted.
            await self._wait_done()
        self._receiving = True
        try:
            while True:
                if self._closed is not None:
                    raise ConnectionClosed(self._closed.code, self._closed.reason)
                data = self._pending or await self._read()
                self._pending = b""
                messages = await self._handle(data)
                if messages:
                    return messages
        finally:
            self._receiving = False

    async def _read(self) -> bytes:
        try:
            data = await self._stream.receive_some(self._receive_size)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            data = b""
        if not data:
            await self._finish(ABNORMAL_CLOSURE, "connection lost")
        return bytes(data)  # the same object when it is bytes already

    async def _handle(self, data: bytes) -> list[str | bytes]:
        messages: list[str | bytes] = []
        if not data:
            return messages
        limit = self.max_message_chars
        for item in self._parser.feed(data):
            if type(item) is str:
                if len(item) > limit:
                    await self._fail(MESSAGE_TOO_BIG, "message too big")
                    break
                messages.append(item)
            elif type(item) is bytes:
                messages.append(item)
            elif isinstance(item, ControlFrame):
                await self._control(item)
                if self._closed is not None:
                    break  # nothing after a close frame counts
            elif isinstance(item, FrameError):
                await self._fail(item.code, item.reason)
                break
        return messages

    async def _control(self, frame: ControlFrame) -> None:
        if frame.opcode == OP_PING:
            if not self._close_sent:
                await self._send(encode_control_frame(OP_PONG, frame.payload))
        elif frame.opcode == OP_PONG:
            self._pong(frame.payload)
        else:
            await self._peer_closed(frame.payload)

    async def _peer_closed(self, payload: bytes) -> None:
        if not payload:
            code, reason = NO_STATUS, ""
        elif len(payload) == 1:
            await self._fail(PROTOCOL_ERROR, "close frame with a 1-byte payload")
            return
        else:
            code = struct.unpack("!H", payload[:2])[0]
            if not _valid_close_code(code):
                await self._fail(PROTOCOL_ERROR, f"invalid close code {code}")
                return
            try:
                reason = payload[2:].decode()
            except UnicodeDecodeError:
                await self._fail(INVALID_DATA, "close reason is not valid UTF-8")
                return
        echo = encode_close_frame(code) if payload else encode_control_frame(OP_CLOSE)
        if await self._send_close(echo):
            await self._finish(code, reason)

    async def _fail(self, code: int, reason: str) -> None:
        """Fail the connection: a close frame with ``code`` (unless one went out), then drop TCP."""
        if await self._send_close(encode_close_frame(code, reason)):
            await self._finish(code, reason)

    async def _send_close(self, frame: bytes) -> bool:
        """Send a close frame unless one went out; False if the connection broke instead."""
        if self._close_sent:
            return True
        self._close_sent = True
        try:
            await self._send(frame)
        except ConnectionClosed:
            return False
        return True

    async def _finish(self, code: int, reason: str) -> None:
        if self._closed is None:
            self._closed = ConnectionClosed(code, reason)
            self._close_sent = True
            if self._done is not None:
                self._done.set()
            if self._pings:
                for event in self._pings.values():
                    event.set()
                self._pings.clear()
        await trio.aclose_forcefully(self._stream)

    # -- writing ---------------------------------------------------------------

    async def _send(self, data: bytes) -> None:
        await self._lock.acquire()
        try:
            if self._socket is None:
                await self._stream.send_all(data)
            else:
                await self._send_socket(self._socket, data)
        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
            await self._finish(ABNORMAL_CLOSURE, "connection lost")
            raise ConnectionClosed(ABNORMAL_CLOSURE, "connection lost") from None
        except trio.Cancelled:
            # Part of the data may be out: the stream cannot carry another frame.
            self._closed = self._closed or ConnectionClosed(ABNORMAL_CLOSURE, "write cancelled")
            self._close_sent = True
            if self._done is not None:
                self._done.set()
            await trio.aclose_forcefully(self._stream)
            raise
        finally:
            self._lock.release()

    async def _send_socket(self, sock: trio.socket.SocketType, data: bytes) -> None:
        """``send_all`` on the socket itself, noting when it blocks and when it moves."""
        view = memoryview(data)
        try:
            sent = await sock.send(view)
            while sent < len(view):
                view = view[sent:]
                self.progress_at = trio.current_time()
                if self.blocked_since is None:
                    self.blocked_since = self.progress_at
                    if self.on_blocked is not None:
                        self.on_blocked()
                sent = await sock.send(view)
        finally:
            self.blocked_since = None

    async def send_encoded(self, data: bytes) -> None:
        """Send whole, already encoded frames with one write (see :mod:`relayd.wsframes`)."""
        if self._close_sent:
            closed = self._closed
            raise ConnectionClosed(*(closed.args if closed else (ABNORMAL_CLOSURE, "closing")))
        await self._send(data)

    async def ping(self) -> None:
        """Send a ping and wait for its pong; raises :class:`ConnectionClosed` if it ends first."""
        if self._close_sent:
            raise ConnectionClosed(ABNORMAL_CLOSURE, "closing")
        self._ping_id += 1
        payload = struct.pack("!Q", self._ping_id)
        answered = trio.Event()
        if self._pings is None:
            self._pings = collections.OrderedDict()
        self._pings[payload] = answered
        await self._send(encode_control_frame(OP_PING, payload))
        await answered.wait()
        if self._closed is not None:
            raise ConnectionClosed(self._closed.code, self._closed.reason)

    def ping_frame(self) -> bytes:
        """A ping to send now (by whoever writes next); :attr:`ping_outstanding` until its pong."""
        self._ping_id += 1
        payload = struct.pack("!Q", self._ping_id)
        self._ping_sent = payload
        self._ping_answered = False
        return encode_control_frame(OP_PING, payload)

    @property
    def ping_outstanding(self) -> bool:
        """True while the latest :meth:`ping_frame` has had no pong."""
        return not self._ping_answered

    def _pong(self, payload: bytes) -> None:
        if payload == self._ping_sent:
            self._ping_answered = True
        if not self._pings or payload not in self._pings:
            return  # unsolicited: allowed, and ignored (RFC 6455 5.5.3)
        while self._pings:
            sent, event = self._pings.popitem(last=False)
            event.set()
            if sent == payload:
                break

    async def aclose(self, code: int = 1000, reason: str = "") -> None:
        """Close: send a close frame, wait for the peer's, then drop TCP.

        Waits as long as the peer takes (the caller bounds it). Whoever is in
        :meth:`receive` reads the answer; if nobody is, this reads (and drops)
        the peer's last messages itself.
        """
        if self._closed is not None or not await self._send_close(encode_close_frame(code, reason)):
            return
        if self._receiving:
            await self._wait_done()
            return
        self._draining = True
        try:
            while True:
                await self.receive()
        except ConnectionClosed:
            pass
        finally:
            self._draining = False

    async def abort(self) -> None:
        """Drop the connection without a close frame."""
        await self._finish(ABNORMAL_CLOSURE, "aborted")

    def abort_now(self) -> None:
        """:meth:`abort` without waiting (for the timers): a write or read in
        progress on the socket ends with :class:`ConnectionClosed`."""
        if self._closed is None:
            self._closed = ConnectionClosed(ABNORMAL_CLOSURE, "aborted")
            self._close_sent = True
            if self._done is not None:
                self._done.set()
            if self._pings:
                for event in self._pings.values():
                    event.set()
                self._pings.clear()
        if self._socket is not None:
            self._socket.close()
