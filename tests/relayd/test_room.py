"""The room state machine without sockets: examples, then property tests over interleavings.

The property test drives a :class:`Room` with a model VM (a log that grows, an
ordered pipe of frames and snapshot answers toward relayd, disconnects,
returns, lost logs) and model clients (subscribe fresh or resume, leave, and
read their cursors at their own pace: often, rarely, a little at a time, or
not at all for a long while), in any order hypothesis picks. Every client
checks what it receives as it arrives: after a replay or a snapshot, the
sequenced frames of one epoch, each exactly one above the previous, a
snapshot only after a ``subscribed``, and a re-snapshot of the same epoch
never behind what it already had. At the end the VM comes back, flushes and
answers everything, every client reads all it is owed, and every subscribed
client must have reached the VM's last seq.
"""

from __future__ import annotations

import collections
import itertools
import json
from typing import Any

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from relayd.aggregate import URGENCY, precedence
from relayd.room import Anomaly, RequestSnapshot, Room, StatusChanged, Wake, Workspace
from wire.envelope import vm_frame
from wire.protocol import MAIN_SESSION

# -- examples --------------------------------------------------------------


def frame(seq: int, epoch: str = "e1", kind: str = "claude_message") -> str:
    return vm_frame(kind, "w", seq=seq, epoch=epoch, fields={"n": seq})


def snapshot(request_id: str, seq: int, epoch: str = "e1", session_id: str | None = None) -> str:
    return vm_frame(
        "messages_snapshot",
        "w",
        session_id=session_id,
        seq=seq,
        epoch=epoch,
        request_id=request_id,
        fields={"messages": [], "pending": [], "status": "idle"},
    )


def read_texts(room: Room, client: object, max_chars: int = 1 << 30) -> tuple[list[str], list[Any]]:
    """Everything ``client``'s cursor has to send now, as its writer would read it."""
    cursor = room.cursor(client)
    assert cursor is not None
    texts: list[str] = []
    actions: list[Any] = []
    while cursor.awake:
        entries, _chars, more = room.read(cursor, max_chars)
        actions.extend(more)
        for entry in entries:
            texts.extend([entry] if isinstance(entry, str) else entry.frames)
    return texts, actions


def read(room: Room, client: object) -> list[dict[str, Any]]:
    """What ``client`` is owed now, parsed (asserting no snapshot_request came of it)."""
    texts, actions = read_texts(room, client)
    assert not requests(actions)
    return [json.loads(t) for t in texts]


def delivered(actions: list[Any], client: object, room: Room | None = None) -> list[dict[str, Any]]:
    """What ``client`` reads after the actions (the room is the one the actions woke)."""
    del actions
    assert room is not None
    return read(room, client)


def requests(actions: list[Any]) -> list[str]:
    return [a.request_id for a in actions if isinstance(a, RequestSnapshot)]


def make_room(**kwargs: int) -> Room:
    return Room("w", buffer_messages=kwargs.get("messages", 100), buffer_bytes=10**6)


def test_replay_within_the_buffer() -> None:
    room = make_room()
    room.vm_connected(("e1", 0))
    for seq in range(1, 6):
        room.vm_frame(seq, "e1", frame(seq))
    got = delivered(room.subscribe("c", last_seq=2, epoch="e1"), "c", room)
    assert got[0] == {"type": "subscribed", "workspaceId": "w", "epoch": "e1", "mode": "replay"}
    assert [m["seq"] for m in got[1:]] == [3, 4, 5]
    assert [m["seq"] for m in delivered(room.vm_frame(6, "e1", frame(6)), "c", room)] == [6]


def test_resume_older_than_the_buffer_gets_a_snapshot() -> None:
    room = make_room(messages=3)
    room.vm_connected(("e1", 0))
    for seq in range(1, 11):
        room.vm_frame(seq, "e1", frame(seq))
    assert (room.base, room.head) == (7, 10)
    actions = room.subscribe("c", last_seq=5, epoch="e1")
    assert delivered(actions, "c", room)[0]["mode"] == "snapshot"
    (rid,) = requests(actions)
    actions = room.vm_frame(11, "e1", frame(11))
    assert delivered(actions, "c", room) == []  # held until the snapshot
    got = delivered(room.vm_snapshot(rid, 9, "e1", snapshot(rid, 9)), "c", room)
    assert [m["type"] for m in got] == ["messages_snapshot", "claude_message", "claude_message"]
    assert [m["seq"] for m in got] == [9, 10, 11]


