"""Several sessions per workspace: the agent with the demo engine against a small relay."""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from tests.vmagent.fakerelay import ISSUE, FakeRelay, VmConn, agent_for, assign
from vmagent.agent import Agent
from vmagent.engines.base import Host, SessionSettings
from vmagent.engines.demo import DemoEngine, DemoSession
from vmagent.workspace import SessionLimits
from wire.attachments import Attachment
from wire.envelope import read_envelope


def make_agent(tmp_path: Path, relay: FakeRelay, word_delay: float = 0, **limits: int) -> Agent:
    agent = agent_for(relay, tmp_path, DemoEngine(word_delay=word_delay))
    agent.settings = attrs.evolve(agent.settings, sessions=SessionLimits(**limits))
    return agent


@contextlib.asynccontextmanager
async def running(
    tmp_path: Path, relay: FakeRelay, *, assigned: bool = True, word_delay: float = 0, **limits: int
) -> AsyncIterator[tuple[VmConn, dict[str, Any]]]:
    """A demo agent on the fake relay: its connection and hello (ws1 assigned first)."""
    async with trio.open_nursery() as nursery:
        await nursery.start(make_agent(tmp_path, relay, word_delay, **limits).run)
        conn = await relay.accept()
        hello = await conn.recv()
        if assigned:
            await assign(conn)
        yield conn, hello
        nursery.cancel_scope.cancel()


async def op(conn: VmConn, name: str, rid: str, sid: str | None = None, **args: Any) -> Any:
    """Send a ``request`` and return its ``reply`` (``error`` frames are returned too)."""
    body: dict[str, Any] = {
        "type": "request",
        "workspaceId": "ws1",
        "requestId": rid,
        "op": name,
        "args": args,
        "userId": "u1",
        "connectionId": "k1",
    }
    if sid is not None:
        body["sessionId"] = sid
    await conn.send(body)
    while True:
        frame = await conn.recv()
        if frame["type"] in ("reply", "error") and (
            frame.get("requestId") == rid or frame.get("ref") == rid
        ):
            return frame


async def create(conn: VmConn, rid: str, title: str | None = None) -> str:
    """Create a session; its id once its status is idle."""
    args = {} if title is None else {"title": title}
    reply = await op(conn, "session_create", rid, **args)
    assert reply["ok"] is True, reply
    sid: str = reply["result"]["sessionId"]
    await conn.until("status", sessionId=sid, status="idle")
    return sid


def message(sid: str | None, cid: str, text: str) -> dict[str, Any]:
    body: dict[str, Any] = {
        "type": "user_message",
        "workspaceId": "ws1",
        "clientMessageId": cid,
        "text": text,
        "userId": "u1",
    }
    if sid is not None:
        body["sessionId"] = sid
    return body


async def snapshot_of(conn: VmConn, sid: str | None, rid: str) -> dict[str, Any]:
    body: dict[str, Any] = {"type": "snapshot_request", "workspaceId": "ws1", "requestId": rid}
    if sid is not None:
        body["sessionId"] = sid
    await conn.send(body)
    while True:
        frame = await conn.recv()
        if frame.get("requestId") == rid or frame.get("ref") == rid:
            return frame


