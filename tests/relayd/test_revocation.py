"""Revoked tokens at relayd: the list's rules, the ``revoke`` control request, the
file read at start and on SIGHUP, and what happens to live connections."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import example, given
from hypothesis import strategies as st
from trio_websocket import ConnectionRejected

from relayd.revocations import RevocationState
from tests.support.keys import KeyRing
from tests.support.relayd import (
    ControlError,
    Relayd,
    close_code,
    recv_json,
    send_json,
    start_relayd,
)
from wire.protocol import Scope
from wire.revocations import (
    BadRevocations,
    Revocations,
    from_json,
    merge,
    prune,
    read_file,
    write_file,
)
from wire.tokens import Claims

LATER = time.time() + 3600


def claims(sub: str, scope: Scope = Scope.CLIENT, **more: Any) -> Claims:
    return Claims(sub=sub, scope=scope, exp=LATER, iat=0, jti="j", iss="ffcloud", **more)


# --- the list's rules --------------------------------------------------------


def test_what_a_list_refuses() -> None:
    revoked = Revocations(
        sessions={"s-out": LATER}, users={"alice": (2, LATER)}, vms=frozenset({"vm-x"})
    )
    assert revoked.refuses(claims("bob", sid="s-out", gen=0)) == "the session has ended"
    assert revoked.refuses(claims("alice", sid="s2", gen=1)) == "the password was changed"
    assert revoked.refuses(claims("alice", sid="s2")) == "the password was changed"  # no gen
    assert revoked.refuses(claims("alice", sid="s2", gen=2)) is None  # logged in since
    assert revoked.refuses(claims("bob", sid="s2", gen=0)) is None
    assert revoked.refuses(claims("vm-x", Scope.VM)) == "the VM was revoked"
    assert revoked.refuses(claims("vm-y", Scope.VM)) is None
    # A user id that happens to equal a revoked VM's is not a VM.
    assert revoked.refuses(claims("vm-x", sid="s3", gen=0)) is None


ids = st.text(alphabet="abcdef0123", min_size=1, max_size=6)
times = st.floats(min_value=0, max_value=2e9)
lists = st.builds(
    Revocations,
    st.dictionaries(ids, times, max_size=5),
    st.dictionaries(ids, st.tuples(st.integers(0, 9), times), max_size=5),
    st.frozensets(ids, max_size=5),
)


@given(lists, lists)
def test_merging_loses_nothing_in_either_order(a: Revocations, b: Revocations) -> None:
    assert merge(a, b) == merge(b, a)
    merged = merge(a, b)
    for part in (a, b):
        assert set(part.sessions) <= set(merged.sessions)
        assert part.vms <= merged.vms
        for user, (gen, _until) in part.users.items():
            assert merged.users[user][0] >= gen
    assert merge(merged, a) == merged  # the same list again changes nothing


@given(lists)
def test_the_documented_form_round_trips(revoked: Revocations) -> None:
    assert from_json(json.loads(json.dumps(revoked.to_json()))) == revoked


@given(lists, times)
def test_pruning_keeps_what_still_matters(revoked: Revocations, now: float) -> None:
    kept = prune(revoked, now)
    assert all(until > now for until in kept.sessions.values())
    assert kept.vms == revoked.vms  # VMs stay revoked for good
    assert {s for s, u in revoked.sessions.items() if u > now} == set(kept.sessions)


@pytest.mark.parametrize(
    "bad",
    [
        [],
        {"sessions": "s1"},
        {"sessions": [{"sid": "", "until": 1}]},
        {"sessions": [{"sid": "s", "until": "soon"}]},
        {"users": [{"userId": "u", "minGen": -1, "until": 1}]},
        {"users": [{"userId": "u", "minGen": True, "until": 1}]},
        {"vms": [1]},
    ],
)
def test_malformed_lists_are_refused(bad: object) -> None:
    with pytest.raises(BadRevocations):
        from_json(bad)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**400), max_value=10**400)
    | st.floats()
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)
shaped = st.fixed_dictionaries(
    {},
    optional={
        "sessions": st.lists(
            st.fixed_dictionaries({}, optional={"sid": json_values, "until": json_values}),
            max_size=3,
        ),
        "users": st.lists(
            st.fixed_dictionaries(
                {}, optional={"userId": json_values, "minGen": json_values, "until": json_values}
            ),
            max_size=3,
        ),
        "vms": st.lists(json_values, max_size=3),
    },
)


@given(json_values | shaped)
@example({"sessions": [{"sid": "s", "until": 10**400}]})  # too big for a float
@example({"users": [{"userId": "u", "minGen": 1, "until": float("nan")}]})
@example({"sessions": [{"sid": "s", "until": float("inf")}]})
def test_any_json_is_a_list_or_refused_as_malformed(obj: object) -> None:
    try:
        parsed = from_json(obj)
    except BadRevocations:
        return
    assert from_json(parsed.to_json()) == parsed


def test_a_missing_file_is_an_empty_list_and_a_bad_one_is_kept_out(tmp_path: Path) -> None:
    assert read_file(tmp_path / "none.json") == Revocations()
    state = RevocationState()
    state.add(Revocations(vms=frozenset({"vm1"})))
    (tmp_path / "bad.json").write_text("{not json")
    assert not state.load_file(str(tmp_path / "bad.json"))
    assert state.current.vms == {"vm1"}  # what was known stays
    write_file(tmp_path / "good.json", Revocations(vms=frozenset({"vm2"})))
    assert state.load_file(str(tmp_path / "good.json"))
    assert state.current.vms == {"vm1", "vm2"}  # merged, not replaced


# --- the real relayd ---------------------------------------------------------


async def status_of(relay: Relayd, kind: str, sub: str, token: str) -> int:
    connect = relay.connect_client if kind == "client" else relay.connect_vm
    try:
        async with connect(sub, token=token):
            return 101
    except ConnectionRejected as exc:
        body = json.loads(exc.body or b"{}")
        assert body["error"]["code"] == "token_revoked", body
        return int(exc.status_code)


async def test_a_revoke_request_closes_and_refuses_the_tokens_it_lists(tmp_path: Path) -> None:
    keys = KeyRing()
    old = keys.token("alice", Scope.CLIENT, extra={"sid": "s-old", "gen": 0})
    other = keys.token("alice", Scope.CLIENT, extra={"sid": "s-new", "gen": 1})
    with trio.fail_after(20):
        async with start_relayd(tmp_path, keys=keys) as relay:
            async with (
                relay.connect_client("alice", token=old) as stale,
                relay.connect_client("alice", token=other) as fresh,
            ):
                reply = await relay.control.request(
                    "revoke",
                    sessions=[{"sid": "s-old", "until": LATER}],
                    users=[{"userId": "alice", "minGen": 1, "until": LATER}],
                    vms=[],
                )
                assert reply["closed"] == 1
                assert await close_code(stale) == 4403
                # The other login of the same user is not touched.
                await send_json(fresh, {"type": "subscribe", "workspaceId": "nope"})
                assert (await recv_json(fresh))["code"] == "not_found"
                # `auth` with a revoked token is refused; the connection stays.
                await send_json(fresh, {"type": "auth", "token": old})
                answer = await recv_json(fresh)
                assert answer["type"] == "error"
                assert answer["code"] == "forbidden"
                assert "session has ended" in answer["message"]
            assert await status_of(relay, "client", "alice", old) == 401
            assert await status_of(relay, "client", "alice", other) == 101
            with pytest.raises(ControlError):
                await relay.control.request("revoke", sessions=[{"sid": 5}])
            with pytest.raises(ControlError):  # refused, and the control link stays up
                await relay.control.request("revoke", sessions=[{"sid": "s", "until": 10**400}])
            assert (await relay.control.request("stats"))["relayId"]


async def test_a_revoked_vm_is_refused_from_the_file_without_a_control_plane(
    tmp_path: Path,
) -> None:
    keys = KeyRing()
    write_file(tmp_path / "revoked.json", Revocations(vms=frozenset({"vm-gone"})))
    with trio.fail_after(20):
        # The file beside jwks.json is read at start: no control plane has spoken.
        async with start_relayd(tmp_path, keys=keys) as relay:
            assert await status_of(relay, "vm", "vm-gone", keys.vm_token("vm-gone")) == 401
            async with relay.connect_vm("vm-live") as live:
                await send_json(
                    live,
                    {"type": "hello", "vmId": "vm-live", "agentVersion": "t", "workspaces": []},
                )
                # `controlplane vm revoke` with no control plane running wrote the file;
                # SIGHUP makes relayd read it and cut the live VM off.
                write_file(tmp_path / "revoked.json", Revocations(vms=frozenset({"vm-live"})))
                await relay.reload_and_wait()
                assert await close_code(live) == 4403
            # Both stay refused: lists merge, the first VM was not forgotten.
            assert await status_of(relay, "vm", "vm-gone", keys.vm_token("vm-gone")) == 401
            assert await status_of(relay, "vm", "vm-live", keys.vm_token("vm-live")) == 401
