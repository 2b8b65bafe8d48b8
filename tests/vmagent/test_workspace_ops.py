"""vmagent.workspace_ops against a real clone of a local bare repository (file://)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.vmagent.gitrepo import git, make_origin
from vmagent.workspace_ops import OpError, OpLimits, check_path, confine, cut_text, run_op
from wire.protocol import ErrorCode

LIMITS = OpLimits()


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A clone on ff/issue-8 (WIP.md pushed), one commit not pushed, edits not committed."""
    base = make_origin(tmp_path)
    work = tmp_path / "work"
    git("clone", "--quiet", f"{base}/o/r.git", str(work))
    git("checkout", "--quiet", "ff/issue-8", cwd=work)
    (work / "app.py").write_text("a = 1\nb = 2\n")
    git("add", "app.py", cwd=work)
    git("commit", "--quiet", "-m", "app", cwd=work)
    (work / "README.md").write_text("hello\nworld\n")  # modified, uncommitted
    (work / "new.txt").write_text("one\ntwo\nthree\n")  # untracked
    (work / ".gitignore").write_text("*.log\n")
    (work / "noise.log").write_text("ignored\n")
    (work / "blob.bin").write_bytes(b"\0\1\2" * 10)
    return work


def run(root: Path, op: str, limits: OpLimits = LIMITS, **args: Any) -> Any:
    async def main() -> Any:
        return await run_op(root, op, args, limits)

    return trio.run(main)


def by_path(result: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["path"]: f for f in result["files"]}


def test_changes_against_the_base_tell_uncommitted_from_unpushed(clone: Path) -> None:
    result = run(clone, "changes")
    assert result["base"] == "origin/HEAD"
    assert result["branch"] == "ff/issue-8"
    files = by_path(result)
    assert "noise.log" not in files
    readme = files["README.md"]
    assert (readme["status"], readme["added"], readme["removed"]) == ("modified", 1, 0)
    assert (readme["uncommitted"], readme["unpushed"]) == (True, False)
    app = files["app.py"]
    assert (app["status"], app["added"], app["uncommitted"], app["unpushed"]) == (
        "added",
        2,
        False,
        True,
    )
    # Pushed to the branch already, but still a change against main.
    wip = files["WIP.md"]
    assert (wip["status"], wip["uncommitted"], wip["unpushed"]) == ("added", False, False)
    assert files["new.txt"]["added"] == 3
    assert files["new.txt"]["uncommitted"] is True
    assert files["blob.bin"]["binary"] is True


def test_deleted_and_renamed_files(clone: Path) -> None:
    git("mv", "app.py", "main.py", cwd=clone)
    git("commit", "--quiet", "-m", "rename", cwd=clone)
    (clone / "WIP.md").unlink()
    files = by_path(run(clone, "changes"))
    # app.py never reached the base: against it, main.py is simply added.
    assert files["main.py"]["status"] == "added"
    assert "app.py" not in files
    assert "WIP.md" not in files  # added on the branch and deleted again: no change
    git("rm", "--quiet", "-f", "README.md", cwd=clone)
    assert by_path(run(clone, "changes"))["README.md"]["status"] == "deleted"


def test_a_rename_of_a_base_file(clone: Path) -> None:
    (clone / "README.md").write_text("hello\n")
    git("mv", "README.md", "READ.md", cwd=clone)
    entry = by_path(run(clone, "changes"))["READ.md"]
    assert (entry["status"], entry["oldPath"]) == ("renamed", "README.md")


def test_diff_of_a_tracked_and_an_untracked_file_and_the_cut(clone: Path) -> None:
    tracked = run(clone, "diff", path="README.md")
    assert "+world" in tracked["diff"]
    assert tracked["diff"].startswith("diff --git a/README.md b/README.md")
    assert tracked["truncated"] is False
    untracked = run(clone, "diff", path="new.txt")
    assert "+three" in untracked["diff"]
    (clone / "big.txt").write_text("".join(f"line {i}\n" for i in range(10_000)))
    cut = run(clone, "diff", OpLimits(max_diff_chars=1000), path="big.txt")
    assert cut["truncated"] is True
    assert len(cut["diff"]) <= 1000
    assert cut["diff"].endswith("\n")


def test_files_is_the_tree_without_what_git_ignores(clone: Path) -> None:
    files = run(clone, "files")["files"]
    assert files == sorted(files)
    assert {"README.md", "WIP.md", "app.py", "new.txt", ".gitignore", "blob.bin"} <= set(files)
    assert "noise.log" not in files
    assert not any(f.startswith(".git/") for f in files)
    assert run(clone, "files", OpLimits(max_files=2))["truncated"] is True


def test_file_text_binary_large_and_missing(clone: Path) -> None:
    text = run(clone, "file", path="app.py")
    assert (text["content"], text["binary"], text["truncated"]) == ("a = 1\nb = 2\n", False, False)
    assert run(clone, "file", path="blob.bin")["binary"] is True
    (clone / "big.txt").write_text("é" * 1000)
    big = run(clone, "file", OpLimits(max_file_bytes=101), path="big.txt")
    assert big["truncated"] is True
    assert big["content"] == "é" * 50  # a character cut in two is left out
    with pytest.raises(OpError) as missing:
        run(clone, "file", path="nope.txt")
    assert missing.value.code == ErrorCode.NOT_FOUND


