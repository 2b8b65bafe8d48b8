"""Claude's plan for ExitPlanMode's permission card, from the CLI's own plan file.

In plan mode Claude Code has the model write its plan to a file in the CLI's
``plans/`` directory (``$CLAUDE_CONFIG_DIR/plans``, by default
``~/.claude/plans``), named for the session, and calls ExitPlanMode. The CLI
itself puts that file's text into the tool's input as ``plan`` (with
``planFilePath``) when it asks for the permission; a model's own ``plan``
argument is dropped, and with no file written the input is empty.

So the card's plan is the CLI's ``plan`` when it has one; otherwise the plan
file the CLI reported writing in this session (a Write or Edit whose result
it printed), when that path really is a plain file directly inside the plans
directory. Either way it is cut to a size limit: the file is anyone's size,
and the permission request goes to every viewer and into the log.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

#: Default for ``--claude-max-plan``: the most plan text (UTF-8 bytes) a plan card gets.
DEFAULT_MAX_PLAN: Final = 256 * 1024
#: A plan file's name as Claude Code makes them (words and dashes, ``.md``).
_PLAN_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,200}\.md")


def plans_dir(env: Mapping[str, str]) -> Path | None:
    """The directory the CLI keeps its plan files in, for the environment it runs in."""
    config = env.get("CLAUDE_CONFIG_DIR")
    if config:
        return Path(config) / "plans"
    home = env.get("HOME")
    return Path(home) / ".claude" / "plans" if home else None


def plan_file(path: object, directory: Path | None) -> Path | None:
    """``path`` when it names a plan file directly inside ``directory``, else None.

    Only the text is checked (no file system access): an absolute path whose
    parent is the plans directory and whose name looks like a plan file's. The
    model chose the path the CLI wrote to, so nothing else is taken on trust.
    """
    if directory is None or not isinstance(path, str) or "\x00" in path:
        return None
    candidate = Path(path)
    if not candidate.is_absolute() or candidate.parent != directory:
        return None
    if _PLAN_NAME.fullmatch(candidate.name) is None:
        return None
    return candidate


def written_plan(body: Mapping[str, Any], directory: Path | None) -> Path | None:
    """The plan file a stream-json ``user`` line says the CLI just wrote, if any.

    Write and Edit results carry ``tool_use_result.filePath``; a failed tool
    use carries a string there instead.
    """
    if body.get("type") != "user":
        return None
    result = body.get("tool_use_result")
    if not isinstance(result, dict):
        return None
    return plan_file(result.get("filePath"), directory)


def read_plan(path: Path, limit: int) -> str | None:
    """At most ``limit`` bytes of the plan file, or None when it is not a plain file.

    Neither the file nor the plans directory may be a link (one could point
    anywhere), and only a regular file is read.
    """
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        if not stat.S_ISDIR(os.lstat(path.parent).st_mode):
            return None  # the plans directory swapped for a link
        fd = os.open(path, flags)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        data = b""
        while len(data) <= limit:
            chunk = os.read(fd, limit + 1 - len(data))
            if not chunk:
                break
            data += chunk
    except OSError:
        return None
    finally:
        os.close(fd)
    return cut(data.decode("utf-8", errors="replace"), limit)


def cut(text: str, limit: int) -> str:
    """``text`` in at most ``limit`` UTF-8 bytes, with a note when it was longer."""
    raw = text.encode("utf-8", errors="replace")
    if len(raw) <= limit:
        return text
    note = f"\n\n*(The plan is longer than {limit} bytes; the rest is not shown.)*"
    room = max(0, limit - len(note.encode()))
    head = raw[:room].decode("utf-8", errors="ignore")
    return head + note


def card_input(tool_input: Mapping[str, Any], fallback: Path | None, limit: int) -> dict[str, Any]:
    """The ExitPlanMode input shown on the card: ``plan`` filled in and bounded.

    The CLI's own ``plan`` comes first; with none, the text of ``fallback`` (the
    plan file the CLI wrote this session), read now. The CLI's input itself is
    not changed: it is what goes back to the CLI when the plan is approved.
    """
    shown = dict(tool_input)
    plan = tool_input.get("plan")
    if isinstance(plan, str) and plan.strip():
        shown["plan"] = cut(plan, limit)
    elif fallback is not None:
        text = read_plan(fallback, limit)
        if text is not None and text.strip():
            shown["plan"] = text
    return shown
