"""The ``request`` ops on a workspace's git working tree: changes, diff, files, file.

Each op is read-only (the publishing ops are in :mod:`vmagent.publish`).
git runs as a subprocess with its arguments as a list (never a shell),
paths after ``--``, the repository pinned by ``GIT_DIR`` and
``GIT_WORK_TREE`` (so a working tree that is not a repository never falls
through to one above it), a timeout, and a cap on what it may print. Paths
from a client go through :func:`check_path` (pure) and :func:`confine`
(the file system) before anything reads them. Failures are :class:`OpError`
with an ``error`` code and words for the user (docs/protocol.md section 3,
"Requests and replies").
"""

from __future__ import annotations

import codecs
import os
import subprocess
from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from typing import Any, Final

import attrs
import trio

from wire.protocol import ErrorCode

#: git's empty tree: the base of a repository with no base branch.
EMPTY_TREE: Final = "4b825dc642cb6eb9a060e54bf8d69288fbee4904"
#: Where the base branch is looked for, in order.
BASE_REFS: Final = (
    "refs/remotes/origin/HEAD",
    "refs/remotes/origin/main",
    "refs/remotes/origin/master",
    "refs/heads/main",
    "refs/heads/master",
)
#: Longest path a client may name, and bytes of a file looked at for a NUL.
MAX_PATH_LENGTH: Final = 4096
BINARY_SNIFF: Final = 8192
#: stderr kept from a git that failed (its last line is the error).
MAX_STDERR: Final = 64 * 1024

DEFAULT_OP_TIMEOUT: Final = 10.0
DEFAULT_MAX_DIFF_CHARS: Final = 200_000
DEFAULT_MAX_FILES: Final = 20_000
DEFAULT_MAX_FILE_BYTES: Final = 512 * 1024
DEFAULT_MAX_GIT_OUTPUT: Final = 16 * 1024 * 1024

OPS: Final = frozenset({"changes", "diff", "files", "file"})


