"""Fuzzing what vmagent gets from relayd: forwarded client messages and relay frames.

Hypothesis sends an agent (the demo engine, no sockets) a workspace it holds
and then hostile frames: ``user_message`` with odd or huge text,
``question_response`` answers of every shape (also for the question really
pending), ``permission_response`` with odd ``allow`` and ``message``,
``interrupt``, ``snapshot_request``, ``user_message`` with attachments (good,
refused, malformed), ``workspace_assigned`` with odd issue
objects, ``workspace_released``, ``request`` with odd ops and args (the
session ops among them), odd ids and user ids, ``sessionId`` s (a session the
agent created, main, unknown ones, malformed ones), surrogate escapes and
repeated keys, binary frames. What must hold:

* no exception escapes the agent's frame handling, and no workspace session
  fails (the agent would mark it ``error``);
* every frame the agent posts for relayd is a JSON object UTF-8 can encode;
* every session's log still loads, as it is (not set aside as corrupt), and
  the session list in main's log names exactly the session logs kept.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import trio
import trio.testing
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.support.images import b64, png
from tests.vmagent.fakerelay import ISSUE
from vmagent.agent import Agent, AgentSettings
from vmagent.engines.demo import DemoEngine
from vmagent.publish import PUBLISH_OPS
from vmagent.session_list import LIST_OPS, SessionList
from vmagent.store import Store
from vmagent.workdir import WorkdirPlan
from vmagent.workspace_ops import OPS

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
#: Stands for the request id the demo engine is waiting on, filled in when sent.
PENDING = "<pending>"
#: Stands for the newest session the agent created, filled in when sent.
SESSION = "<session>"

odd_text = st.text(max_size=20) | st.sampled_from(["\ud800", "a\udfffb", "", "\x00", "\u2028"])
values: st.SearchStrategy[Any] = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.sampled_from([10**30, -1, 0])
    | st.floats(allow_nan=False)
    | odd_text,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(odd_text, inner, max_size=3),
    max_leaves=6,
)


def mostly(good: st.SearchStrategy[Any], bad: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Three times in four a good value: a frame must get far to find a fault."""
    return st.integers(0, 3).flatmap(lambda n: good if n else bad)


workspace_ids = mostly(st.just("ws1"), st.sampled_from(["ws2", "..", "a/b", "x" * 300]) | odd_text)
request_ids = mostly(st.just(PENDING), st.just("q-nope") | odd_text)
#: Texts that make the demo engine ask a question or a permission, or talk long.
texts = mostly(st.sampled_from(["question", "permission", "long", "hi"]), odd_text | values)
#: Files of a user_message: good ones, refused ones (base64, type, size), odd shapes.
_image_data = st.sampled_from(
    [b64(png()), b64(b"GIF89a" + bytes(10)), "not base64", b64(b"\x89PNG\r\n\x1a\n" + bytes(10**6))]
)
attachments = st.lists(
    st.fixed_dictionaries(
        {"type": st.just("image"), "mediaType": st.sampled_from(["image/png", "image/gif"])},
        optional={"data": _image_data, "name": odd_text},
    )
    | st.fixed_dictionaries(
        {"type": st.just("text"), "name": mostly(st.just("n.txt"), odd_text)},
        optional={"text": st.text(max_size=20) | st.just("x" * 300_000)},
    )
    | values,
    max_size=10,
)
issue_objects = st.one_of(
    st.just(ISSUE),
    st.fixed_dictionaries(
        {},
        optional={
            "url": odd_text | values,
            "owner": st.sampled_from(["o", "-rf", "..", "a" * 300]) | odd_text,
            "repo": st.sampled_from(["r", "--upload-pack=x", ".git"]) | odd_text,
            "number": st.sampled_from([7, 0, -1, 10**30, 2**63]) | values,
            "title": odd_text | values,
            "body": odd_text | st.just("b" * 100_000) | values,
        },
    ),
    values,
)