def test_clients_joining_a_pending_snapshot_share_it() -> None:
    room = make_room()
    room.vm_connected(("e1", 0))
    (rid,) = requests(room.subscribe("a"))
    room.vm_frame(1, "e1", frame(1))
    assert requests(room.subscribe("b")) == []
    for client in ("a", "b"):
        assert [m["mode"] for m in read(room, client)] == ["snapshot"]
    actions = room.vm_snapshot(rid, 0, "e1", snapshot(rid, 0))
    for client in ("a", "b"):
        assert [m["seq"] for m in delivered(actions, client, room)] == [0, 1]


def test_snapshot_older_than_the_buffer_is_asked_again() -> None:
    room = make_room(messages=2)
    room.vm_connected(("e1", 0))
    (rid,) = requests(room.subscribe("c"))
    assert [m["mode"] for m in read(room, "c")] == ["snapshot"]
    for seq in range(1, 6):
        room.vm_frame(seq, "e1", frame(seq))
    actions = room.vm_snapshot(rid, 1, "e1", snapshot(rid, 1))
    assert delivered(actions, "c", room) == []
    assert any(isinstance(a, Anomaly) for a in actions)
    (again,) = requests(actions)
    assert again != rid


def test_snapshot_ahead_of_frames_skips_what_it_covers() -> None:
    room = make_room()
    room.vm_connected(("e1", 0))
    (rid,) = requests(room.subscribe("c"))
    assert [m["mode"] for m in read(room, "c")] == ["snapshot"]
    assert [
        m["seq"] for m in delivered(room.vm_snapshot(rid, 3, "e1", snapshot(rid, 3)), "c", room)
    ] == [3]
    for seq in (1, 2, 3):
        assert delivered(room.vm_frame(seq, "e1", frame(seq)), "c", room) == []
    assert [m["seq"] for m in delivered(room.vm_frame(4, "e1", frame(4)), "c", room)] == [4]


def test_next_frames_takes_only_the_common_case() -> None:
    room = Room("w", buffer_messages=3, buffer_bytes=10**9)
    room.vm_connected(("e1", 0))
    room.subscribe("c", last_seq=0, epoch="e1")
    room.subscribe("late", last_seq=None, epoch=None)  # waits for a snapshot
    assert len(read(room, "c")) == len(read(room, "late")) == 1  # their subscribed
    woken = room.next_frames(1, "e1", [frame(1), frame(2)], "claude_message")
    assert woken is not None
    assert [c.client for c in woken] == ["c"]  # only the idle live cursor wakes
    assert room.head == 2
    for seq, epoch in ((2, "e1"), (4, "e1"), (3, "e2")):  # duplicate, gap, new epoch
        assert room.next_frames(seq, epoch, [frame(seq)], "claude_message") is None
        assert room.head == 2  # nothing happened: vm_frame decides
    assert [m["seq"] for m in read(room, "c")] == [1, 2]
    assert read(room, "late") == []
    room.subscribe("ahead", last_seq=2, epoch="e1")
    assert [m["type"] for m in read(room, "ahead")] == ["subscribed"]
    woken = room.next_frames(3, "e1", [frame(3), frame(4), frame(5)], "claude_message")
    assert woken is not None
    assert sorted(str(c.client) for c in woken) == ["ahead", "c"]
    # The log keeps its bound: a resume from before it is a snapshot.
    assert room.base == 2
    room.subscribe("r", last_seq=5, epoch="e1")
    assert read(room, "r")[0]["mode"] == "replay"


def test_duplicate_and_stale_frames_are_dropped() -> None:
    room = make_room()
    room.vm_connected(("e1", 0))
    room.subscribe("c", last_seq=0, epoch="e1")
    room.vm_frame(1, "e1", frame(1))
    assert [m.get("seq") for m in read(room, "c")] == [None, 1]
    actions = room.vm_frame(1, "e1", frame(1))
    assert delivered(actions, "c", room) == []
    assert isinstance(actions[0], Anomaly)
    assert isinstance(room.vm_snapshot("nope", 1, "e1", snapshot("nope", 1))[0], Anomaly)