class OpError(Exception):
    """An op that cannot be done: ``code`` is an ``error`` code, ``message`` for the user."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.frozen
class OpLimits:
    """The bounds of every op (named settings of vmagent)."""

    op_timeout: float = DEFAULT_OP_TIMEOUT
    max_diff_chars: int = DEFAULT_MAX_DIFF_CHARS
    max_files: int = DEFAULT_MAX_FILES
    max_file_bytes: int = DEFAULT_MAX_FILE_BYTES
    max_git_output: int = DEFAULT_MAX_GIT_OUTPUT


# -- paths (pure) ---------------------------------------------------------------


def check_path(path: object) -> str:
    """A client's path as a clean relative POSIX path, or :class:`OpError` ``bad_request``.

    Refused: not a string, empty, too long, absolute, a NUL or backslash, a
    ``..`` or ``.git`` component. ``.`` and repeated slashes are dropped.
    """
    if not isinstance(path, str) or not path or len(path) > MAX_PATH_LENGTH:
        raise OpError(ErrorCode.BAD_REQUEST, "path must be a non-empty string")
    if "\0" in path or "\\" in path:
        raise OpError(ErrorCode.BAD_REQUEST, "path must not hold NUL or backslash")
    if path.startswith("/"):
        raise OpError(ErrorCode.BAD_REQUEST, "path must be relative to the working tree")
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise OpError(ErrorCode.BAD_REQUEST, "path names no file")
    if any(p == ".." for p in parts):
        raise OpError(ErrorCode.BAD_REQUEST, "path must not climb out with '..'")
    if any(p.lower() == ".git" for p in parts):
        raise OpError(ErrorCode.BAD_REQUEST, "path must not reach into .git")
    return str(PurePosixPath(*parts))


def confine(root: Path, rel: str) -> Path:
    """``root/rel`` with every symlink resolved, if it stays inside ``root`` (and out of .git)."""
    top = root.resolve()
    target = (top / rel).resolve()
    if not target.is_relative_to(top) or target.is_relative_to(top / ".git"):
        raise OpError(ErrorCode.BAD_REQUEST, "path leads outside the working tree")
    return target


def cut_text(text: str, limit: int) -> tuple[str, bool]:
    """``text`` cut to at most ``limit`` characters at a line end (when it has one)."""
    if len(text) <= limit:
        return text, False
    head = text[:limit]
    end = head.rfind("\n")
    return (head[: end + 1] if end >= 0 else head), True


def parse_name_status(out: bytes) -> list[tuple[str, str, str | None]]:
    """``git diff --name-status -z``: (status, path, old path for a rename)."""
    fields = out.decode(errors="surrogateescape").split("\0")
    rows: list[tuple[str, str, str | None]] = []
    i = 0
    while i < len(fields) and fields[i]:
        code = fields[i][0]
        if code in "RC" and i + 2 < len(fields):
            old, new = fields[i + 1], fields[i + 2]
            rows.append(("renamed" if code == "R" else "added", new, old))
            i += 3
            continue
        if i + 1 >= len(fields):
            break
        status = {"A": "added", "D": "deleted"}.get(code, "modified")
        rows.append((status, fields[i + 1], None))
        i += 2
    return rows


def parse_numstat(out: bytes) -> dict[str, tuple[int, int, bool]]:
    """``git diff --numstat -z``: path -> (added, removed, binary)."""
    fields = out.decode(errors="surrogateescape").split("\0")
    stats: dict[str, tuple[int, int, bool]] = {}
    i = 0
    while i < len(fields) and fields[i]:
        added, removed, path = [*fields[i].split("\t", 2), "", ""][:3]
        if path == "" and i + 2 < len(fields):
            path = fields[i + 2]  # a rename: empty path, then old and new
            i += 3
        else:
            i += 1
        binary = added == "-"
        stats[path] = (0 if binary else int(added), 0 if binary else int(removed), binary)
    return stats


def split_z(out: bytes) -> list[str]:
    """NUL-separated paths."""
    return [p for p in out.decode(errors="surrogateescape").split("\0") if p]


# -- git ----------------------------------------------------------------------------


def _env(root: Path) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        "LC_ALL": "C",
        "GIT_DIR": str(root / ".git"),
        "GIT_WORK_TREE": str(root),
        "GIT_CEILING_DIRECTORIES": str(root.parent),
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_OPTIONAL_LOCKS": "0",  # a read must not take the index lock from Claude's git
        "GIT_CONFIG_NOSYSTEM": "1",
    }


async def git(
    root: Path,
    args: list[str],
    limits: OpLimits,
    *,
    ok: tuple[int, ...] = (0,),
    extra_env: Mapping[str, str] | None = None,
    seconds: float | None = None,
) -> tuple[int, bytes, bool]:
    """Run ``git args`` in ``root``: (exit status, stdout cut at the output cap, cut?).

    ``extra_env`` adds variables (credentials go there, never into ``args``,
    which ``ps`` shows); ``seconds`` replaces the op timeout (a push is slower).
    """
    cmd = ["git", "-c", "core.fsmonitor=false", "-c", "core.quotepath=off", *args]
    out = bytearray()
    err = bytearray()
    cut = False
    with trio.move_on_after(limits.op_timeout if seconds is None else seconds) as scope:
        proc = await trio.lowlevel.open_process(
            cmd,
            cwd=root,
            env={**_env(root), **(extra_env or {})},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            assert proc.stderr is not None
            stdout, stderr = proc.stdout, proc.stderr

            async def read_err() -> None:
                while chunk := await stderr.receive_some(65536):
                    err.extend(chunk)
                    del err[:-MAX_STDERR]

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read_err)
                while chunk := await stdout.receive_some(65536):
                    out.extend(chunk)
                    if len(out) > limits.max_git_output:
                        del out[limits.max_git_output :]
                        cut = True
                        proc.kill()
                        break
            code = await proc.wait()
        finally:
            if proc.returncode is None:
                proc.kill()
                with trio.CancelScope(shield=True):
                    await proc.wait()
    if scope.cancelled_caught:
        raise OpError(ErrorCode.BAD_REQUEST, f"git {args[0]} took too long")
    if not cut and code not in ok:
        lines = [ln for ln in err.decode(errors="replace").splitlines() if ln.strip()]
        why = lines[-1].strip()[:300] if lines else f"exit status {code}"
        raise OpError(ErrorCode.BAD_REQUEST, f"git {args[0]} failed: {why}")
    return code, bytes(out), cut


async def _rev(root: Path, ref: str, limits: OpLimits) -> str | None:
    code, out, _ = await git(
        root, ["rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"], limits, ok=(0, 1, 128)
    )
    return out.decode().strip() if code == 0 and out.strip() else None


async def _merge_base(root: Path, a: str, b: str, limits: OpLimits) -> str | None:
    code, out, _ = await git(root, ["merge-base", a, b], limits, ok=(0, 1))
    return out.decode().strip() if code == 0 and out.strip() else None


@attrs.frozen
class Points:
    """Where the working tree is compared from."""

    base_name: str  # "" when there is no base branch
    base: str  # a commit, or the empty tree
    head: str | None  # None: no commit yet
    pushed: str  # where the branch's published history ends (the base without one)
    branch: str


async def points(root: Path, limits: OpLimits) -> Points:
    """The base (merge base with the base branch), HEAD and the upstream's point."""
    head = await _rev(root, "HEAD", limits)
    _, out, _ = await git(root, ["symbolic-ref", "--quiet", "--short", "HEAD"], limits, ok=(0, 1))
    branch = out.decode(errors="replace").strip()
    base_name, base = "", EMPTY_TREE
    if head is not None:
        for ref in BASE_REFS:
            if await _rev(root, ref, limits) is None:
                continue
            found = await _merge_base(root, head, ref, limits)
            if found is not None:
                base_name, base = (
                    ref.removeprefix("refs/remotes/").removeprefix("refs/heads/"),
                    found,
                )
                break
    pushed = base
    if head is not None:
        upstream = await _rev(root, "@{upstream}", limits)
        if upstream is None and branch:
            upstream = await _rev(root, f"refs/remotes/origin/{branch}", limits)
        if upstream is not None:
            pushed = await _merge_base(root, head, upstream, limits) or base
    return Points(base_name, base, head, pushed, branch)