def test_paths_that_escape_are_refused(clone: Path, tmp_path: Path) -> None:
    (tmp_path / "secret").write_text("s")
    (clone / "link").symlink_to(tmp_path / "secret")
    (clone / "inner").symlink_to("app.py")
    for bad in ("../secret", "/etc/passwd", "link", ".git/config", "a/../../x", "", "a\0b"):
        with pytest.raises(OpError) as refused:
            run(clone, "file", path=bad)
        assert refused.value.code == ErrorCode.BAD_REQUEST, bad
    assert run(clone, "file", path="inner")["content"] == "a = 1\nb = 2\n"
    assert run(clone, "file", path="./app.py")["path"] == "app.py"


def test_not_a_repository_and_an_unknown_op(tmp_path: Path) -> None:
    with pytest.raises(OpError) as not_repo:
        run(tmp_path, "changes")
    assert not_repo.value.code == ErrorCode.NOT_FOUND
    with pytest.raises(OpError) as unknown:
        run(tmp_path, "rm")
    assert unknown.value.code == ErrorCode.UNKNOWN_TYPE


def test_a_repository_with_no_commit_yet(tmp_path: Path) -> None:
    git("init", "--quiet", str(tmp_path / "r"))
    (tmp_path / "r" / "a.txt").write_text("x\n")
    files = by_path(run(tmp_path / "r", "changes"))
    assert files["a.txt"]["uncommitted"] is True
    assert run(tmp_path / "r", "files")["files"] == ["a.txt"]


def test_cut_text_keeps_whole_lines() -> None:
    assert cut_text("ab\ncd\nef", 100) == ("ab\ncd\nef", False)
    assert cut_text("ab\ncd\nef", 6) == ("ab\ncd\n", True)
    assert cut_text("abcdef", 3) == ("abc", True)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=60), st.none(), st.integers(), st.lists(st.text(max_size=5))))
def test_no_path_escapes_the_tree(tmp_path: Path, path: object) -> None:
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    code: ErrorCode | None = None
    try:
        clean = check_path(path)
        target = confine(root, clean)
    except OpError as exc:
        code = exc.code
    if code is not None:
        assert code == ErrorCode.BAD_REQUEST
        return
    top = root.resolve()
    assert target.is_relative_to(top)
    assert ".." not in Path(clean).parts
    assert not target.is_relative_to(top / ".git")


@pytest.fixture(scope="module")
def fuzz_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One repository for the fuzzers, with a symlink out and a secret beside it."""
    top = tmp_path_factory.mktemp("fuzz")
    (top / "secret").write_text("s")
    root = top / "repo"
    git("init", "--quiet", str(root))
    (root / "a.txt").write_text("a\n")
    (root / "dir").mkdir()
    (root / "dir" / "b.txt").write_text("b\n")
    (root / "out").symlink_to(top / "secret")
    git("add", "a.txt", "dir/b.txt", cwd=root)
    git("commit", "--quiet", "-m", "x", cwd=root)
    return root


PATHS = st.one_of(
    st.text(max_size=40),
    st.lists(
        st.sampled_from(["..", ".", "", "a.txt", "dir", "b.txt", "out", ".git", "/", "~"])
    ).map("/".join),
    st.none(),
    st.integers(),
)


@settings(max_examples=60, deadline=None)
@given(op=st.sampled_from(["file", "diff"]), path=PATHS)
def test_any_path_gets_a_result_or_a_clear_error(fuzz_repo: Path, op: str, path: object) -> None:
    failure: OpError | None = None
    result: dict[str, Any] = {}
    try:
        result = run(fuzz_repo, op, path=path)
    except OpError as exc:
        failure = exc
    if failure is not None:
        assert failure.code in (ErrorCode.BAD_REQUEST, ErrorCode.NOT_FOUND)
        assert failure.message
        return
    assert isinstance(path, str)
    assert result.get("content") != "s"  # the secret beside the tree is never read
    resolved = (fuzz_repo / result["path"]).resolve()
    assert resolved.is_relative_to(fuzz_repo.resolve())


def test_odd_file_names_come_through_whole(clone: Path) -> None:
    names = ["a b\tc.txt", "é ü.md", "-rf", "line\nbreak.txt"]
    for name in names:
        (clone / name).write_text("x\n")
    git("add", "--", "a b\tc.txt", "é ü.md", cwd=clone)
    files = by_path(run(clone, "changes"))
    for name in names:
        assert files[name]["added"] == 1, name
    assert set(names) <= set(run(clone, "files")["files"])
    assert "+x" in run(clone, "diff", path="-rf")["diff"]
    assert run(clone, "file", path="line\nbreak.txt")["content"] == "x\n"
