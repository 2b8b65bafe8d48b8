"""Attachments through the agent (demo engine): refused without a trace, or accepted,
echoed, answered, kept in snapshots and across a restart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import attrs
import trio

from tests.support.images import b64, png
from tests.vmagent.fakerelay import FakeRelay, VmConn, agent_for, assign, snapshot, turn_frames
from vmagent.agent import Agent
from vmagent.attachments import AttachmentLimits
from vmagent.engines.demo import DemoEngine

PNG = png(3, 2)
LIMITS = AttachmentLimits(max_attachments=2, max_image_bytes=1000, max_text_chars=20)


def make_agent(tmp_path: Path, relay: FakeRelay) -> Agent:
    agent = agent_for(relay, tmp_path, DemoEngine(word_delay=0))
    agent.settings = attrs.evolve(agent.settings, attachments=LIMITS)
    return agent


def log_text(tmp_path: Path) -> str:
    return (tmp_path / "state" / "workspaces" / "ws1" / "log.jsonl").read_text()


def message(cid: str, attachments: list[dict[str, Any]], text: str = "see") -> dict[str, Any]:
    return {
        "type": "user_message",
        "workspaceId": "ws1",
        "clientMessageId": cid,
        "text": text,
        "userId": "u1",
        "attachments": attachments,
    }


async def started(nursery: trio.Nursery, tmp_path: Path, relay: FakeRelay) -> VmConn:
    await nursery.start(make_agent(tmp_path, relay).run)
    conn = await relay.accept()
    assert (await conn.recv())["type"] == "hello"
    return conn


async def test_refused_files_get_one_error_and_leave_no_trace(
    tmp_path: Path, relay: FakeRelay
) -> None:
    image = {"type": "image", "mediaType": "image/png", "data": b64(PNG), "name": "a.png"}
    refusals = [
        ([image] * 3, "too_large", "3 attachments; at most 2 per message"),
        (
            [{**image, "data": b64(b"\x89PNG\r\n\x1a\n" + bytes(1000))}],
            "too_large",
            "'a.png' is 1008 bytes; at most 1000 bytes per image",
        ),
        (
            [{**image, "mediaType": "image/jpeg"}],
            "bad_request",
            "'a.png' is not a JPEG image as its mediaType says (it looks like PNG)",
        ),
        ([{**image, "data": "a\nb"}], "bad_request", "'a.png': data is not valid base64"),
        (
            [{"type": "text", "name": "big.log", "text": "x" * 21}],
            "too_large",
            "'big.log' has 21 characters; at most 20 per text file",
        ),
        ([{"type": "image", "mediaType": "image/png"}], "bad_request", "attachments[0] needs data"),
    ]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            conn = await started(nursery, tmp_path, relay)
            await assign(conn)
            before = log_text(tmp_path)
            for number, (files, code, says) in enumerate(refusals):
                await conn.send(message(f"bad{number}", files))
                error = await conn.recv()
                assert error["type"] == "error", error
                assert (error["code"], error["ref"]) == (code, f"bad{number}")
                assert says in error["message"]
            # Nothing was logged, nothing else was sent, nothing ran.
            assert log_text(tmp_path) == before
            snap = await snapshot(conn)
            assert [m for m in snap["messages"] if m["type"] == "user_message"] == []
            assert snap["status"] == "idle"
            # The same id with good files is a new message, not a repeat.
            await conn.send(message("bad0", [image]))
            echo, _ = await conn.until("user_message")
            assert echo["clientMessageId"] == "bad0"
            nursery.cancel_scope.cancel()


async def test_accepted_files_are_echoed_answered_and_kept(
    tmp_path: Path, relay: FakeRelay
) -> None:
    files = [
        {"type": "image", "mediaType": "image/png", "data": b64(PNG), "name": "shot.png"},
        {"type": "text", "name": "notes.txt", "text": "remember me"},
    ]
    echoed = [
        {
            "type": "image",
            "mediaType": "image/png",
            "name": "shot.png",
            "size": len(PNG),
            "data": b64(PNG),
        },
        {"type": "text", "name": "notes.txt", "size": 11, "text": "remember me"},
    ]
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            conn = await started(nursery, tmp_path, relay)
            await assign(conn)
            await conn.send(message("c1", files, text="what is this"))
            echo, _ = await conn.until("user_message")
            assert echo["attachments"] == echoed
            assert echo["text"] == "what is this"
            frames = await turn_frames(conn)
            [result] = [
                f["data"]
                for f in frames
                if f["type"] == "claude_message" and f["data"]["type"] == "result"
            ]
            assert "got 2 files" in result["result"]
            assert f"shot.png (PNG image, {len(PNG):,} bytes)" in result["result"]
            assert "notes.txt (text, 11 characters)" in result["result"]
            offered = await request_models(conn)
            assert offered["attachments"] == {
                "maxAttachments": 2,
                "maxImageBytes": 1000,
                "maxImageEdge": 8000,
                "maxTextAttachmentChars": 20,
            }
            snap = await snapshot(conn)
            [user] = [m for m in snap["messages"] if m["type"] == "user_message"]
            assert user["attachments"] == echoed
            nursery.cancel_scope.cancel()
        # A restarted vmagent has them in its snapshots still.
        async with trio.open_nursery() as nursery:
            conn = await started(nursery, tmp_path, relay)
            snap = await snapshot(conn)
            [user] = [m for m in snap["messages"] if m["type"] == "user_message"]
            assert user["attachments"] == echoed
            nursery.cancel_scope.cancel()


async def request_models(conn: VmConn) -> dict[str, Any]:
    await conn.send(
        {
            "type": "request",
            "workspaceId": "ws1",
            "requestId": "m1",
            "op": "session_models",
            "args": {},
            "userId": "u1",
            "connectionId": "k1",
        }
    )
    reply, _ = await conn.until("reply", requestId="m1")
    assert reply["ok"] is True
    result: dict[str, Any] = reply["result"]
    return result
