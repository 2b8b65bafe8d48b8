"""The list of a workspace's sessions, as a pure state machine: ops, limits, the list line."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmagent.session_list import (
    MAIN_SESSION,
    MAX_TITLE,
    SESSIONS_SUBTYPE,
    SessionList,
    SessionOpError,
    new_session_id,
    title_of,
)
from wire.protocol import ErrorCode, is_session_id


def test_create_up_to_the_limit_then_rate_limited() -> None:
    sessions = SessionList(max_open=3, main_created_at="2026-01-01T00:00:00Z")
    a = sessions.create("a", session_id="s_a", now="t1")
    sessions.create("", session_id="s_b", now="t2")
    assert sessions.open_ids() == [MAIN_SESSION, "s_a", "s_b"]
    with pytest.raises(SessionOpError) as caught:
        sessions.create("c", session_id="s_c", now="t3")
    assert (caught.value.code, caught.value.message) == (
        ErrorCode.RATE_LIMITED,
        "at most 3 open sessions",
    )
    # A closed one frees a place.
    assert sessions.close(a.session_id, now="t4") == (True, [])
    sessions.create("c", session_id="s_c", now="t5")
    assert sessions.open_ids() == [MAIN_SESSION, "s_b", "s_c"]
    assert sessions.closed_ids() == ["s_a"]


def test_main_cannot_be_closed_and_closing_twice_changes_nothing() -> None:
    sessions = SessionList()
    with pytest.raises(SessionOpError) as caught:
        sessions.close(MAIN_SESSION, now="t")
    assert (caught.value.code, caught.value.message) == (
        ErrorCode.BAD_REQUEST,
        "the first session cannot be closed",
    )
    sessions.create("x", session_id="s_x", now="t1")
    assert sessions.close("s_x", now="t2") == (True, [])
    assert sessions.close("s_x", now="t3") == (False, [])
    assert sessions.get("s_x") is not None
    assert sessions.get("s_x").closed_at == "t2"  # type: ignore[union-attr]
    with pytest.raises(SessionOpError) as unknown:
        sessions.close("s_nope", now="t")
    assert unknown.value.code == ErrorCode.NOT_FOUND


def test_past_the_closed_limit_the_one_closed_longest_ago_goes() -> None:
    sessions = SessionList(max_open=10, max_closed=2)
    for name in "abcd":
        sessions.create(name, session_id=f"s_{name}", now=f"c{name}")
    # Closed in another order than created; all in the same second for two of them.
    assert sessions.close("s_c", now="t1") == (True, [])
    assert sessions.close("s_a", now="t2") == (True, [])
    assert sessions.close("s_d", now="t2") == (True, ["s_c"])
    # The one closed now is never the one to go, even with an older clock.
    assert sessions.close("s_b", now="t0") == (True, ["s_a"])
    assert sessions.closed_ids() == ["s_b", "s_d"]


def test_rename_and_titles() -> None:
    sessions = SessionList()
    assert sessions.rename(MAIN_SESSION, "Main work") is True
    assert sessions.rename(MAIN_SESSION, "Main work") is False
    assert title_of({}, required=False) == ""
    assert title_of({"title": "t" * MAX_TITLE}, required=True) == "t" * MAX_TITLE
    refusals: list[tuple[dict[str, Any], bool]] = [
        ({}, True),
        ({"title": ""}, True),
        ({"title": "t" * (MAX_TITLE + 1)}, False),
        ({"title": 5}, False),
        ({"title": None}, True),
    ]
    for args, required in refusals:
        with pytest.raises(SessionOpError) as caught:
            title_of(args, required=required)
        assert caught.value.code == ErrorCode.BAD_REQUEST


def test_the_list_line_round_trips() -> None:
    sessions = SessionList(main_created_at="2026-01-01T00:00:00Z")
    sessions.create("second", session_id="s_1", now="2026-01-01T00:01:00Z")
    sessions.create("third", session_id="s_2", now="2026-01-01T00:02:00Z")
    sessions.close("s_1", now="2026-01-01T00:03:00Z")
    data = json.loads(sessions.line())
    assert data == {
        "type": "system",
        "subtype": SESSIONS_SUBTYPE,
        "sessions": [
            {
                "sessionId": "main",
                "title": "",
                "createdAt": "2026-01-01T00:00:00Z",
                "closed": False,
            },
            {
                "sessionId": "s_1",
                "title": "second",
                "createdAt": "2026-01-01T00:01:00Z",
                "closed": True,
                "closedAt": "2026-01-01T00:03:00Z",
            },
            {
                "sessionId": "s_2",
                "title": "third",
                "createdAt": "2026-01-01T00:02:00Z",
                "closed": False,
            },
        ],
        "maxSessions": 5,
    }
    again = SessionList.from_line(data)
    assert again.line() == sessions.line()
    # No line yet: main alone.
    assert SessionList.from_line(None).open_ids() == [MAIN_SESSION]


def test_the_list_line_says_the_open_limit() -> None:
    # The limit is the VM's own (--max-sessions), not the one an older line said.
    data = json.loads(SessionList(max_open=3).line())
    assert data["maxSessions"] == 3
    assert json.loads(SessionList.from_line(data, max_open=7).line())["maxSessions"] == 7


def test_a_damaged_line_keeps_what_is_well_formed() -> None:
    data = {
        "sessions": [
            {"sessionId": "s_ok", "title": "fine", "createdAt": "t", "closed": False},
            {"sessionId": "bad id!", "title": "x"},
            {"sessionId": "s_ok", "title": "duplicate"},
            "not an object",
            {"sessionId": "main", "closed": True, "title": "Main"},
        ]
    }
    sessions = SessionList.from_line(data)
    assert sessions.open_ids() == [MAIN_SESSION, "s_ok"]
    assert sessions.get(MAIN_SESSION).title == "Main"  # type: ignore[union-attr]
    assert sessions.get("s_ok").title == "fine"  # type: ignore[union-attr]


def test_session_ids() -> None:
    made = new_session_id()
    assert made.startswith("s_")
    assert len(made) == 34
    assert is_session_id(made)
    assert is_session_id(MAIN_SESSION)
    for bad in ["", "a" * 65, "a b", "ü", "../x", 5, None]:
        assert not is_session_id(bad)


json_values = st.none() | st.booleans() | st.integers() | st.text(max_size=110)
op_args = st.dictionaries(st.sampled_from(["title", "other"]), json_values, max_size=2)
ops = st.lists(
    st.tuples(st.sampled_from(["create", "rename", "close"]), st.integers(0, 8), op_args),
    max_size=40,
)


@given(ops, st.integers(1, 5), st.integers(1, 4))
def test_any_ops_keep_the_list_sound(
    steps: list[tuple[str, int, dict[str, Any]]], max_open: int, max_closed: int
) -> None:
    sessions = SessionList(max_open=max_open, max_closed=max_closed)
    created = 0
    for n, (op, pick, args) in enumerate(steps):
        ids = [e.session_id for e in sessions.entries]
        target = ids[pick % len(ids)]
        before = sessions.line()
        refused: SessionOpError | None = None
        try:
            if op == "create":
                created += 1
                sessions.create(
                    title_of(args, required=False), session_id=f"s_{created}", now=f"t{n:03}"
                )
            elif op == "rename":
                sessions.rename(target, title_of(args, required=True))
            else:
                _changed, deleted = sessions.close(target, now=f"t{n:03}")
                assert target not in deleted
        except SessionOpError as exc:
            refused = exc
        if refused is not None:
            assert refused.code in (ErrorCode.BAD_REQUEST, ErrorCode.RATE_LIMITED)
            assert refused.message
            assert sessions.line() == before  # a refusal changes nothing
        entries = sessions.entries
        assert entries[0].session_id == MAIN_SESSION
        assert not entries[0].closed
        assert len(sessions.open_ids()) <= max_open
        assert len(sessions.closed_ids()) <= max_closed
        assert len({e.session_id for e in entries}) == len(entries)
        assert all(len(e.title) <= MAX_TITLE for e in entries)
        again = SessionList.from_line(json.loads(sessions.line()), max_open=max_open)
        assert again.line() == sessions.line()