def test_vm_offline_and_back_with_missed_messages() -> None:
    room = make_room()
    room.vm_connected(("e1", 0))
    room.subscribe("c", last_seq=0, epoch="e1")
    room.subscribe("s", status_only=True)
    room.vm_frame(1, "e1", frame(1))
    assert [m.get("seq") for m in read(room, "c")] == [None, 1]
    assert [m["type"] for m in read(room, "s")] == ["subscribed"]  # no status known yet
    actions = room.vm_disconnected()
    assert StatusChanged("offline") in actions
    for client in ("c", "s"):
        assert delivered(actions, client, room) == [
            {"type": "status", "workspaceId": "w", "status": "offline"}
        ]
    actions = room.vm_connected(("e1", 4))
    assert delivered(actions, "c", room)[0]["mode"] == "snapshot"
    (rid,) = requests(actions)
    got = delivered(room.vm_snapshot(rid, 4, "e1", snapshot(rid, 4)), "c", room)
    assert [m["seq"] for m in got] == [4]


def test_status_only_gets_status_frames_only() -> None:
    room = make_room()
    room.vm_connected(("e1", 0))
    room.vm_frame(1, "e1", frame(1, kind="status"), status="running")
    got = delivered(room.subscribe("s", status_only=True), "s", room)
    assert [m["type"] for m in got] == ["subscribed", "status"]
    assert got[0]["mode"] == "status"
    assert delivered(room.vm_frame(2, "e1", frame(2)), "s", room) == []
    actions = room.vm_frame(3, "e1", frame(3, kind="status"), status="idle")
    assert [m["seq"] for m in delivered(actions, "s", room)] == [3]
    assert StatusChanged("idle") in actions


def test_vm_back_with_an_unchanged_log_tells_every_subscriber_its_status() -> None:
    room = make_room()
    room.vm_connected(("e1", 0), ("idle", None))
    room.vm_frame(1, "e1", frame(1))
    (rid,) = requests(room.subscribe("c"))
    room.vm_snapshot(rid, 1, "e1", snapshot(rid, 1))
    room.subscribe("s", status_only=True)
    assert [m["type"] for m in read(room, "c")] == ["subscribed", "messages_snapshot"]
    assert [m["type"] for m in read(room, "s")] == ["subscribed", "status"]
    room.vm_disconnected()
    for client in ("c", "s"):
        assert [m["status"] for m in read(room, client)] == ["offline"]
    actions = room.vm_connected(("e1", 1), ("waiting_for_input", "a question is open"))
    want = {
        "type": "status",
        "workspaceId": "w",
        "status": "waiting_for_input",
        "detail": "a question is open",
    }
    assert delivered(actions, "c", room) == [want]  # no seq: the relay's word, not the log's
    assert delivered(actions, "s", room) == [want]
    assert StatusChanged("waiting_for_input") in actions
    assert requests(actions) == []  # the log did not move: no snapshot needed
    # A later status-only subscriber hears the same, not "offline".
    assert delivered(room.subscribe("t", status_only=True), "t", room)[1] == want


def test_hello_status_is_known_before_any_status_frame() -> None:
    room = make_room()
    actions = room.vm_connected(("e1", 7), ("idle", None))
    assert StatusChanged("idle") in actions
    got = delivered(room.subscribe("s", status_only=True), "s", room)
    assert got[1] == {"type": "status", "workspaceId": "w", "status": "idle"}


# -- property tests --------------------------------------------------------


