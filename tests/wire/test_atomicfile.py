"""wire.atomicfile: several writers at once, the mode from the start, no leftovers."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from wire.atomicfile import write_atomic


def test_writers_at_once_never_fail_and_leave_one_whole_file(tmp_path: Path) -> None:
    target = tmp_path / "revoked.json"
    payloads = [bytes([65 + i]) * (1000 + i) for i in range(8)]
    errors: list[BaseException] = []

    def writer(data: bytes) -> None:
        try:
            for _ in range(50):
                write_atomic(target, data, 0o644)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert target.read_bytes() in payloads
    assert [p.name for p in tmp_path.iterdir()] == ["revoked.json"]


@given(data=st.binary(max_size=256), mode=st.sampled_from([0o600, 0o644, 0o640]))
def test_the_file_holds_the_data_with_the_mode(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, mode: int
) -> None:
    directory = tmp_path_factory.mktemp("atomic")
    target = directory / "f"
    target.write_bytes(b"old")
    write_atomic(target, data, mode)
    assert target.read_bytes() == data
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert sorted(p.name for p in directory.iterdir()) == ["f"]


def test_a_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "f"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes", 0o600)  # type: ignore[arg-type]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["f"]