def require_repo(root: Path) -> None:
    """``OpError`` ``not_found`` unless ``root`` is a git working tree."""
    if not (root / ".git").is_dir():
        raise OpError(ErrorCode.NOT_FOUND, "the working tree is not a git repository yet")


def _count_lines(path: Path, limits: OpLimits) -> tuple[int, bool]:
    """Lines of an untracked file (read up to the file cap) and whether it is binary."""
    try:
        with path.open("rb") as fh:
            data = fh.read(limits.max_file_bytes)
    except OSError:
        return 0, False
    if b"\0" in data[:BINARY_SNIFF]:
        return 0, True
    return data.count(b"\n") + (1 if data and not data.endswith(b"\n") else 0), False


# -- the ops ----------------------------------------------------------------------


async def op_changes(root: Path, limits: OpLimits) -> dict[str, Any]:
    """Every file that differs from the base, uncommitted and unpushed told apart."""
    pts = await points(root, limits)
    diff = ["diff", "--no-ext-diff", "--no-textconv", "-M", "-z"]
    _, names, _ = await git(root, [*diff, "--name-status", pts.base, "--"], limits)
    _, nums, _ = await git(root, [*diff, "--numstat", pts.base, "--"], limits)
    _, others, _ = await git(
        root, ["ls-files", "-z", "--others", "--exclude-standard", "--"], limits
    )
    untracked = split_z(others)
    if pts.head is not None:
        _, dirty, _ = await git(root, [*diff, "--name-only", "HEAD", "--"], limits)
        uncommitted = set(split_z(dirty)) | set(untracked)
        _, ahead, _ = await git(root, [*diff, "--name-only", pts.pushed, "HEAD", "--"], limits)
        unpushed = set(split_z(ahead))
    else:
        uncommitted, unpushed = None, set()
    stats = parse_numstat(nums)
    rows = parse_name_status(names)
    files: list[dict[str, Any]] = []
    for status, path, old in rows:
        added, removed, binary = stats.get(path, (0, 0, False))
        files.append(_entry(path, old, status, added, removed, binary, uncommitted, unpushed))
    for path in untracked:
        lines, binary = await trio.to_thread.run_sync(_count_lines, root / path, limits)
        files.append(_entry(path, None, "added", lines, 0, binary, uncommitted, unpushed))
    files.sort(key=lambda f: f["path"])
    truncated = len(files) > limits.max_files
    return {
        "base": pts.base_name,
        "branch": pts.branch,
        "files": files[: limits.max_files],
        "truncated": truncated,
    }


