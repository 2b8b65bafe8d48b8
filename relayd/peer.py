"""One accepted WebSocket peer: its writer and its timers.

The rules this module keeps:

* What a peer is owed goes out in batches, one write each
  (:mod:`relayd.wsframes`): first relayd's own frames from the peer's small
  bounded queue (:class:`relayd.outbox.Outbox`), then, for a client, what its
  cursors in the rooms' logs have to send (:meth:`Peer.wake` puts a cursor
  in the ready set; the writer reads it through ``read_log``).
* A frame is never cancelled half-way: nothing in relayd cancels the writer
  while it sends. To stop a peer, :meth:`Peer.close` closes its outbox and the
  writer sends the close frame after the frame in flight. Only when the peer
  does not take that frame within ``close_timeout`` is the TCP stream closed
  outright (which ends the stalled send), never to be written to again.
* A slow reader is never closed for being slow; a *stalled* one, whose
  socket took no bytes at all for ``stall_timeout`` seconds while relayd had
  something to send, is closed with 4008.
* Keepalive: a ping every ``ping_interval`` seconds (sent by the writer,
  between whole frames); a peer that missed two in a row is closed (1008).
* A token is valid until its ``exp`` (plus the clock-skew leeway); ``auth``
  moves the deadline, otherwise the peer is closed with 4401.

An idle connection costs one task, its reader. Its timers (pings, token
expiry, stalls, the close timeout) sit in the process's one timer heap
(:mod:`relayd.timers`), and its writer task runs only while there is
something to send: it is started by the first frame, a woken cursor or a
ping, stays while data keeps coming, and ends once a whole ping interval
went by without any (a VM's writer stays for good: client messages wait on
its queue).
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final, NotRequired, TypedDict, Unpack

import trio

from relayd.outbox import Entry, Outbox, OutboxClosed, entry_size
from relayd.timers import TimerHandle, Timers
from relayd.wsconn import ConnectionClosed, WebSocket
from relayd.wsframes import FrameCache
from wire.messages import error_frame
from wire.protocol import CloseCode, ErrorCode, Scope
from wire.tokens import Claims

if TYPE_CHECKING:
    from relayd.room import Cursor

log = logging.getLogger("relayd.peer")

#: Characters the writer takes per wake-up (its own queue and its cursors).
WRITE_BATCH_CHARS: Final = 256 * 1024
#: Scheduler rounds a writer waits for more frames while they keep coming.
COALESCE_ROUNDS: Final = 4
#: Seconds a client's writer task stays without anything to send before it
#: ends (the next frame starts another): streaming keeps it, idleness sheds it.
WRITER_LINGER: Final = 5.0
#: Missed pings before a peer is closed (docs/protocol.md, section 1).
MAX_MISSED_PINGS: Final = 2


class PeerOptions(TypedDict):
    """What every peer is made with, client or VM (the relay's settings for it)."""

    outbox: Outbox
    ping_interval: float
    close_timeout: float
    token_leeway: float
    #: The relay's timer heap (none: a heap of its own that nothing runs).
    timers: NotRequired[Timers | None]
    stall_timeout: NotRequired[float]
    #: The peer's address, for log lines.
    remote: NotRequired[str]


class Peer:
    """A client or VM connection as relayd holds it."""

    __slots__ = (
        "_abandoned",
        "_close_by",
        "_linger",
        "_linger_check",
        "_missed",
        "_next_ping",
        "_nursery",
        "_persistent",
        "_ping_due",
        "_seen_out",
        "_timer",
        "_timers",
        "_writing",
        "claims",
        "close_code",
        "close_reason",
        "close_timeout",
        "count_out",
        "deadline",
        "frame_cache",
        "frames_out",
        "id",
        "on_stall",
        "outbox",
        "ping_interval",
        "read_log",
        "ready",
        "remote",
        "scope",
        "stall_timeout",
        "sub",
        "token_leeway",
        "ws",
    )

    def __init__(self, ws: WebSocket, claims: Claims, **options: Unpack[PeerOptions]) -> None:
        ping_interval = options["ping_interval"]
        timers = options.get("timers")
        self.ws = ws
        self.claims = claims
        self.scope = claims.scope
        self.sub = claims.sub
        self.id = f"{'c' if claims.scope is Scope.CLIENT else 'v'}{next(_ids)}"
        self.remote = options.get("remote", "")
        self.outbox = options["outbox"]
        self.ping_interval = ping_interval
        self.close_timeout = options["close_timeout"]
        self.token_leeway = options["token_leeway"]
        self.stall_timeout = options.get("stall_timeout", 30.0)
        self.close_code: int | None = None
        self.close_reason = ""
        self.deadline = self._deadline_for(claims)
        self._abandoned = False
        #: The relay's timer heap (none given: a heap of its own that nothing runs).
        self._timers = timers if timers is not None else Timers()
        self._timer = TimerHandle(self)
        now = trio.current_time()
        self._next_ping = now + ping_interval if ping_interval > 0 else math.inf
        self._missed = 0
        self._close_by = math.inf
        #: A ping for the writer to send first thing (between whole frames).
        self._ping_due: bytes | None = None
        #: The peer's nursery (while it runs), whether its writer task is running,
        #: whether it stays although idle, and whether it keeps running for good.
        self._nursery: trio.Nursery | None = None
        self._writing = False
        self._linger = False
        #: When to look whether a lingering writer had anything to send.
        self._linger_check = math.inf
        self._persistent = claims.scope is Scope.VM
        self.frames_out = 0
        #: ``frames_out`` at the last linger check (an idle writer is let go).
        self._seen_out = 0
        #: Called with each batch sent, as ``type -> [frames, characters]`` (for the metrics).
        self.count_out: Callable[[dict[str, list[int]]], None] | None = None
        #: Called once when the peer is closed for a stall (for the counters).
        self.on_stall: Callable[[Peer], None] | None = None
        #: Cursors with something to send (a client's), in the order they woke.
        self.ready: dict[Cursor, None] = {}
        #: Reads a cursor: ``(entries, characters)`` up to a budget (set by the relay).
        self.read_log: Callable[[Cursor, int], tuple[list[Entry], int]] | None = None
        #: Encodings shared with the other peers a frame is fanned out to
        #: (the relay gives every peer the same cache).
        self.frame_cache = _NO_CACHE
        ws.on_blocked = self._send_blocked

    def log_extra(self, **more: Any) -> dict[str, Any]:
        """Ids for a log line: never a token."""
        return {"peer": self.id, "scope": str(self.scope), "sub": self.sub, **more}

    # -- sending -------------------------------------------------------------

    def send_or_drop(self, frame: str) -> None:
        """Queue one of relayd's own frames; a peer whose queue is full is closed (4008)."""
        if not self.outbox.offer(frame):
            self.close(CloseCode.TOO_SLOW, "too slow to keep up")
        else:
            self._start_writer()

    def send_error(
        self,
        code: ErrorCode,
        message: str,
        *,
        workspace_id: str | None = None,
        ref: str | None = None,
    ) -> None:
        """Queue an ``error`` message."""
        self.send_or_drop(error_frame(code, message, workspace_id=workspace_id, ref=ref))

    def wake(self, cursor: Cursor) -> None:
        """A cursor of this client has something to send."""
        self.ready[cursor] = None
        self.outbox.poke()
        self._start_writer()

    def _start_writer(self) -> None:
        if not self._writing and self._nursery is not None:
            self._writing = True
            self._nursery.start_soon(self._writer)

    # -- closing -------------------------------------------------------------

    @property
    def closing(self) -> bool:
        """True once :meth:`close` was called."""
        return self.close_code is not None

    def close(self, code: int, reason: str = "") -> None:
        """Close this peer with ``code`` after the frame in flight. Idempotent, never waits."""
        if self.close_code is not None:
            return
        self.close_code = code
        self.close_reason = reason
        self._closed()
        log.info("closing peer", extra=self.log_extra(code=code, reason=reason))

    def _closed(self) -> None:
        self.outbox.close()
        self.ready.clear()
        # The close timeout starts now; the writer sends the close frame.
        self._close_by = trio.current_time() + self.close_timeout
        self._timers.earlier(self._timer, self._close_by)
        self._start_writer()

    # -- token ---------------------------------------------------------------

    def _deadline_for(self, claims: Claims) -> float:
        return trio.current_time() + (claims.exp + self.token_leeway - time.time())

    def renew(self, claims: Claims) -> None:
        """A fresh token (same ``sub`` and scope, checked by the caller) moves the deadline."""
        self.claims = claims
        self.deadline = self._deadline_for(claims)
        self._timers.schedule(self._timer, self._next_due())

    # -- running -------------------------------------------------------------

    async def run(self, reader: Callable[[Peer], Awaitable[None]]) -> None:
        """Run the peer until it closes: ``reader`` handles what it sends."""
        self._timers.schedule(self._timer, self._next_due())
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                if self._persistent or not self._idle():
                    self._start_writer()
                ended: int = CloseCode.NORMAL
                try:
                    await reader(self)
                except ConnectionClosed as closed:
                    ended = closed.code  # the peer's code (1006: it dropped TCP)
                finally:
                    # The peer closed (or broke) its side, or the reader returned:
                    # nothing more can be delivered.
                    if self.close_code is None:
                        self.close_code = ended
                        self._closed()
                # The writer finishes: it sends the close frame if the socket is still up.
        finally:
            self._nursery = None
            self._timers.cancel(self._timer)

    def _pending(self) -> int:
        """About how many frames wait: the own queue's, and the ready cursors' log frames."""
        pending = len(self.outbox)
        for cursor in self.ready:
            pending += max(cursor.room.head + 1 - cursor.next, 0)
        return pending

    def _take(self) -> list[Entry]:
        """A batch: relayd's own frames first, then each ready cursor's in turn."""
        batch = self.outbox.take_entries(WRITE_BATCH_CHARS)
        ready = self.ready
        if not ready:
            return batch
        read_log = self.read_log
        assert read_log is not None
        budget = WRITE_BATCH_CHARS - sum(map(entry_size, batch))
        for cursor in list(ready):
            if budget <= 0:
                break
            entries, size = read_log(cursor, budget)
            batch.extend(entries)
            budget -= size
            del ready[cursor]
            if cursor.awake:
                ready[cursor] = None  # more to come: to the back, so every room gets a turn
        return batch

    def _idle(self) -> bool:
        return not (self.ready or len(self.outbox) or self._ping_due or self.outbox.closed)

    async def _writer(self) -> None:
        """Send what the peer is owed; return when idle and not lingering, or closed."""
        busy = False
        outbox = self.outbox
        try:
            while True:
                try:
                    if self._idle():
                        if not (self._linger or self._persistent):
                            return  # idle: the task ends; the next frame starts another
                        await outbox.wait()
                        if self._idle():
                            continue  # poked to let go (see on_timer)
                    # Under load (the last write carried several frames), wait a
                    # few scheduler rounds while frames keep arriving, so that one
                    # write carries many: the syscalls are most of relayd's CPU.
                    # A lone frame at a quiet time goes out at once.
                    queued = self._pending()
                    rounds = COALESCE_ROUNDS if busy or queued > 1 else 0
                    for _ in range(rounds):
                        await trio.lowlevel.cancel_shielded_checkpoint()
                        now = self._pending()
                        if now == queued or outbox.chars >= WRITE_BATCH_CHARS:
                            break
                        queued = now
                    if outbox.closed:
                        raise OutboxClosed
                    batch = self._take()
                except OutboxClosed:
                    break
                data, counts = self.frame_cache.encode(batch)
                if self._ping_due is not None:
                    data = self._ping_due + data
                    self._ping_due = None
                if not data:
                    await trio.lowlevel.checkpoint()  # never spin without yielding
                    continue
                sent = sum(n for n, _chars in counts.values())
                busy = sent > 1
                try:
                    # Not cancelled half-way by relayd: a stalled send ends when
                    # the timers drop the stream.
                    await self.ws.send_encoded(data)
                except ConnectionClosed:
                    break
                if sent:
                    if not self._linger:
                        self._linger = True
                        self._linger_check = trio.current_time() + WRITER_LINGER
                        self._timers.earlier(self._timer, self._linger_check)
                    self.frames_out += sent
                    if self.count_out is not None:
                        self.count_out(counts)
            # Closing: the close frame, unless the frame in flight was not taken in time.
            if not self._abandoned:
                with trio.move_on_after(self.close_timeout) as closing:
                    await self.ws.aclose(self.close_code or CloseCode.NORMAL, self.close_reason)
                if closing.cancelled_caught:
                    await self.ws.abort()
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()  # the reader too
        finally:
            self._writing = False

    # -- timers ---------------------------------------------------------------

    def _send_blocked(self) -> None:
        # The socket is full: the stall timer starts now.
        if self.stall_timeout > 0:
            self._timers.earlier(self._timer, trio.current_time() + self.stall_timeout)

    def _next_due(self) -> float:
        if self.closing:
            return self._close_by
        due = min(self._next_ping, self.deadline, self._linger_check)
        ws = self.ws
        if ws.blocked_since is not None and self.stall_timeout > 0:
            due = min(due, ws.progress_at + self.stall_timeout)
        return due

    def on_timer(self, now: float) -> float:
        """Pings, token expiry, stalls and the close timeout (called by :class:`Timers`)."""
        if self.closing:
            if now >= self._close_by and not self._abandoned:
                # The frame in flight and the close frame were not taken in time.
                self._abandoned = True
                log.info("peer did not take its data; dropping it", extra=self.log_extra())
                self.ws.abort_now()
            return self._close_by if not self._abandoned else math.inf
        ws = self.ws
        if now >= self.deadline:
            self.close(CloseCode.TOKEN_EXPIRED, "token expired")
        elif (
            ws.blocked_since is not None
            and self.stall_timeout > 0
            and now - ws.progress_at >= self.stall_timeout
        ):
            log.info("peer stalled", extra=self.log_extra(seconds=self.stall_timeout))
            if self.on_stall is not None:
                self.on_stall(self)
            self.close(CloseCode.TOO_SLOW, "stalled: took no data")
        elif now >= self._next_ping:
            self._missed = self._missed + 1 if ws.ping_outstanding else 0
            if self._missed >= MAX_MISSED_PINGS:
                log.info("peer missed two pings", extra=self.log_extra())
                self.close(CloseCode.POLICY, "missed two pings")
            else:
                self._next_ping = now + self.ping_interval
                self._ping_due = ws.ping_frame()
                self.outbox.poke()
                self._start_writer()
        if self._linger and now >= self._linger_check:
            if self.frames_out == self._seen_out:
                # Nothing sent for a while: the writer task may end.
                self._linger = False
                self._linger_check = math.inf
                self.outbox.poke()
            else:
                self._linger_check = now + WRITER_LINGER
            self._seen_out = self.frames_out
        return self._next_due()


_ids = itertools.count(1)
#: Until the relay gives a peer its shared cache.
_NO_CACHE: Final = FrameCache()