@attrs.define
class ModelClient:
    """What one client has seen; it checks every frame as it arrives."""

    name: str
    subscribed: bool = False
    status_only: bool = False
    #: (epoch, seq) the client holds; None while it waits for a snapshot.
    state: tuple[str, int] | None = None
    #: The last (epoch, seq) it held in this subscription (a re-snapshot must not go back).
    held: tuple[str, int] | None = None
    #: lastSeq/epoch it subscribed with (for the replay answer).
    resume: tuple[str, int] | None = None
    received: int = 0
    #: The last frame a status-only client got.
    last: str | None = None

    def receive(self, text: str) -> None:
        msg = json.loads(text)
        kind = msg["type"]
        self.received += 1
        assert self.subscribed, f"{self.name} got {kind} while not subscribed"
        if kind == "subscribed":
            if msg["mode"] == "replay":
                assert self.resume is not None
                assert msg["epoch"] == self.resume[0]
                self.state = self.resume
            elif msg["mode"] == "snapshot":
                self.state = None
            else:
                assert self.status_only
            self.resume = None
        elif kind == "messages_snapshot":
            assert not self.status_only
            assert self.state is None, f"{self.name}: snapshot without a subscribed before it"
            if self.held is not None and self.held[0] == msg["epoch"]:
                assert msg["seq"] >= self.held[1], f"{self.name}: snapshot moved back"
            self.state = self.held = (msg["epoch"], msg["seq"])
        elif kind == "status" and "seq" not in msg:
            assert msg["status"] == "offline"
        else:
            if self.status_only:
                assert kind == "status"
                self.last = text
                return
            assert self.state is not None, f"{self.name}: {kind} {msg['seq']} before a baseline"
            epoch, seq = self.state
            assert (msg["epoch"], msg["seq"]) == (epoch, seq + 1), (
                f"{self.name}: got {msg['epoch']}/{msg['seq']} after {epoch}/{seq}"
            )
            self.state = self.held = (epoch, seq + 1)


@attrs.define
class ModelVm:
    epoch: str = "e1"
    epochs: int = 1
    log: int = 0  # seqs 1..log exist
    pushed: int = 0  # seqs 1..pushed are in the pipe or delivered
    online: bool = False
    pipe: collections.deque[tuple[Any, ...]] = attrs.Factory(collections.deque)
    requests: list[str] = attrs.Factory(list)

    def new_epoch(self) -> None:
        self.epochs += 1
        self.epoch = f"e{self.epochs}"
        self.log = self.pushed = 0


#: The status words the model VM cycles through (by seq), so that the aggregate moves.
WORDS = [str(w) for w in URGENCY]