def _entry(
    path: str,
    old: str | None,
    status: str,
    added: int,
    removed: int,
    binary: bool,
    uncommitted: set[str] | None,
    unpushed: set[str],
) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": path, "status": status}
    if old is not None:
        entry["oldPath"] = old
    names = {path} if old is None else {path, old}
    entry.update(
        added=added,
        removed=removed,
        binary=binary,
        uncommitted=True if uncommitted is None else bool(names & uncommitted),
        unpushed=bool(names & unpushed),
    )
    return entry


async def op_diff(root: Path, path: str, limits: OpLimits) -> dict[str, Any]:
    """One file's unified diff against the base, cut at a line end past the cap."""
    confine(root, path)
    pts = await points(root, limits)
    _, others, _ = await git(
        root, ["ls-files", "-z", "--others", "--exclude-standard", "--", path], limits
    )
    if path in split_z(others):
        # Untracked: against nothing (git diff --no-index exits 1 when they differ).
        args = ["diff", "--no-index", "--no-ext-diff", "--no-textconv", "--", "/dev/null", path]
        _, out, cut = await git(root, args, limits, ok=(0, 1))
    else:
        args = ["diff", "--no-ext-diff", "--no-textconv", pts.base, "--", path]
        _, out, cut = await git(root, args, limits)
    text, truncated = cut_text(out.decode(errors="replace"), limits.max_diff_chars)
    return {"path": path, "diff": text, "truncated": truncated or cut}


async def op_files(root: Path, limits: OpLimits) -> dict[str, Any]:
    """The working tree's files as git sees them (tracked and untracked, not ignored)."""
    args = ["ls-files", "-z", "--cached", "--others", "--exclude-standard", "--"]
    _, out, cut = await git(root, args, limits)
    # A tracked file deleted in the working tree is listed by git, not shown.
    listed = split_z(out)
    present = await trio.to_thread.run_sync(
        lambda: {p for p in listed if (root / p).is_symlink() or (root / p).exists()}
    )
    paths = sorted(present)
    return {
        "files": paths[: limits.max_files],
        "truncated": cut or len(paths) > limits.max_files,
    }


def read_file(root: Path, path: str, limits: OpLimits) -> dict[str, Any]:
    """A file's text, read-only: binary told, large cut (blocking: run in a thread)."""
    target = confine(root, path)
    try:
        if not target.is_file():
            raise OpError(ErrorCode.NOT_FOUND, "no such file")
        size = target.stat().st_size
        with target.open("rb") as fh:
            data = fh.read(limits.max_file_bytes)
    except OSError as exc:
        raise OpError(ErrorCode.NOT_FOUND, f"cannot read the file: {exc.strerror}") from None
    truncated = size > len(data)
    binary = b"\0" in data[:BINARY_SNIFF]
    content = ""
    if not binary:
        try:
            # final=False: a character cut in two at the cap is left out, not an error.
            content = codecs.getincrementaldecoder("utf-8")().decode(data, final=not truncated)
        except UnicodeDecodeError:
            binary = True
    return {
        "path": path,
        "size": size,
        "binary": binary,
        "truncated": truncated,
        "content": content,
    }


async def run_op(root: Path, op: str, args: Mapping[str, Any], limits: OpLimits) -> Any:
    """One op's result, or :class:`OpError`."""
    if op not in OPS:
        raise OpError(ErrorCode.UNKNOWN_TYPE, f"unknown op {op[:64]!r}")
    require_repo(root)
    if op == "changes":
        return await op_changes(root, limits)
    if op == "files":
        return await op_files(root, limits)
    path = check_path(args.get("path"))
    if op == "diff":
        return await op_diff(root, path, limits)
    return await trio.to_thread.run_sync(read_file, root, path, limits)
