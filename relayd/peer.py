"""One accepted WebSocket peer: its outgoing queue, writer, keepalive and expiry.

The rules this module keeps:

* What is queued for a peer goes out in batches, one write each
  (:mod:`relayd.wsframes`).
* A frame is never cancelled half-way: nothing in relayd cancels the writer
  while it sends. To stop a peer, :meth:`Peer.close` closes its outbox and the
  writer sends the close frame after the frame in flight. Only when the peer
  does not take that frame within ``close_timeout`` is the TCP stream closed
  outright (which ends the stalled send), never to be written to again.
* Keepalive: :meth:`Peer._keepalive` pings every
  ``ping_interval`` seconds and closes a peer that missed two in a row.
* A token is valid until its ``exp`` (plus the clock-skew leeway); ``auth``
  moves the deadline, otherwise the peer is closed with 4401.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from relayd.outbox import Outbox, OutboxClosed
from relayd.wsconn import ConnectionClosed, WebSocket
from relayd.wsframes import FrameCache
from wire.messages import error_frame
from wire.protocol import CloseCode, ErrorCode, Scope
from wire.tokens import Claims

log = logging.getLogger("relayd.peer")

#: Characters the writer takes from its queue per wake-up.
WRITE_BATCH_CHARS: Final = 256 * 1024
#: Scheduler rounds a writer waits for more frames while they keep coming.
COALESCE_ROUNDS: Final = 4
#: Missed pings before a peer is closed (docs/protocol.md section 1).
MAX_MISSED_PINGS: Final = 2

_ids = itertools.count(1)


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
        self.close_code: int | None = None
        self.close_reason = ""
        self.deadline = self._deadline_for(claims)
        self._deadline_moved = trio.Event()
        self._closing = trio.Event()
        self._abandoned = False
        self._nursery: trio.Nursery | None = None
        self.frames_out = 0
        #: Called with each batch sent, as ``type -> [frames, characters]`` (for the metrics).
        self.count_out: Callable[[dict[str, list[int]]], None] | None = None
        #: Encodings shared with the other peers a frame is fanned out to
        #: (the relay gives every peer the same cache).
        self.frame_cache = FrameCache()

    def log_extra(self, **more: Any) -> dict[str, Any]:
        """Ids for a log line: never a token."""
        return {"peer": self.id, "scope": str(self.scope), "sub": self.sub, **more}

    # -- sending -------------------------------------------------------------

    def send_or_drop(self, frame: str) -> None:
        """Queue a frame; a peer whose queue is full is too slow and is closed (4008)."""
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
        self.outbox.close()
        self._closing.set()
        log.info("closing peer", extra=self.log_extra(code=code, reason=reason))

    # -- token ---------------------------------------------------------------

    def _deadline_for(self, claims: Claims) -> float:
        return trio.current_time() + (claims.exp + self.token_leeway - time.time())

    def renew(self, claims: Claims) -> None:
        """A fresh token (same ``sub`` and scope, checked by the caller) moves the deadline."""
        self.claims = claims
        self.deadline = self._deadline_for(claims)
        self._deadline_moved.set()

    # -- running -------------------------------------------------------------

    async def run(self, reader: Callable[[Peer], Awaitable[None]]) -> None:
        """Run the peer until it closes: ``reader`` handles what it sends."""
        async with trio.open_nursery() as nursery:
            self._nursery = nursery
            nursery.start_soon(self._writer, nursery.cancel_scope)
            nursery.start_soon(self._keepalive)
            nursery.start_soon(self._expiry)
            nursery.start_soon(self._closer)
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
                    self.outbox.close()
                    self._closing.set()
            # The writer finishes: it sends the close frame if the socket is still up.

    async def _writer(self, cancel_scope: trio.CancelScope) -> None:
        busy = False
        try:
            while True:
                try:
                    await self.outbox.wait()
                    # Under load (the last write carried several frames), wait a
                    # few scheduler rounds while frames keep arriving, so that one
                    # write carries many: the syscalls are most of relayd's CPU.
                    # A lone frame at a quiet time goes out at once.
                    queued = len(self.outbox)
                    rounds = COALESCE_ROUNDS if busy or queued > 1 else 0
                    for _ in range(rounds):
                        await trio.lowlevel.cancel_shielded_checkpoint()
                        if len(self.outbox) == queued or self.outbox.chars >= WRITE_BATCH_CHARS:
                            break
                        queued = len(self.outbox)
                    before = len(self.outbox)
                    batch = self.outbox.take_entries(WRITE_BATCH_CHARS)
                    sent = before - len(self.outbox)
                    busy = sent > 1
                except OutboxClosed:
                    break
                data, counts = self.frame_cache.encode(batch)
                try:
                    # Not cancelled half-way by relayd: a stalled send ends when
                    # _closer drops the stream.
                    await self.ws.send_encoded(data)
                except ConnectionClosed:
                    break
                self.frames_out += sent
                if self.count_out is not None:
                    self.count_out(counts)
            if not self._abandoned:
                with trio.move_on_after(self.close_timeout) as closing:
                    await self.ws.aclose(self.close_code or CloseCode.NORMAL, self.close_reason)
                if closing.cancelled_caught:
                    await self.ws.abort()
        finally:
            cancel_scope.cancel()

    async def _closer(self) -> None:
        """Once closing, the frame in flight gets close_timeout; then the stream is dropped."""
        await self._closing.wait()
        await trio.sleep(self.close_timeout)
        self._abandoned = True
        log.info("peer did not take its data; dropping it", extra=self.log_extra())
        await self.ws.abort()

    async def _keepalive(self) -> None:
        if self.ping_interval <= 0:
            return
        missed = 0
        async with trio.open_nursery() as pings:
            while True:
                answered = trio.Event()
                pings.start_soon(self._ping, answered)
                await trio.sleep(self.ping_interval)
                if answered.is_set():
                    missed = 0
                    continue
                missed += 1
                if missed >= MAX_MISSED_PINGS:
                    log.info("peer missed two pings", extra=self.log_extra())
                    self.close(CloseCode.POLICY, "missed two pings")
                    pings.cancel_scope.cancel()
                    return

    async def _ping(self, answered: trio.Event) -> None:
        # ping() waits for the pong; a pong also answers every earlier ping.
        # Cancelling it half-way only happens when the peer is going away.
        try:
            await self.ws.ping()
        except ConnectionClosed:
            return
        answered.set()

    async def _expiry(self) -> None:
        while True:
            with trio.move_on_at(self.deadline):
                await self._deadline_moved.wait()
                self._deadline_moved = trio.Event()
                continue
            if trio.current_time() >= self.deadline:
                self.close(CloseCode.TOKEN_EXPIRED, "token expired")
                return