class Harness:
    """One room (one session) with its model VM and clients; several can share a
    :class:`Workspace`, as the sessions of one workspace do."""

    def __init__(
        self,
        buffer_messages: int,
        session_id: str = MAIN_SESSION,
        workspace: Workspace | None = None,
    ) -> None:
        self.session_id = session_id
        self.room = Room(
            "w",
            session_id,
            buffer_messages=buffer_messages,
            buffer_bytes=10**9,
            workspace=workspace,
        )
        self.vm = ModelVm()
        self.clients = {name: ModelClient(name) for name in "abcd"}
        #: The control plane's view: the last status word reported.
        self.reported: list[str] = []
        #: The last status frame the room was given since the VM came back, and when.
        self.last_status: tuple[str, str, int] | None = None

    def apply(self, actions: list[Any]) -> None:
        for action in actions:
            if isinstance(action, StatusChanged):
                self.reported.append(action.status)
            if isinstance(action, Wake):
                for cursor in action.cursors:
                    assert cursor.awake, "woke a cursor that is not awake"
            elif isinstance(action, RequestSnapshot):
                assert self.vm.online, "snapshot requested from an offline VM"
                self.vm.requests.append(action.request_id)
        self.check_wakes()

    def check_wakes(self) -> None:
        """No lost wake-up: a cursor with something to send is awake."""
        for client in self.room.clients:
            cursor = self.room.cursor(client)
            assert cursor is not None
            assert cursor.awake or not self.room._has_more(cursor), cursor

    def read(self, name: str, max_chars: int) -> None:
        """One wake-up of the client's writer: at most about ``max_chars``."""
        cursor = self.room.cursor(name)
        if cursor is None or not cursor.awake:
            return
        entries, chars, actions = self.room.read(cursor, max_chars)
        texts = [t for e in entries for t in ([e] if isinstance(e, str) else e.frames)]
        assert chars == sum(map(len, texts))
        for text in texts:
            if not cursor.status_only:
                # Nothing of another session's log, nor of relayd's frames about it.
                written = None if self.session_id == MAIN_SESSION else self.session_id
                assert json.loads(text).get("sessionId") == written, (self.session_id, text)
            self.clients[name].receive(text)
        self.apply(actions)

    def read_all(self) -> None:
        for name in self.clients:
            cursor = self.room.cursor(name)
            while cursor is not None and cursor.awake:
                self.read(name, 1 << 30)

    def step(self, op: str, data: st.DataObject) -> None:
        vm, room = self.vm, self.room
        if op == "generate":
            vm.log += 1
        elif op == "push" and vm.online and vm.pushed < vm.log:
            vm.pushed += 1
            kind = "status" if vm.pushed % 4 == 0 else "claude_message"
            vm.pipe.append(("frame", vm.pushed, vm.epoch, kind))
        elif op == "answer" and vm.online and vm.requests:
            rid = vm.requests.pop(data.draw(st.integers(0, len(vm.requests) - 1)))
            # The VM builds the snapshot from its log at some moment: it may run
            # ahead of its pipe, or lag behind frames it already pushed.
            vm.pipe.append(("snapshot", rid, data.draw(st.integers(0, vm.log)), vm.epoch))
        elif op == "deliver" and vm.pipe:
            # One socket read's worth: up to 5 events in one go, as relayd takes them.
            self.deliver_read(data.draw(st.integers(1, 5)))
        elif op == "disconnect" and vm.online:
            vm.online = False
            vm.pipe.clear()
            vm.requests.clear()
            self.last_status = None
            self.apply(room.vm_disconnected())
        elif op == "reconnect" and not vm.online:
            self.reconnect(data.draw(st.sampled_from(["same", "lost", "unlisted"])))
        elif op == "reset_epoch" and vm.online:
            # The VM lost its log while connected; its next message says so by its epoch.
            vm.new_epoch()
            vm.log = 1
        elif op == "subscribe":
            client = self.clients[data.draw(st.sampled_from(sorted(self.clients)))]
            how = data.draw(st.sampled_from(["fresh", "resume", "status"]))
            self.subscribe(client, how)
        elif op == "unsubscribe":
            client = self.clients[data.draw(st.sampled_from(sorted(self.clients)))]
            client.subscribed = False
            self.apply(room.unsubscribe(client.name))
        elif op == "read":
            # Readers of every pace: a frame's worth, a few, or all that is owed.
            name = data.draw(st.sampled_from(sorted(self.clients)))
            self.read(name, data.draw(st.sampled_from([1, 300, 1 << 30])))

    def subscribe(self, client: ModelClient, how: str) -> None:
        client.subscribed = True
        client.status_only = how == "status"
        last_seq = epoch = None
        if how == "resume" and client.state is not None:
            epoch, last_seq = client.state
        client.resume = (epoch, last_seq) if epoch is not None and last_seq is not None else None
        client.state = client.held = None
        self.apply(
            self.room.subscribe(
                client.name, last_seq=last_seq, epoch=epoch, status_only=client.status_only
            )
        )

    def reconnect(self, how: str) -> None:
        vm = self.vm
        vm.online = True
        if how == "same":
            vm.pushed = vm.log  # what was never pushed live is in the log the hello reports
            self.apply(self.room.vm_connected((vm.epoch, vm.log)))
        elif how == "lost":
            vm.new_epoch()
            self.apply(self.room.vm_connected((vm.epoch, 0)))
        else:
            # A fresh log the hello does not list yet; its first message names the epoch.
            vm.new_epoch()
            vm.log = 1
            self.apply(self.room.vm_connected(None))

    def deliver_one(self) -> None:
        self.deliver_read(1)

    def deliver_read(self, count: int) -> None:
        """Deliver up to ``count`` events as relayd's VM reader does: consecutive
        frames (not status, same epoch, consecutive seqs) in one run, through
        ``next_frames``, else (and anything else) through the full path."""
        run: list[tuple[int, str, str]] = []

        def end_run() -> None:
            if not run:
                return
            seq, epoch = run[0][0], run[0][1]
            texts = [text for _, _, text in run]
            woken = self.room.next_frames(seq, epoch, texts, "claude_message")
            if woken is not None:
                self.apply([Wake(tuple(woken))])
            else:
                for seq_i, epoch_i, text in run:
                    self.apply(self.room.vm_frame(seq_i, epoch_i, text))
            run.clear()

        for _ in range(count):
            if not self.vm.pipe:
                break
            event = self.vm.pipe.popleft()
            if event[0] == "frame":
                _, seq, epoch, kind = event
                word = WORDS[seq % len(WORDS)]
                text = vm_frame(
                    kind,
                    "w",
                    session_id=self.session_id,
                    seq=seq,
                    epoch=epoch,
                    fields={"status": word},
                )
                if kind != "status":
                    if run and (epoch != run[-1][1] or seq != run[-1][0] + 1):
                        end_run()
                    run.append((seq, epoch, text))
                    continue
                end_run()
                fresh = epoch != self.room.epoch or seq > self.room.head
                self.apply(self.room.vm_frame(seq, epoch, text, status=word))
                if fresh:
                    self.last_status = (word, text, next(_DELIVERIES))
            else:
                end_run()
                _, rid, seq, epoch = event
                text = snapshot(rid, seq, epoch, self.session_id)
                self.apply(self.room.vm_snapshot(rid, seq, epoch, text))
        end_run()

    def settle(self) -> None:
        """The VM comes back; everything in flight is delivered, answered and read."""
        if not self.vm.online:
            self.reconnect("same")
        for _ in range(100):
            self.read_all()
            vm = self.vm
            while vm.pushed < vm.log:
                vm.pushed += 1
                vm.pipe.append(("frame", vm.pushed, vm.epoch, "claude_message"))
            while vm.requests:
                vm.pipe.append(("snapshot", vm.requests.pop(0), vm.log, vm.epoch))
            if not vm.pipe:
                self.read_all()
                if not vm.requests:
                    return
                continue
            while vm.pipe:
                self.deliver_one()
        raise AssertionError("relayd and the VM never settled")


