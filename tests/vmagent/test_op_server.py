"""vmagent.op_server: one reply per request, a full queue answered at once, a reply kept small."""

from __future__ import annotations

import json
from pathlib import Path

import trio

from tests.vmagent.gitrepo import git
from vmagent.op_server import OpServer
from vmagent.workspace_ops import OpLimits
from wire.frames import Reply, decode_vm_message
from wire.messages import Request


def request(rid: str, op: str = "files", **args: object) -> Request:
    return Request(workspace_id="w1", request_id=rid, op=op, args=dict(args), connection_id="c7")


def repo(tmp_path: Path) -> Path:
    root = tmp_path / "w1"
    git("init", "--quiet", str(root))
    (root / "a.txt").write_text("x" * 5000)
    return root


async def test_a_full_queue_is_answered_at_once_and_every_request_once(tmp_path: Path) -> None:
    root = repo(tmp_path)
    posted: list[str] = []
    all_in = trio.Event()

    def post(frame: str) -> None:
        posted.append(frame)
        if len(posted) == 3:
            all_in.set()

    server = OpServer(post, lambda _ws: root, limits=OpLimits(), workers=1, queue=2)
    for i in range(3):
        server.submit(request(f"r{i}"))
    # The third found the queue full: answered before any worker ran.
    (busy,) = [decode_vm_message(f) for f in posted]
    assert isinstance(busy, Reply)
    assert (busy.request_id, busy.ok) == ("r2", False)
    assert busy.error is not None
    assert busy.error.code == "rate_limited"
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.run)
        with trio.fail_after(10):
            await all_in.wait()
        nursery.cancel_scope.cancel()
    replies = [decode_vm_message(f) for f in posted]
    assert sorted(r.request_id for r in replies if isinstance(r, Reply)) == ["r0", "r1", "r2"]
    first = json.loads(posted[1])
    assert first["connectionId"] == "c7"
    assert first["result"]["files"] == ["a.txt"]


async def test_a_reply_over_the_limit_becomes_too_large(tmp_path: Path) -> None:
    root = repo(tmp_path)
    server = OpServer(lambda _f: None, lambda _ws: root, limits=OpLimits(), max_reply_chars=1000)
    reply = decode_vm_message(await server.answer(request("r1", "file", path="a.txt")))
    assert isinstance(reply, Reply)
    assert reply.error is not None
    assert reply.error.code == "too_large"
    unknown = decode_vm_message(await server.answer(request("r2", "nope")))
    assert isinstance(unknown, Reply)
    assert unknown.error is not None
    assert unknown.error.code == "unknown_type"