def session_list(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The latest ``vmagent_sessions`` line's sessions among ``frames``."""
    lines: list[list[dict[str, Any]]] = [
        f["data"]["sessions"]
        for f in frames
        if f["type"] == "claude_message" and f["data"].get("subtype") == "vmagent_sessions"
    ]
    assert lines
    return lines[-1]


async def test_two_sessions_stream_at_once_each_gapless(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(20):
        async with running(tmp_path, relay, word_delay=0.002) as (conn, _hello):
            main_snap = await snapshot_of(conn, None, "m0")
            await conn.send(
                {
                    "type": "request",
                    "workspaceId": "ws1",
                    "requestId": "r1",
                    "op": "session_create",
                    "args": {"title": "Second"},
                    "userId": "u1",
                    "connectionId": "k1",
                }
            )
            raws: list[str] = []
            while True:
                raw = await conn.recv_raw()
                raws.append(raw)
                body = json.loads(raw)
                if body.get("status") == "idle" and "sessionId" in body:
                    break
            reply = next(json.loads(r) for r in raws if json.loads(r)["type"] == "reply")
            sid = reply["result"]["sessionId"]
            assert reply["result"] == {"sessionId": sid, "title": "Second"}
            assert sid.startswith("s_")
            assert len(sid) == 34
            # Both at once: each answers its own message.
            await conn.send(message(None, "c1", "hello main"))
            await conn.send(message(sid, "c2", "hello second"))
            done: set[str] = set()
            while done != {"main", sid}:
                raw = await conn.recv_raw()
                raws.append(raw)
                body = json.loads(raw)
                if body.get("type") == "status" and body["status"] == "idle":
                    done.add(body.get("sessionId", "main"))
            by_session: dict[str, list[dict[str, Any]]] = {"main": [], sid: []}
            order: list[str] = []
            for raw in raws:
                body = json.loads(raw)
                if "seq" not in body:
                    continue
                env = read_envelope(raw)
                assert env.body is None  # the relay's fast path reads it, session and all
                key = env.session_id or "main"
                assert key == body.get("sessionId", "main")
                by_session[key].append(body)
                order.append(key)
            main_frames, second = by_session["main"], by_session[sid]
            # Each its own log: gapless from where it was, one epoch each, not the same one.
            assert [f["seq"] for f in main_frames] == list(
                range(main_snap["seq"] + 1, main_snap["seq"] + 1 + len(main_frames))
            )
            assert [f["seq"] for f in second] == list(range(1, len(second) + 1))
            assert {f["epoch"] for f in main_frames} == {main_snap["epoch"]}
            assert len({f["epoch"] for f in second}) == 1
            assert second[0]["epoch"] != main_snap["epoch"]
            # The two streamed at the same time (their frames interleave).
            switches = sum(1 for a, b in itertools.pairwise(order) if a != b)
            assert switches > 4
            # Main's log carries the list; the new session started with no prompt, idle.
            assert session_list(main_frames)[1] == {
                "sessionId": sid,
                "title": "Second",
                "createdAt": session_list(main_frames)[1]["createdAt"],
                "closed": False,
            }
            assert [f.get("status") for f in second[:2]] == ["starting", "idle"]

            def said(frames: list[dict[str, Any]]) -> str:
                return "".join(
                    f["data"]["event"]["delta"].get("text", "")
                    for f in frames
                    if f["type"] == "claude_message"
                    and f["data"]["type"] == "stream_event"
                    and f["data"]["event"]["type"] == "content_block_delta"
                )

            assert "hello main" in said(main_frames)
            assert "hello second" not in said(main_frames)
            assert "hello second" in said(second)
            assert "hello main" not in said(second)
            # A snapshot is per session too.
            snap = await snapshot_of(conn, sid, "s1")
            assert (snap["sessionId"], snap["seq"], snap["epoch"]) == (
                sid,
                second[-1]["seq"],
                second[0]["epoch"],
            )
            assert [m["text"] for m in snap["messages"] if m["type"] == "user_message"] == [
                "hello second"
            ]
            snap = await snapshot_of(conn, None, "m1")
            assert "sessionId" not in snap
            assert [m["text"] for m in snap["messages"] if m["type"] == "user_message"] == [
                "hello main"
            ]


async def test_ops_limits_and_closed_sessions(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(20):
        async with running(tmp_path, relay, max_open=3, max_closed=1) as (conn, _hello):
            a = await create(conn, "r1", "A")
            b = await create(conn, "r2")
            reply = await op(conn, "session_create", "r3")
            assert (reply["ok"], reply["error"]) == (
                False,
                {"code": "rate_limited", "message": "at most 3 open sessions"},
            )
            reply = await op(conn, "session_create", "r4", title="t" * 101)
            assert reply["error"]["code"] == "bad_request"
            # Rename: checked, then logged in main's list.
            reply = await op(conn, "session_rename", "r5", b, title="")
            assert reply["error"]["code"] == "bad_request"
            await conn.send(
                {
                    "type": "request",
                    "workspaceId": "ws1",
                    "sessionId": b,
                    "requestId": "r6",
                    "op": "session_rename",
                    "args": {"title": "Bee"},
                    "userId": "u1",
                    "connectionId": "k1",
                }
            )
            reply, before = await conn.until("reply", requestId="r6")
            assert reply["result"] == {"sessionId": b, "title": "Bee"}
            assert [(s["sessionId"], s["title"]) for s in session_list(before)] == [
                ("main", ""),
                (a, "A"),
                (b, "Bee"),
            ]
            reply = await op(conn, "session_rename", "r7", title="Main work")
            assert reply["result"] == {"sessionId": "main", "title": "Main work"}
            # main cannot be closed.
            reply = await op(conn, "session_close", "r8")
            assert reply["error"] == {
                "code": "bad_request",
                "message": "the first session cannot be closed",
            }
            # Close a: its session stops, the list says so.
            await conn.send(
                {
                    "type": "request",
                    "workspaceId": "ws1",
                    "sessionId": a,
                    "requestId": "r9",
                    "op": "session_close",
                    "args": {},
                    "userId": "u1",
                    "connectionId": "k1",
                }
            )
            reply, before = await conn.until("reply", requestId="r9")
            assert reply["result"] == {"sessionId": a}
            assert [s["closed"] for s in session_list(before)] == [False, True, False]
            stopped, _ = await conn.until("status", sessionId=a)
            assert (stopped["status"], stopped["detail"]) == ("stopped", "closed")
            # Closing again: fine, and nothing changes.
            reply = await op(conn, "session_close", "r10", a)
            assert reply["result"] == {"sessionId": a}
            # A closed session: readable, but it takes no more messages.
            snap = await snapshot_of(conn, a, "s1")
            assert (snap["type"], snap["status"], snap["statusDetail"]) == (
                "messages_snapshot",
                "stopped",
                "closed",
            )
            await conn.send(message(a, "c1", "anyone?"))
            error, _ = await conn.until("error", ref="c1")
            assert (error["code"], error["message"], error["sessionId"]) == (
                "bad_request",
                "session is closed",
                a,
            )
            reply = await op(conn, "session_settings", "r11", a, model="demo-large")
            assert (reply["type"], reply["error"]["code"]) == ("reply", "bad_request")
            assert reply["error"]["message"] == "session is closed"
            models = await op(conn, "session_models", "r12", a)
            assert models["result"]["models"] == []
            # An interrupt for it does nothing at all: the next frame is the probe's answer.
            await conn.send(
                {"type": "interrupt", "workspaceId": "ws1", "sessionId": a, "userId": "u1"}
            )
            probe = await snapshot_of(conn, a, "s2")
            assert probe["type"] == "messages_snapshot"
            # A place is free again; past max_closed the one closed longest ago is deleted.
            c = await create(conn, "r13", "C")
            reply = await op(conn, "session_close", "r14", b)
            assert reply["ok"] is True
            listed = await op(conn, "session_rename", "r15", c, title="Sea")
            assert listed["ok"] is True
            snap = await snapshot_of(conn, None, "m1")
            assert [(s["sessionId"], s["closed"]) for s in session_list(snap["messages"])] == [
                ("main", False),
                (b, True),
                (c, False),
            ]
            sessions_dir = tmp_path / "state" / "workspaces" / "ws1" / "sessions"
            assert sorted(p.name for p in sessions_dir.iterdir()) == sorted(
                [f"{b}.jsonl", f"{c}.jsonl"]
            )
            error = await snapshot_of(conn, a, "s3")
            assert (error["type"], error["code"], error["workspaceId"]) == (
                "error",
                "not_found",
                "ws1",
            )
            # An unknown session anywhere: not_found, with the ref.
            await conn.send(message("s_nope", "c2", "hi"))
            error, _ = await conn.until("error", ref="c2")
            assert (error["code"], error["workspaceId"]) == ("not_found", "ws1")
            error = await op(conn, "changes", "r16", "s_nope")
            assert (error["type"], error["code"]) == ("error", "not_found")
            # A bad sessionId is the decoder's bad_request.
            await conn.send(message("no spaces", "c3", "hi"))
            error, _ = await conn.until("error", ref="c3")
            assert error["code"] == "bad_request"


async def test_restart_keeps_open_and_closed_sessions(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(20):
        async with running(tmp_path, relay) as (conn, _hello):
            kept = await create(conn, "r1", "Kept")
            gone = await create(conn, "r2", "Closed")
            await conn.send(message(kept, "c1", "remember me"))
            await conn.until("status", sessionId=kept, status="running")
            await conn.until("status", sessionId=kept, status="idle")
            reply = await op(conn, "session_close", "r3", gone)
            assert reply["ok"] is True
            await conn.until("status", sessionId=gone, status="stopped")
            before = {sid: await snapshot_of(conn, sid, f"b{sid}") for sid in (None, kept, gone)}

        async with running(tmp_path, relay, assigned=False) as (conn, hello):
            entries = {e.get("sessionId", "main"): e for e in hello["workspaces"]}
            assert list(entries) == ["main", kept, gone]
            for sid, snap in before.items():
                entry = entries[sid or "main"]
                assert (entry["epoch"], entry["seq"], entry["status"]) == (
                    snap["epoch"],
                    snap["seq"],
                    snap["status"],
                )
            assert entries[gone]["statusDetail"] == "closed"
            assert entries[kept]["workspaceId"] == "ws1"
            for sid, snap in before.items():
                again = await snapshot_of(conn, sid, f"a{sid}")
                assert again["messages"] == snap["messages"]
            # The kept one goes on, the closed one stays closed.
            await conn.send(message(kept, "c1", "remember me"))
            error, _ = await conn.until("error", ref="c1")
            assert "already accepted" in error["message"]
            await conn.send(message(kept, "c2", "still here?"))
            echo, _ = await conn.until("user_message", clientMessageId="c2")
            assert (echo["sessionId"], echo["seq"]) == (kept, before[kept]["seq"] + 1)
            await conn.send(message(gone, "c3", "and you?"))
            error, _ = await conn.until("error", ref="c3")
            assert error["message"] == "session is closed"


def list_lines(frames: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every ``vmagent_sessions`` line's data among ``frames``."""
    return [
        f["data"]
        for f in frames
        if f["type"] == "claude_message" and f["data"].get("subtype") == "vmagent_sessions"
    ]


async def test_the_list_line_says_the_limit_and_a_new_limit_is_written(
    tmp_path: Path, relay: FakeRelay
) -> None:
    with trio.fail_after(20):
        async with running(tmp_path, relay, max_open=4) as (conn, _hello):
            sid = await create(conn, "r1", "One")
            snap = await snapshot_of(conn, None, "s1")
            # A fresh workspace under a limit other than the default gets a line at once.
            assert [d["maxSessions"] for d in list_lines(snap["messages"])] == [4, 4]
        # Restarted with another limit: the list is written again with it, same sessions.
        async with running(tmp_path, relay, assigned=False, max_open=2) as (conn, _hello):
            snap = await snapshot_of(conn, None, "s2")
            lines = list_lines(snap["messages"])
            assert [d["maxSessions"] for d in lines] == [4, 4, 2]
            assert [s["sessionId"] for s in lines[-1]["sessions"]] == ["main", sid]
            reply = await op(conn, "session_create", "r2")
            assert reply["error"]["message"] == "at most 2 open sessions"
        # The same limit again: nothing more is written.
        async with running(tmp_path, relay, assigned=False, max_open=2) as (conn, _hello):
            snap = await snapshot_of(conn, None, "s3")
            assert [d["maxSessions"] for d in list_lines(snap["messages"])] == [4, 4, 2]


async def test_release_stops_every_session(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(20):
        async with running(tmp_path, relay) as (conn, _hello):
            other = await create(conn, "r1")
            await conn.send({"type": "workspace_released", "workspaceId": "ws1"})
            stopped: set[str] = set()
            while stopped != {"main", other}:
                status, _ = await conn.until("status", status="stopped")
                stopped.add(status.get("sessionId", "main"))
            await conn.send(message(other, "c1", "hi"))
            error, _ = await conn.until("error", ref="c1")
            assert error["code"] == "not_found"
            # Assigned again: both sessions come back, their logs going on.
            await conn.send({"type": "workspace_assigned", "workspaceId": "ws1", "issue": ISSUE})
            idle: set[str] = set()
            while idle != {"main", other}:
                status, _ = await conn.until("status", status="idle")
                idle.add(status.get("sessionId", "main"))
            await conn.send(message(other, "c2", "back"))
            echo, _ = await conn.until("user_message", clientMessageId="c2")
            assert echo["sessionId"] == other


async def test_a_session_created_before_its_workspace_runs_starts_too(tmp_path: Path) -> None:
    agent = make_agent(tmp_path, FakeRelay())
    agent.store.prepare()
    send, receive = trio.open_memory_channel[str](1000)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            agent._nursery = nursery  # what Agent.run sets up, without dialling relayd
            agent._out = send
            # One step: the workspace's task has not run yet when the op comes.
            agent.dispatch(
                json.dumps({"type": "workspace_assigned", "workspaceId": "ws1", "issue": ISSUE})
            )
            agent.dispatch(
                json.dumps(
                    {
                        "type": "request",
                        "workspaceId": "ws1",
                        "requestId": "r1",
                        "op": "session_create",
                        "connectionId": "k1",
                    }
                )
            )
            sid = None
            idle: set[str | None] = set()
            async for frame in receive:
                body = json.loads(frame)
                if body["type"] == "reply":
                    sid = body["result"]["sessionId"]
                if body.get("status") == "idle":
                    idle.add(body.get("sessionId"))
                if sid is not None and idle == {None, sid}:
                    break
            nursery.cancel_scope.cancel()


class _SlowSettings(DemoSession):
    """A demo session whose change of settings waits until the test lets it go."""

    gate: trio.Event

    async def configure(self, settings: SessionSettings) -> None:
        await self.gate.wait()
        await super().configure(settings)


class _SlowSettingsEngine(DemoEngine):
    def __init__(self) -> None:
        super().__init__(word_delay=0)
        self.gate = trio.Event()

    @contextlib.asynccontextmanager
    async def open(self, host: Host) -> AsyncIterator[DemoSession]:
        session = _SlowSettings(host, self.word_delay)
        session.gate = self.gate
        yield session


async def test_a_change_of_settings_under_way_when_its_session_closes(
    tmp_path: Path, relay: FakeRelay
) -> None:
    engine = _SlowSettingsEngine()
    agent = agent_for(relay, tmp_path, engine)
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            conn = await relay.accept()
            await conn.recv()
            await assign(conn)
            sid = await create(conn, "r1")
            await conn.send(
                {
                    "type": "request",
                    "workspaceId": "ws1",
                    "sessionId": sid,
                    "requestId": "r2",
                    "op": "session_settings",
                    "args": {"model": "demo-large"},
                    "connectionId": "k1",
                }
            )
            reply = await op(conn, "session_close", "r3", sid)
            assert reply["ok"] is True
            await conn.until("status", sessionId=sid, status="stopped")
            engine.gate.set()
            reply, _ = await conn.until("reply", requestId="r2")
            assert reply["error"] == {"code": "bad_request", "message": "session is closed"}
            # Nothing was logged in the closed session, and the agent goes on.
            snap = await snapshot_of(conn, sid, "s1")
            assert not [m for m in snap["messages"] if m["type"] == "claude_message"]
            assert (await op(conn, "session_rename", "r4", title="Main"))["ok"] is True
            nursery.cancel_scope.cancel()


async def test_a_log_from_before_sessions_gets_a_created_at(
    tmp_path: Path, relay: FakeRelay
) -> None:
    old = tmp_path / "state" / "workspaces" / "ws1"
    old.mkdir(parents=True)
    header = {
        "type": "_log",
        "format": "ffcloud-vm-log",
        "version": 1,
        "workspaceId": "ws1",
        "epoch": "e" * 32,
    }
    (old / "log.jsonl").write_text(json.dumps(header) + "\n")
    with trio.fail_after(10):
        async with running(tmp_path, relay, assigned=False) as (conn, hello):
            assert [e["epoch"] for e in hello["workspaces"]] == ["e" * 32]
            await conn.until("status", status="idle")
            sid = await create(conn, "r1")
            snap = await snapshot_of(conn, None, "m1")
            main, other = session_list(snap["messages"])
            assert other["sessionId"] == sid
            for entry in (main, other):
                assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["createdAt"])


async def test_settings_and_models_are_per_session(tmp_path: Path, relay: FakeRelay) -> None:
    with trio.fail_after(10):
        async with running(tmp_path, relay) as (conn, _hello):
            sid = await create(conn, "r1")
            reply = await op(conn, "session_settings", "r2", sid, model="demo-large")
            assert reply["result"]["model"] == "demo-large"
            assert (await op(conn, "session_models", "r3", sid))["result"]["model"] == "demo-large"
            assert (await op(conn, "session_models", "r4"))["result"]["model"] is None
            for target, cid in ((sid, "c1"), (None, "c2")):
                await conn.send(message(target, cid, "hi"))
                init, _ = await conn.until("claude_message", sessionId=target)
                assert init["data"]["subtype"] == "init"
                assert init["data"]["model"] == ("demo-large" if target else "demo")
                await conn.until("status", sessionId=target, status="idle")


class _Spoofing(DemoSession):
    """A demo session whose engine prints a line posing as vmagent's list of sessions."""

    async def turn(self, text: str, attachments: Sequence[Attachment] = ()) -> None:
        fake = {"sessionId": "s_fake", "title": "", "createdAt": "", "closed": False}
        self.host.emit(
            json.dumps({"type": "system", "subtype": "vmagent_sessions", "sessions": [fake]})
        )
        # Words that merely mention it are any reply's.
        self.host.emit(json.dumps({"type": "system", "subtype": "x", "note": "vmagent_sessions"}))
        await super().turn(text, attachments)


class _SpoofingEngine(DemoEngine):
    @contextlib.asynccontextmanager
    async def open(self, host: Host) -> AsyncIterator[DemoSession]:
        yield _Spoofing(host, 0)


async def test_an_engine_cannot_write_the_session_list(tmp_path: Path, relay: FakeRelay) -> None:
    agent = agent_for(relay, tmp_path, _SpoofingEngine())
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            conn = await relay.accept()
            await conn.recv()
            await assign(conn)
            sid = await create(conn, "r1")
            await conn.send(message(None, "c1", "hi"))
            await conn.until("status", status="idle")
            snap = await snapshot_of(conn, None, "m1")
            assert [s["sessionId"] for s in session_list(snap["messages"])] == ["main", sid]
            notes = [
                m["data"].get("note")
                for m in snap["messages"]
                if m["type"] == "claude_message" and m["data"].get("subtype") == "x"
            ]
            assert notes == ["vmagent_sessions"]
            assert (await op(conn, "session_close", "r2", "s_fake"))["code"] == "not_found"
            nursery.cancel_scope.cancel()
