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

An idle connection costs two tasks beside its reader: the writer and one
task for every timer (pings, token expiry, stalls, the close timeout),
which sleeps until the earliest of them.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, Final

import trio

from relayd.outbox import Entry, Outbox, OutboxClosed, entry_size
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
#: Missed pings before a peer is closed (docs/protocol.md, section 1).
MAX_MISSED_PINGS: Final = 2


class Peer:
    """A client or VM connection as relayd holds it."""

    def __init__(
        self,
        ws: WebSocket,
        claims: Claims,
        *,
        outbox: Outbox,
        ping_interval: float,
        close_timeout: float,
        token_leeway: float,
        stall_timeout: float = 30.0,
        remote: str = "",
    ) -> None:
        self.ws = ws
        self.claims = claims
        self.scope = claims.scope
        self.sub = claims.sub
        self.id = f"{'c' if claims.scope is Scope.CLIENT else 'v'}{next(_ids)}"
        self.remote = remote
        self.outbox = outbox
        self.ping_interval = ping_interval
        self.close_timeout = close_timeout
        self.token_leeway = token_leeway
        self.stall_timeout = stall_timeout
        self.close_code: int | None = None
        self.close_reason = ""
        self.deadline = self._deadline_for(claims)
        self._abandoned = False
        #: The timer task's sleep: moved earlier when a timer must fire sooner.
        self._timer: trio.CancelScope | None = None
        #: A ping for the writer to send first thing (between whole frames).
        self._ping_due: bytes | None = None
        self.frames_out = 0
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
        self._nudge(trio.current_time())  # the close timeout starts now

    # -- token ---------------------------------------------------------------

    def _deadline_for(self, claims: Claims) -> float:
        return trio.current_time() + (claims.exp + self.token_leeway - time.time())

    def renew(self, claims: Claims) -> None:
        """A fresh token (same ``sub`` and scope, checked by the caller) moves the deadline."""
        self.claims = claims
        self.deadline = self._deadline_for(claims)
        self._nudge(self.deadline)

    # -- running -------------------------------------------------------------

    async def run(self, reader: Callable[[Peer], Awaitable[None]]) -> None:
        """Run the peer until it closes: ``reader`` handles what it sends."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._writer, nursery.cancel_scope)
            nursery.start_soon(self._timers)
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

    async def _writer(self, cancel_scope: trio.CancelScope) -> None:
        busy = False
        outbox = self.outbox
        try:
            while True:
                try:
                    if not self.ready:
                        await outbox.wait()
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
                    continue
                sent = sum(n for n, _chars in counts.values())
                busy = sent > 1
                try:
                    # Not cancelled half-way by relayd: a stalled send ends when
                    # the timers drop the stream.
                    await self.ws.send_encoded(data)
                except ConnectionClosed:
                    break
                self.frames_out += sent
                if self.count_out is not None and counts:
                    self.count_out(counts)
            if not self._abandoned:
                with trio.move_on_after(self.close_timeout) as closing:
                    await self.ws.aclose(self.close_code or CloseCode.NORMAL, self.close_reason)
                if closing.cancelled_caught:
                    await self.ws.abort()
        finally:
            cancel_scope.cancel()

    # -- timers --------------------------------------------------------------

    def _nudge(self, at: float) -> None:
        """Have the timer task look again by ``at``."""
        timer = self._timer
        if timer is not None and timer.deadline > at:
            timer.deadline = at

    def _send_blocked(self) -> None:
        # The socket is full: the stall timer starts now.
        if self.stall_timeout > 0:
            self._nudge(trio.current_time() + self.stall_timeout)

    async def _timers(self) -> None:
        """Pings, token expiry, stalls and the close timeout, in one task."""
        interval = self.ping_interval
        next_ping = trio.current_time() + interval if interval > 0 else math.inf
        missed = 0
        close_by = math.inf
        ws = self.ws
        while True:
            now = trio.current_time()
            if self.closing:
                if close_by == math.inf:
                    close_by = now + self.close_timeout
                if now >= close_by:
                    # The frame in flight and the close frame were not taken in time.
                    self._abandoned = True
                    log.info("peer did not take its data; dropping it", extra=self.log_extra())
                    await ws.abort()
                    return
                wake_at = close_by
            else:
                stall_at = math.inf
                if ws.blocked_since is not None and self.stall_timeout > 0:
                    stall_at = ws.progress_at + self.stall_timeout
                if now >= self.deadline:
                    self.close(CloseCode.TOKEN_EXPIRED, "token expired")
                    continue
                if now >= stall_at:
                    log.info("peer stalled", extra=self.log_extra(seconds=self.stall_timeout))
                    if self.on_stall is not None:
                        self.on_stall(self)
                    self.close(CloseCode.TOO_SLOW, "stalled: took no data")
                    continue
                if now >= next_ping:
                    missed = missed + 1 if ws.ping_outstanding else 0
                    if missed >= MAX_MISSED_PINGS:
                        log.info("peer missed two pings", extra=self.log_extra())
                        self.close(CloseCode.POLICY, "missed two pings")
                        continue
                    self._ping_due = ws.ping_frame()
                    self.outbox.poke()
                    next_ping = now + interval
                wake_at = min(next_ping, self.deadline, stall_at)
            with trio.CancelScope(deadline=wake_at) as self._timer:
                await trio.sleep_forever()
            self._timer = None


_ids = itertools.count(1)
#: Until the relay gives a peer its shared cache.
_NO_CACHE: Final = FrameCache()
