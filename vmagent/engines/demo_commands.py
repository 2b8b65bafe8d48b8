"""The demo engine's slash commands: a few of its own and the repository's.

The repository's commands are read the way Claude Code reads them: each
``.claude/commands/<name>.md`` of the working tree (``<dir>/<name>.md``
becomes ``dir:name``), an optional front matter between ``---`` lines with
``description`` and ``argument-hint``, and a body in which ``$ARGUMENTS``
stands for what the user typed after the name.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Final

import attrs

from vmagent.engines.commands import (
    MAX_COMMANDS,
    PROJECT_SUFFIX,
    SOURCE_PROJECT,
    command,
    valid_name,
)

#: Largest command file read (a larger one is left off).
MAX_COMMAND_FILE_BYTES: Final = 64 * 1024
COMMANDS_DIR: Final = Path(".claude") / "commands"


@attrs.frozen
class CommandFile:
    """One repository command: its name, front matter and prompt."""

    name: str
    description: str
    argument_hint: str
    body: str

    def expand(self, arguments: str) -> str:
        """The prompt the command stands for, with ``$ARGUMENTS`` filled in."""
        return self.body.replace("$ARGUMENTS", arguments).strip()


def parse(name: str, text: str) -> CommandFile:
    """A command file's front matter (only ``key: value`` lines) and body."""
    meta: dict[str, str] = {}
    body = text
    lines = text.split("\n")
    if lines and lines[0].strip() == "---":
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if end is not None:
            for line in lines[1:end]:
                key, sep, value = line.partition(":")
                if sep:
                    meta[key.strip().lower()] = value.strip().strip("\"'")
            body = "\n".join(lines[end + 1 :])
    description = meta.get("description") or _first_line(body)
    return CommandFile(name, description, meta.get("argument-hint", ""), body)


def _first_line(body: str) -> str:
    return next((ln.strip() for ln in body.split("\n") if ln.strip()), "")


def read_all(workdir: Path) -> list[CommandFile]:
    """The working tree's command files, by name (blocking: run in a thread).

    Unreadable, oversized, non-UTF-8 files and invalid names are left off,
    as are files reached through a symbolic link out of the directory.
    """
    root = workdir / COMMANDS_DIR
    if not root.is_dir() or root.is_symlink():
        return []
    found: list[CommandFile] = []
    for path in sorted(root.rglob("*.md")):
        if len(found) >= MAX_COMMANDS:
            break
        relative = path.relative_to(root)
        name = ":".join((*relative.parent.parts, relative.stem))
        try:
            if path.is_symlink() or not path.is_file():
                continue
            if path.stat().st_size > MAX_COMMAND_FILE_BYTES or not valid_name(name):
                continue
            found.append(parse(name, path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    return found


def listed(files: list[CommandFile]) -> list[dict[str, Any]]:
    """The repository's commands as the ``session_commands`` op lists them."""
    return [
        command(f.name, f"{f.description}{PROJECT_SUFFIX}".strip(), f.argument_hint, SOURCE_PROJECT)
        for f in files
    ]
