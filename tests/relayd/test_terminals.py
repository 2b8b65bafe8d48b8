"""relayd.router: a terminal's frames go between its VM and the one
connection that opened it, never to another, never into a room's log."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from relayd.router import Forward, Ownership
from tests.relayd.test_requests import reply, request, setup
from tests.relayd.test_router import Client, Vm, errors_to, frames_to, online


def output(ws: str, tid: str, conn: str, data: str = "42\r\n") -> str:
    return json.dumps(
        {
            "type": "terminal_output",
            "workspaceId": ws,
            "terminalId": tid,
            "connectionId": conn,
            "data": data,
        }
    )


def terminal(kind: str, ws: str, tid: str, **extra: Any) -> str:
    return json.dumps({"type": kind, "workspaceId": ws, "terminalId": tid, **extra})


def opened(r: Any, vm: Vm, client: Client, rid: str = "t-open", tid: str = "t1") -> str:
    """Open a terminal for ``client``; its connection id."""
    (forward,) = r.client_frame(client, request("w1", rid, op="terminal_open"))
    assert isinstance(forward, Forward)
    conn = json.loads(forward.frame)["connectionId"]
    answer = r.vm_frame(vm, reply("w1", rid, result={"terminalId": tid}))
    assert len(frames_to(answer, client)) == 1
    return str(conn)


def test_output_reaches_only_the_connection_that_opened_the_terminal() -> None:
    r, vm, a, b = setup()
    b.subscriptions.add(("w1", "main"))  # a viewer of the same workspace, another user
    a2 = Client("u1")  # and another connection of the same user
    r.client_joined(a2)
    conn = opened(r, vm, a)
    actions = r.vm_frame(vm, output("w1", "t1", conn))
    assert frames_to(actions, a) == [json.loads(output("w1", "t1", conn))]
    assert frames_to(actions, b) == []
    assert frames_to(actions, a2) == []
    # Not in the room's log: a subscriber replaying gets nothing of it.
    room = r.find_room("w1")
    assert room is None or room.head == 0
    # A frame naming another connection, or from another VM, is dropped.
    assert r.vm_frame(vm, output("w1", "t1", r.connection_id(a2))) == []
    r.ownership["w2"] = Ownership("w2", "vm2", frozenset({"u1"}), {})
    other = online(r, "vm2")
    assert r.vm_frame(other, output("w1", "t1", conn)) == []
    assert r.vm_frame(vm, output("w1", "nope", conn)) == []
    assert (r.stats.terminal_frames, r.stats.stale_terminal_frames) == (1, 3)


def test_only_the_opener_may_type_resize_or_close() -> None:
    r, vm, a, b = setup()
    conn = opened(r, vm, a)
    (forward,) = r.client_frame(a, terminal("terminal_input", "w1", "t1", data="ls\r"))
    assert isinstance(forward, Forward)
    assert forward.vm is vm
    body = json.loads(forward.frame)
    assert (body["connectionId"], body["userId"], body["data"]) == (conn, "u1", "ls\r")
    # b may see the workspace, but did not open t1.
    for kind, extra in (
        ("terminal_input", {"data": "x"}),
        ("terminal_resize", {"cols": 80, "rows": 24}),
        ("terminal_close", {}),
    ):
        assert errors_to(r.client_frame(b, terminal(kind, "w1", "t1", **extra)), b) == ["not_found"]
    # Bad sizes are refused before anything is forwarded.
    bad = terminal("terminal_resize", "w1", "t1", cols=0, rows=24)
    assert errors_to(r.client_frame(a, bad), a) == ["bad_request"]


def test_a_closed_connection_closes_its_terminals_on_the_vm() -> None:
    r, vm, a, _b = setup()
    conn = opened(r, vm, a)
    actions = r.client_left(a)
    (close,) = frames_to(actions, vm)
    assert close == {
        "type": "terminal_close",
        "workspaceId": "w1",
        "terminalId": "t1",
        "userId": "u1",
        "connectionId": conn,
    }
    # Later output of that terminal goes nowhere.
    assert r.vm_frame(vm, output("w1", "t1", conn)) == []
    assert len(r.terminals) == 0


def test_exit_ends_the_route_and_a_vm_that_leaves_ends_its_terminals() -> None:
    r, vm, a, _b = setup()
    conn = opened(r, vm, a)
    end = terminal("terminal_exit", "w1", "t1", connectionId=conn, exitCode=0)
    assert frames_to(r.vm_frame(vm, end), a) == [json.loads(end)]
    assert r.vm_frame(vm, output("w1", "t1", conn)) == []
    opened(r, vm, a, rid="t-open-2", tid="t2")
    actions = r.vm_left(vm)
    assert {
        "type": "terminal_exit",
        "workspaceId": "w1",
        "terminalId": "t2",
        "reason": "vm_offline",
    } in frames_to(actions, a)
    assert len(r.terminals) == 0


def test_a_failed_open_or_another_op_books_no_terminal() -> None:
    r, vm, a, _b = setup()
    r.client_frame(a, request("w1", "r1", op="terminal_open"))
    failed = json.dumps(
        {
            "type": "reply",
            "workspaceId": "w1",
            "requestId": "r1",
            "ok": False,
            "error": {"code": "forbidden", "message": "terminals are off on this VM"},
        }
    )
    assert errors_to(r.vm_frame(vm, failed), a) == []
    r.client_frame(a, request("w1", "r2", op="changes"))
    r.vm_frame(vm, reply("w1", "r2", result={"terminalId": "t9"}))
    assert len(r.terminals) == 0
    assert errors_to(r.client_frame(a, terminal("terminal_close", "w1", "t9")), a) == ["not_found"]


_KINDS = st.sampled_from(["terminal_input", "terminal_resize", "terminal_close"])
_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 2000),
    st.text(max_size=20),
    st.sampled_from(["w1", "w2", "t1", "t2"]),
)


@settings(max_examples=200, deadline=None)
@given(
    kind=_KINDS,
    fields=st.dictionaries(
        st.sampled_from(["workspaceId", "terminalId", "data", "cols", "rows", "connectionId"]),
        _VALUES,
    ),
)
def test_any_terminal_frame_from_another_connection_is_refused(
    kind: str, fields: dict[str, Any]
) -> None:
    r, vm, a, b = setup()
    opened(r, vm, a)
    actions = r.client_frame(b, json.dumps({"type": kind, **fields}))
    # b opened nothing: never forwarded, always one error, never a crash.
    assert not any(isinstance(x, Forward) for x in actions)
    assert len(errors_to(actions, b)) == 1