OPS = st.sampled_from(
    ["generate"] * 4
    + ["push"] * 4
    + ["deliver"] * 6
    + ["answer"] * 2
    + ["subscribe"] * 2
    + ["read"] * 8
    + ["unsubscribe", "disconnect", "reconnect", "reset_epoch"]
)


#: When the model VM's status frames reached their room (for the aggregate's ties).
_DELIVERIES = itertools.count(1)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), buffer_messages=st.integers(1, 8), steps=st.integers(0, 150))
def test_every_client_stream_is_gapless_and_ordered(
    data: st.DataObject, buffer_messages: int, steps: int
) -> None:
    harness = Harness(buffer_messages)
    harness.vm.online = True
    harness.apply(harness.room.vm_connected((harness.vm.epoch, 0)))
    for _ in range(steps):
        harness.step(data.draw(OPS), data)
    harness.settle()
    for client in harness.clients.values():
        if client.subscribed and not client.status_only:
            assert client.state == (harness.vm.epoch, harness.vm.log), client
    assert harness.room.buffered <= buffer_messages


@settings(max_examples=100, deadline=None)
@given(
    data=st.data(),
    joins=st.lists(st.integers(0, 60), min_size=1, max_size=6),
    paces=st.lists(st.sampled_from([0, 1, 3, 10]), min_size=6, max_size=6),
    lag=st.integers(0, 10),
)
def test_many_clients_join_and_read_at_their_pace_while_the_vm_streams_fast(
    data: st.DataObject, joins: list[int], paces: list[int], lag: int
) -> None:
    """Clients join at any point of a fast stream and read every ``pace`` ticks
    (0: not at all until the end, a stalled reader); the VM answers snapshots
    late; every snapshot request is shared."""
    harness = Harness(buffer_messages=8)
    harness.vm.online = True
    harness.apply(harness.room.vm_connected(("e1", 0)))
    names = [f"j{i}" for i in range(len(joins))]
    for name in names:
        harness.clients[name] = ModelClient(name)
    for tick in range(64):
        vm = harness.vm
        vm.log += 1
        vm.pushed += 1
        vm.pipe.append(("frame", vm.pushed, vm.epoch, "claude_message"))
        for name, at, pace in zip(names, joins, paces, strict=False):
            if at == tick:
                harness.subscribe(harness.clients[name], "fresh")
            if pace and tick % pace == 0:
                harness.read(name, data.draw(st.sampled_from([200, 1 << 30])))
        assert len(vm.requests) <= 1  # one pending snapshot per room, however many wait
        if vm.requests and data.draw(st.integers(0, lag)) == 0:
            seq = data.draw(st.integers(max(vm.log - 4, 0), vm.log))
            vm.pipe.append(("snapshot", vm.requests.pop(0), seq, vm.epoch))
        while len(vm.pipe) > data.draw(st.integers(0, 3)):
            harness.deliver_one()
    harness.settle()
    for name in names:
        client = harness.clients[name]
        if client.subscribed:
            assert client.state == ("e1", harness.vm.log)


