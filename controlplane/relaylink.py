"""The control link to relayd: one Unix-socket connection, kept open with backoff.

Newline-delimited JSON both ways (docs/protocol.md section 5). Requests carry an
``id`` and get one reply; relayd's events carry none. After every connect the
link says ``hello`` and then calls ``on_connect`` (which sends the full
``sync``) before anyone else may send requests.

Events go through a bounded channel to one consumer task; when it falls
behind, the reader stops reading (back-pressure on relayd), which is why the
event handler must never wait for a reply itself.
"""

from __future__ import annotations

import itertools
import json
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Final

import attrs
import trio

log = logging.getLogger(__name__)

PROTOCOL_VERSION: Final = 1
#: Longest line accepted from relayd (a reply to ``stats`` is the largest).
MAX_LINE_BYTES: Final = 1024 * 1024
#: Events buffered between the socket reader and the event handler.
EVENT_QUEUE: Final = 1000
#: First wait before reconnecting; doubles up to the ``backoff_max`` setting.
BACKOFF_START: Final = 0.1


class RelayUnavailable(Exception):
    """The link is down (or went down before the reply came)."""


class RelayRefused(Exception):
    """relayd answered ``ok: false``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class _LinkBroken(Exception):
    pass


@attrs.define
class _Pending:
    done: trio.Event = attrs.field(factory=trio.Event)
    reply: dict[str, Any] | None = None


class LineReader:
    """Splits a byte stream into lines, refusing lines over ``max_bytes``."""

    def __init__(self, stream: trio.abc.ReceiveStream, max_bytes: int = MAX_LINE_BYTES) -> None:
        self._stream = stream
        self._buffer = bytearray()
        self._max = max_bytes

    async def next_line(self) -> bytes:
        """The next line without its newline; raises :class:`_LinkBroken` at EOF."""
        while True:
            index = self._buffer.find(b"\n")
            if index >= 0:
                line = bytes(self._buffer[:index])
                del self._buffer[: index + 1]
                return line
            if len(self._buffer) > self._max:
                raise _LinkBroken("line too long")
            chunk = await self._stream.receive_some(65536)
            if not chunk:
                raise _LinkBroken("relayd closed the control connection")
            self._buffer += chunk


EventHandler = Callable[[dict[str, Any]], Awaitable[None]]
ConnectHandler = Callable[["RelayLink"], Awaitable[None]]


class RelayLink:
    """Keeps one connection to relayd's control socket."""

    def __init__(
        self,
        socket_path: Path,
        *,
        on_event: EventHandler,
        on_connect: ConnectHandler,
        backoff_max: float = 10.0,
        request_timeout: float = 5.0,
    ) -> None:
        self.socket_path = socket_path
        self._on_event = on_event
        self._on_connect = on_connect
        self.backoff_max = backoff_max
        self.request_timeout = request_timeout
        self._stream: trio.abc.Stream | None = None
        self._ready = False
        self._write_lock = trio.Lock()
        self._pending: dict[str, _Pending] = {}
        self._ids = itertools.count(1)
        self._events_send, self._events_receive = trio.open_memory_channel[dict[str, Any]](
            EVENT_QUEUE
        )
        self.relay_id: str | None = None
        self.last_error: str = "not connected yet"
        self.connects = 0
        self._ready_event = trio.Event()

    @property
    def connected(self) -> bool:
        """True once ``hello`` and ``on_connect`` are done on a live connection."""
        return self._ready

    async def wait_connected(self, count: int = 1) -> None:
        """Return once the link has become ready ``count`` times (since it started)."""
        while self.connects < count:
            await self._ready_event.wait()

    async def run(self) -> None:
        """Connect, serve, reconnect with backoff; forever (until cancelled)."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._consume_events)
            backoff = BACKOFF_START
            while True:
                try:
                    stream = await trio.open_unix_socket(str(self.socket_path))
                except OSError as exc:
                    self.last_error = f"cannot connect to {self.socket_path}: {exc.strerror}"
                else:
                    served_since = trio.current_time()
                    try:
                        await self._session(stream)
                    except (_LinkBroken, RelayUnavailable, RelayRefused) as exc:
                        self.last_error = str(exc)
                    except (OSError, trio.BrokenResourceError, trio.ClosedResourceError) as exc:
                        self.last_error = f"control connection failed: {exc!r}"
                    except Exception as exc:
                        # E.g. the database failing during the sync: retry like a drop.
                        log.exception("relayd control session failed")
                        self.last_error = f"control session failed: {exc!r}"
                    log.warning("relayd control link down", extra={"reason": self.last_error})
                    if trio.current_time() - served_since > self.backoff_max:
                        backoff = BACKOFF_START
                await trio.sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)

    async def _session(self, stream: trio.SocketStream) -> None:
        try:
            await self._serve_session(stream)
        except BaseExceptionGroup as group:
            # The nursery wraps what ended the session; hand the first plain
            # error to run(), which retries. Anything else (Cancelled) goes up.
            _errors, others = group.split(Exception)
            if others is not None:
                raise
            raise _first_leaf(group) from None

    async def _serve_session(self, stream: trio.SocketStream) -> None:
        try:
            async with stream, trio.open_nursery() as nursery:
                self._stream = stream
                nursery.start_soon(self._read, stream)
                hello = await self._request({"type": "hello", "version": PROTOCOL_VERSION})
                self.relay_id = hello.get("relayId")
                await self._on_connect(self)
                self._ready = True
                self.connects += 1
                self._ready_event.set()
                self._ready_event = trio.Event()
                log.info("relayd control link up", extra={"relayId": self.relay_id})
                await trio.sleep_forever()
        finally:
            self._ready = False
            self._stream = None
            for pending in self._pending.values():
                pending.done.set()  # reply stays None: the waiter sees the link went down
            self._pending.clear()

    async def _read(self, stream: trio.abc.ReceiveStream) -> None:
        reader = LineReader(stream)
        while True:
            line = await reader.next_line()
            if not line.strip():
                continue
            try:
                message = json.loads(line)
            except (ValueError, RecursionError):  # RecursionError: nested too deeply
                log.warning("relayd sent a line that is not JSON")
                continue
            if not isinstance(message, dict):
                log.warning("relayd sent JSON that is not an object")
                continue
            if "id" in message and "ok" in message:
                pending = self._pending.pop(str(message["id"]), None)
                if pending is not None:
                    pending.reply = message
                    pending.done.set()
                elif message.get("ok") is False:
                    log.warning("relayd refused a line", extra={"error": message.get("error")})
            elif isinstance(message.get("type"), str):
                await self._events_send.send(message)
            else:
                log.warning("relayd sent a line that is neither a reply nor an event")

    async def _consume_events(self) -> None:
        async for event in self._events_receive:
            try:
                await self._on_event(event)
            except Exception:
                # One bad event must not take the link down; it is logged and skipped.
                log.exception(
                    "relayd event could not be handled", extra={"event": event.get("type")}
                )

    async def request(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Send a request and return relayd's ``ok`` reply.

        Raises :class:`RelayUnavailable` when the link is not ready (the full
        ``sync`` after the next connect makes up for anything missed) and
        :class:`RelayRefused` when relayd says no.
        """
        if not self._ready:
            raise RelayUnavailable(self.last_error)
        return await self._request({"type": type_, **fields})

    async def request_while_connecting(self, type_: str, **fields: Any) -> dict[str, Any]:
        """Like :meth:`request`, for ``on_connect``, before the link is ready for others."""
        return await self._request({"type": type_, **fields})

    async def _request(self, message: dict[str, Any]) -> dict[str, Any]:
        stream = self._stream
        if stream is None:
            raise RelayUnavailable(self.last_error)
        request_id = str(next(self._ids))
        pending = self._pending[request_id] = _Pending()
        line = json.dumps({"id": request_id, **message}, separators=(",", ":")).encode() + b"\n"
        try:
            async with self._write_lock:
                # A write cut in half would corrupt the stream for everyone: shield
                # it, bounded by its own deadline; a write that overruns kills the link.
                with trio.CancelScope(
                    shield=True, deadline=trio.current_time() + self.request_timeout
                ) as scope:
                    await stream.send_all(line)
                if scope.cancelled_caught:
                    await trio.aclose_forcefully(stream)
                    raise RelayUnavailable("write to relayd timed out")
            with trio.move_on_after(self.request_timeout) as waiting:
                await pending.done.wait()
            if waiting.cancelled_caught:
                raise RelayUnavailable(f"relayd did not answer {message['type']!r} in time")
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            raise RelayUnavailable(f"control connection failed: {exc!r}") from None
        finally:
            self._pending.pop(request_id, None)
        reply = pending.reply
        if reply is None:
            raise RelayUnavailable("control connection closed before the reply")
        if reply.get("ok") is not True:
            raw_error = reply.get("error")
            error: dict[str, Any] = raw_error if isinstance(raw_error, dict) else {}
            raise RelayRefused(str(error.get("code", "error")), str(error.get("message", "")))
        return reply


def _first_leaf(group: BaseExceptionGroup[BaseException]) -> BaseException:
    first = group.exceptions[0]
    return _first_leaf(first) if isinstance(first, BaseExceptionGroup) else first
