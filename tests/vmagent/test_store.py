"""The on-disk logs: append, read back after a restart, set a damaged log aside."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vmagent.store import Store, valid_workspace_id
from wire.messages import UserMessage


def test_log_survives_reopen(tmp_path: Path) -> None:
    store = Store(tmp_path / "state")
    store.prepare()
    conv, logfile = store.open("ws1")
    logfile.append(conv.set_status("idle"))
    logfile.append(conv.accept_user_message(UserMessage("ws1", "c1", "hello"))[1])
    logfile.append(conv.claude_line('{"type":"system","subtype":"init","session_id":"s9"}'))
    logfile.close()
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700

    assert store.known_ids() == ["ws1"]
    again, logfile = store.open("ws1")
    logfile.close()
    assert (again.epoch, again.seq, again.session_id) == (conv.epoch, 3, "s9")
    assert again.snapshot("r") == conv.snapshot("r")


def test_errors_are_not_logged(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.prepare()
    conv, logfile = store.open("ws1")
    logfile.append(conv.accept_user_message(UserMessage("ws1", "c1", "hello"))[1])
    logfile.append(conv.accept_user_message(UserMessage("ws1", "c1", "hello"))[1])
    logfile.close()
    lines = (tmp_path / "workspaces" / "ws1" / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["type"] for line in lines] == ["_log", "user_message"]


def test_damaged_log_is_set_aside_and_a_new_epoch_starts(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.prepare()
    conv, logfile = store.open("ws1")
    logfile.append(conv.set_status("idle"))
    logfile.close()
    path = tmp_path / "workspaces" / "ws1" / "log.jsonl"
    damaged = path.read_bytes() + b'{"type":"status","seq":2'  # cut short by a crash
    path.write_bytes(damaged)

    fresh, logfile = store.open("ws1")
    logfile.close()
    assert fresh.epoch != conv.epoch
    assert fresh.seq == 0
    [aside] = [p for p in path.parent.iterdir() if p.name.startswith("log.jsonl.corrupt-")]
    assert aside.read_bytes() == damaged
    assert json.loads(path.read_text())["epoch"] == fresh.epoch


@pytest.mark.parametrize("bad", ["", "../x", "a/b", ".hidden", "x" * 129, "sp ace"])
def test_unsafe_workspace_ids_are_refused(tmp_path: Path, bad: str) -> None:
    assert not valid_workspace_id(bad)
    with pytest.raises(ValueError, match="directory name"):
        Store(tmp_path).workspace_dir(bad)


def test_a_session_log_beside_main_and_never_another_sessions(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.prepare()
    conv, logfile = store.open("ws1", "s_a")
    logfile.append(conv.set_status("idle"))
    logfile.close()
    path = tmp_path / "workspaces" / "ws1" / "sessions" / "s_a.jsonl"
    header, status = (json.loads(line) for line in path.read_text().splitlines())
    assert (header["sessionId"], status["sessionId"]) == ("s_a", "s_a")
    assert store.known_ids() == []  # main's log makes a workspace known, not a session's
    again, logfile = store.open("ws1", "s_a")
    logfile.close()
    assert (again.sid, again.epoch, again.seq) == ("s_a", conv.epoch, 1)
    assert again.snapshot("r") == conv.snapshot("r")
    # Another session's log under this name is not ours: set aside, a new epoch.
    path.rename(path.with_name("s_b.jsonl"))
    other, logfile = store.open("ws1", "s_b")
    logfile.close()
    assert other.epoch != conv.epoch
    assert [p.name.split(".corrupt-")[0] for p in path.parent.glob("*.corrupt-*")] == ["s_b.jsonl"]
    store.delete("ws1", "s_b")
    assert not path.with_name("s_b.jsonl").exists()
    with pytest.raises(ValueError, match="never deleted"):
        store.delete("ws1", "main")
    with pytest.raises(ValueError, match="file name"):
        store.log_path("ws1", "../x")