# -- several sessions ----------------------------------------------------------


def session_frame(session_id: str, seq: int, kind: str = "claude_message", **fields: Any) -> str:
    return vm_frame(kind, "w", session_id=session_id, seq=seq, epoch="e1", fields=fields)


def two_sessions() -> tuple[Workspace, Room, Room]:
    workspace = Workspace("w")
    main = Room("w", buffer_messages=100, buffer_bytes=10**6, workspace=workspace)
    other = Room("w", "s_2", buffer_messages=100, buffer_bytes=10**6, workspace=workspace)
    for room in (main, other):
        room.vm_connected(("e1", 0))
    return workspace, main, other


def test_each_session_is_its_own_log() -> None:
    workspace, main, other = two_sessions()
    assert workspace.rooms == {"main": main, "s_2": other}
    main.subscribe("c", last_seq=0, epoch="e1")
    other.subscribe("c", last_seq=0, epoch="e1")
    for seq in (1, 2, 3):
        main.vm_frame(seq, "e1", session_frame("main", seq))
    other.vm_frame(1, "e1", session_frame("s_2", 1))
    got_main, got_other = read(main, "c"), read(other, "c")
    assert got_main[0] == {
        "type": "subscribed",
        "workspaceId": "w",
        "epoch": "e1",
        "mode": "replay",
    }
    assert got_other[0] == {
        "type": "subscribed",
        "workspaceId": "w",
        "sessionId": "s_2",
        "epoch": "e1",
        "mode": "replay",
    }
    assert [m["seq"] for m in got_main[1:]] == [1, 2, 3]
    assert [(m["sessionId"], m["seq"]) for m in got_other[1:]] == [("s_2", 1)]
    # A gap in one session re-snapshots its readers; the other's stream goes on untouched.
    actions = other.vm_frame(5, "e1", session_frame("s_2", 5))
    (rid,) = requests(actions)
    assert [m["mode"] for m in read(other, "c")] == ["snapshot"]
    main.vm_frame(4, "e1", session_frame("main", 4))
    assert [m["seq"] for m in read(main, "c")] == [4]
    assert main.pending_request is None
    got = delivered(other.vm_snapshot(rid, 5, "e1", session_frame("s_2", 5)), "c", other)
    assert [m["seq"] for m in got] == [5]


def test_offline_and_back_online_per_session() -> None:
    workspace, main, other = two_sessions()
    main.subscribe("c", last_seq=0, epoch="e1")
    other.subscribe("c", last_seq=0, epoch="e1")
    main.subscribe("s", status_only=True)
    for room in (main, other):
        read(room, "c")
    read(main, "s")
    main.vm_disconnected()
    other.vm_disconnected()
    assert read(main, "c") == [{"type": "status", "workspaceId": "w", "status": "offline"}]
    assert read(other, "c") == [
        {"type": "status", "workspaceId": "w", "sessionId": "s_2", "status": "offline"}
    ]
    # statusOnly: the workspace's offline, once, without a session.
    assert read(main, "s") == [{"type": "status", "workspaceId": "w", "status": "offline"}]
    main.vm_connected(("e1", 0), ("idle", None))
    assert read(main, "s") == []  # s_2 is not told yet: still offline as a whole
    actions = other.vm_connected(("e1", 0), ("waiting_for_input", None))
    assert read(main, "c") == [{"type": "status", "workspaceId": "w", "status": "idle"}]
    want = {"type": "status", "workspaceId": "w", "sessionId": "s_2", "status": "waiting_for_input"}
    assert delivered(actions, "c", other) == [want]
    assert read(main, "s") == [want]
    assert StatusChanged("waiting_for_input") in actions
    assert workspace.status == "waiting_for_input"