@st.composite
def frames(draw: st.DrawFn) -> dict[str, Any]:
    """A frame relayd could send, then mutated."""
    kind = draw(
        mostly(
            st.sampled_from(
                [
                    "user_message",
                    "question_response",
                    "permission_response",
                    "interrupt",
                    "snapshot_request",
                    "workspace_assigned",
                    "workspace_released",
                    "request",
                    "session_op",
                ]
            ),
            odd_text,
        )
    )
    body: dict[str, Any] = {"type": kind, "workspaceId": draw(workspace_ids)}
    if kind == "session_op":  # a request for one of the session ops, its args odd or not
        body["type"] = "request"
        body.update(
            requestId=draw(st.sampled_from(["o1", "o2"]) | odd_text),
            # Twice as many creates: the other ops need a session to act on.
            op=draw(st.sampled_from(["session_create", *sorted(LIST_OPS)])),
            args=draw(
                mostly(
                    st.fixed_dictionaries(
                        {},
                        optional={
                            "title": mostly(
                                st.sampled_from(["T", "x" * 100]), st.just("x" * 101) | values
                            )
                        },
                    ),
                    values,
                )
            ),
            connectionId="k1",
        )
    if kind == "user_message":
        body.update(
            clientMessageId=draw(st.sampled_from(["c1", "c2"]) | odd_text), text=draw(texts)
        )
        if draw(st.integers(0, 2)) == 0:
            body["attachments"] = draw(mostly(attachments, values))
    elif kind == "question_response":
        answer = st.text(max_size=10) | st.lists(st.text(max_size=10), max_size=3)
        body.update(
            requestId=draw(request_ids),
            answers=draw(st.dictionaries(st.text(max_size=10), answer, max_size=3) | values),
        )
    elif kind == "permission_response":
        body.update(requestId=draw(request_ids), allow=draw(mostly(st.booleans(), values)))
        if draw(st.booleans()):
            body["message"] = draw(odd_text | values)
    elif kind == "snapshot_request":
        body["requestId"] = draw(request_ids)
    elif kind == "workspace_assigned":
        body["issue"] = draw(issue_objects)
    elif kind == "request":  # the panels' ops on the working tree
        body.update(
            requestId=draw(st.sampled_from(["o1", "o2"]) | odd_text),
            op=draw(mostly(st.sampled_from(sorted(OPS | PUBLISH_OPS)), odd_text)),
            args=draw(
                mostly(
                    st.fixed_dictionaries(
                        {"path": st.sampled_from(["README.md", "../x", ".git/config"]) | values},
                        # The publishing ops' arguments (no token on this VM: no network).
                        optional={"message": odd_text | values, "title": odd_text | values},
                    ),
                    values,
                )
            ),
            connectionId=draw(st.just("k1") | values),
        )
    if draw(st.booleans()):
        body["sessionId"] = draw(
            mostly(st.just(SESSION), st.sampled_from(["main", "s_nope", "a b", ""]) | values)
        )
    if draw(st.integers(0, 2)):
        body["userId"] = draw(st.sampled_from(["u1", "u2"]) | odd_text)
    if draw(st.integers(0, 5)) == 0:
        del body[draw(st.sampled_from(sorted(body)))]
    if draw(st.integers(0, 5)) == 0:
        body[draw(odd_text)] = draw(values)
    return body


def as_text(
    body: dict[str, Any], pending: str | None, session: str | None, repeat: str | None
) -> str:
    """The frame's text: escapes as written (surrogates too), a key repeated if asked."""
    text = json.dumps(body)
    if pending is not None:
        text = text.replace(json.dumps(PENDING), json.dumps(pending))
    text = text.replace(json.dumps(SESSION), json.dumps(session or "main"))
    if repeat is not None and text.endswith("}"):
        text = text[:-1] + ("," if len(text) > 2 else "") + f'{json.dumps(repeat)}:"ws2"}}'
    return text


sent = st.tuples(frames(), st.none() | st.sampled_from(["type", "workspaceId", "requestId"]))
hostile = st.one_of(
    sent,
    st.binary(max_size=20),
    st.sampled_from(["{", "[]", "null", '"x"', "[" * 5000, '{"type":"user_message"' * 2]),
)


