"""Answers clients' ``request`` s (docs/protocol.md, "Requests and replies").

A bounded queue in front of a few workers: a request that finds the queue
full is answered ``rate_limited`` at once, so neither the frames from relayd
nor the conversations ever wait for git. Every request gets exactly one
``reply``, never larger than ``max_reply_chars``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final

import trio

from vmagent.publish import PUBLISH_OPS, PublishSettings, run_publish_op
from vmagent.workspace_ops import OpError, OpLimits, require_repo, run_op
from wire.codec import dumps
from wire.messages import Request
from wire.protocol import ErrorCode, VmType

log = logging.getLogger("vmagent")

DEFAULT_OP_WORKERS: Final = 2
DEFAULT_OP_QUEUE: Final = 32
DEFAULT_MAX_REPLY_CHARS: Final = 4 * 1024 * 1024


def reply_frame(
    request: Request, *, result: Any = None, code: ErrorCode | None = None, message: str = ""
) -> str:
    """The ``reply`` to ``request``: ``result``, or the error ``code`` with ``message``."""
    body: dict[str, Any] = {
        "type": VmType.REPLY,
        "workspaceId": request.workspace_id,
        "requestId": request.request_id,
    }
    if request.connection_id is not None:
        body["connectionId"] = request.connection_id
    if code is None:
        body["ok"] = True
        body["result"] = result
    else:
        body["ok"] = False
        body["error"] = {"code": str(code), "message": message}
    return dumps(body)


class OpServer:
    """Runs ops for requests, each in the working tree ``work_dir(workspaceId)``.

    ``issue(workspaceId)`` is the workspace's assigned issue (the publishing
    ops need its repository and number).
    """

    def __init__(
        self,
        post: Callable[[str], None],
        work_dir: Callable[[str], Path],
        *,
        limits: OpLimits,
        max_reply_chars: int = DEFAULT_MAX_REPLY_CHARS,
        workers: int = DEFAULT_OP_WORKERS,
        queue: int = DEFAULT_OP_QUEUE,
        issue: Callable[[str], Mapping[str, Any] | None] = lambda _workspace_id: None,
        publish: PublishSettings | None = None,
    ) -> None:
        self._post = post
        self._work_dir = work_dir
        self._issue = issue
        self.publish = publish if publish is not None else PublishSettings()
        self.limits = limits
        self.max_reply_chars = max_reply_chars
        self.workers = workers
        self._send, self._receive = trio.open_memory_channel[Request](queue)

    def submit(self, request: Request) -> None:
        """Queue a request, or answer ``rate_limited`` at once."""
        try:
            self._send.send_nowait(request)
        except trio.WouldBlock:
            self._post(
                reply_frame(
                    request, code=ErrorCode.RATE_LIMITED, message="the VM is busy; try again"
                )
            )

    async def run(self) -> None:
        """The workers, until cancelled."""
        async with trio.open_nursery() as nursery:
            for _ in range(self.workers):
                nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        async for request in self._receive:
            self._post(await self.answer(request))

    async def answer(self, request: Request) -> str:
        """The reply frame for one request (never raises for the op's sake)."""
        try:
            root = self._work_dir(request.workspace_id)
            if request.op in PUBLISH_OPS:
                require_repo(root)
                result = await run_publish_op(
                    root,
                    request.op,
                    request.args,
                    self._issue(request.workspace_id),
                    self.publish,
                    self.limits,
                )
            else:
                result = await run_op(root, request.op, request.args, self.limits)
        except OpError as exc:
            return reply_frame(request, code=exc.code, message=exc.message)
        except Exception:
            log.exception(
                "request failed", extra={"workspaceId": request.workspace_id, "op": request.op}
            )
            return reply_frame(request, code=ErrorCode.BAD_REQUEST, message="internal error")
        frame = reply_frame(request, result=result)
        if len(frame) > self.max_reply_chars:
            return reply_frame(
                request, code=ErrorCode.TOO_LARGE, message="the answer is too large to send"
            )
        return frame