def test_status_only_sees_the_most_urgent_session() -> None:
    workspace, main, other = two_sessions()
    third = Room("w", "s_3", buffer_messages=10, buffer_bytes=10**6, workspace=workspace)
    third.vm_connected(("e1", 0))
    main.subscribe("s", status_only=True)
    assert [m["type"] for m in read(main, "s")] == ["subscribed"]

    def status(room: Room, seq: int, word: str) -> list[Any]:
        text = session_frame(room.session_id, seq, "status", status=word)
        return room.vm_frame(seq, "e1", text, status=word)

    assert StatusChanged("idle") in status(main, 1, "idle")
    assert [m["status"] for m in read(main, "s")] == ["idle"]
    actions = status(other, 1, "waiting_for_input")
    assert StatusChanged("waiting_for_input") in actions
    assert [(m.get("sessionId"), m["status"], m["seq"]) for m in read(main, "s")] == [
        ("s_2", "waiting_for_input", 1)
    ]
    # Less urgent elsewhere: nothing changes for the list.
    assert status(main, 2, "running") == []
    assert read(main, "s") == []
    # A tie goes to main...
    status(other, 2, "running")
    assert [(m.get("sessionId"), m["status"]) for m in read(main, "s")] == [(None, "running")]
    # ...and between others to the most recently changed.
    status(main, 3, "idle")
    status(third, 1, "running")
    assert [(m.get("sessionId"), m["status"]) for m in read(main, "s")] == [("s_3", "running")]
    status(other, 3, "running")
    assert [(m.get("sessionId"), m["status"]) for m in read(main, "s")] == [("s_2", "running")]
    # A status-only subscriber's frames are the chosen ones as the VM sent them.
    assert workspace.chosen() == (other.status_frame, "running")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), buffer_messages=st.integers(1, 8), steps=st.integers(0, 200))
def test_two_sessions_interleaved_each_stream_is_gapless_and_the_list_sees_the_most_urgent(
    data: st.DataObject, buffer_messages: int, steps: int
) -> None:
    """Two sessions of one workspace, their frames, snapshots, resumes and
    resnapshots interleaved in any order, one VM for both (they go offline and
    come back together): every client's stream of each session is gapless and
    carries only that session; at the end each reached its session's last seq,
    and the workspace's statusOnly readers and the control plane see the status
    of the most urgent session."""
    workspace = Workspace("w")
    sessions = [
        Harness(buffer_messages, MAIN_SESSION, workspace),
        Harness(buffer_messages, "s_2", workspace),
    ]
    for harness in sessions:
        harness.vm.online = True
        harness.apply(harness.room.vm_connected((harness.vm.epoch, 0)))
    main = sessions[0]
    reported: list[str] = []
    for harness in sessions:
        harness.reported = reported  # one control plane for the workspace
    for _ in range(steps):
        op = data.draw(OPS)
        if op in ("disconnect", "reconnect"):
            for harness in sessions:  # one VM: both sessions at once
                harness.step(op, data)
            continue
        harness = sessions[data.draw(st.integers(0, 1))]
        if op == "subscribe" and harness is not main:
            # statusOnly subscriptions are the workspace's: main's room has them.
            client = harness.clients[data.draw(st.sampled_from(sorted(harness.clients)))]
            harness.subscribe(client, data.draw(st.sampled_from(["fresh", "resume"])))
            continue
        harness.step(op, data)
    for harness in sessions:
        if not harness.vm.online:
            harness.reconnect("same")
    for harness in sessions:
        harness.settle()
    main.read_all()  # what the other session's settling changed for the list
    for harness in sessions:
        for client in harness.clients.values():
            if client.subscribed and not client.status_only:
                assert client.state == (harness.vm.epoch, harness.vm.log), client
        assert harness.room.buffered <= buffer_messages
    # The aggregate, from what the model VM sent each session since it came back.
    known = [(h.session_id, *h.last_status) for h in sessions if h.last_status is not None]
    if known:
        _, word, text, _ = min(known, key=lambda k: precedence(k[1], k[0], k[3]))
        assert workspace.chosen() == (text, word)
        assert workspace.status == word
        assert reported[-1] == word
        for client in main.clients.values():
            if client.subscribed and client.status_only:
                assert client.last == text, client