class Failures(logging.Handler):
    """Records the agent's "workspace session failed"."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def pending_request(posted: list[str]) -> str | None:
    """The newest question or permission the agent asked about and nobody answered."""
    asked: list[str] = []
    for frame in posted:
        body = json.loads(frame)
        if body.get("type") in ("user_question", "permission_request"):
            asked.append(body["requestId"])
        elif body.get("type") == "request_resolved" and body.get("requestId") in asked:
            asked.remove(body["requestId"])
    return asked[-1] if asked else None


def created_session(posted: list[str]) -> str | None:
    """The newest session a ``session_create`` reply named."""
    made = [
        body["result"]["sessionId"]
        for body in map(json.loads, posted)
        if body.get("type") == "reply"
        and body.get("ok")
        and isinstance(body.get("result"), dict)
        and "title" in body["result"]
    ]
    return made[-1] if made else None


@FUZZ
@given(st.lists(hostile, min_size=1, max_size=8))
# Seen once: answering the pending question with an answer list.
@example(
    [
        (
            {
                "type": "user_message",
                "workspaceId": "ws1",
                "clientMessageId": "c",
                "text": "question",
            },
            None,
        ),
        (
            {
                "type": "question_response",
                "workspaceId": "ws1",
                "requestId": PENDING,
                "answers": {"Which colour should the demo button be?": ["Teal", "x"]},
                "userId": "u1",
            },
            None,
        ),
    ]
)
async def test_no_frame_breaks_the_agent_or_its_log(batch: list[Any]) -> None:
    failures = Failures()
    logging.getLogger("vmagent").addHandler(failures)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            await _drive(Path(tmp), batch, failures)
    finally:
        logging.getLogger("vmagent").removeHandler(failures)


async def _drive(tmp: Path, batch: list[Any], failures: Failures) -> None:
    agent = Agent(
        AgentSettings(
            relay_url="ws://127.0.0.1:9",  # never dialled: frames are handed in
            token_file=tmp / "token",
            state_dir=tmp / "state",
            plan=WorkdirPlan(clone=False),
        ),
        DemoEngine(word_delay=0),
    )
    agent.store.prepare()
    send, receive = trio.open_memory_channel[str](100_000)
    posted: list[str] = []

    async def settle() -> None:
        await trio.testing.wait_all_tasks_blocked(0.01)
        while True:
            try:
                posted.append(receive.receive_nowait())
            except trio.WouldBlock:
                return

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            agent._nursery = nursery  # what Agent.run sets up, without dialling relayd
            agent._out = send
            nursery.start_soon(agent.ops.run)
            agent.dispatch(
                json.dumps({"type": "workspace_assigned", "workspaceId": "ws1", "issue": ISSUE})
            )
            await settle()
            for item in batch:
                if isinstance(item, tuple):
                    frame: str | bytes = as_text(
                        item[0], pending_request(posted), created_session(posted), item[1]
                    )
                else:
                    frame = item
                agent.dispatch(frame)
                await settle()
            for frame in posted:
                body = json.loads(frame.encode("utf-8"))  # what the socket will do
                assert isinstance(body, dict)
                assert isinstance(body.get("type"), str)
            assert not failures.records, failures.records[0].getMessage()
            convs = {
                (ws, conv.sid): conv
                for ws, workspace in agent.workspaces.items()
                for conv in workspace.conversations()
            }
            nursery.cancel_scope.cancel()  # the sessions close their logs
    # The logs load as they are, and say what the agent last said.
    store = Store(tmp / "state")
    for workspace_id in store.known_ids():
        conv, logfile = store.open(workspace_id)
        logfile.close()
        listed = SessionList.from_line(conv.sessions_data)
        kept = [e.session_id for e in listed.entries[1:]]
        on_disk = store.log_path(workspace_id, "x").parent
        assert sorted(p.stem for p in on_disk.glob("*.jsonl")) == sorted(kept)
        for sid in ["main", *kept]:
            if sid != "main":
                conv, logfile = store.open(workspace_id, sid)
                logfile.close()
            seen = convs.get((workspace_id, sid))
            if seen is not None:
                assert (conv.seq, conv.status) == (seen.seq, seen.status)
    assert not failures.records, failures.records[0].getMessage()
    assert not list((tmp / "state").rglob("*.corrupt-*")), "a log was set aside as unreadable"
