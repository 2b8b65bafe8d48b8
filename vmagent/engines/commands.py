"""Slash commands as a session offers them: checked, trimmed, in one shape.

Claude Code lists its commands in the answer to the ``initialize`` control
request (``commands``: ``name``, ``description``, ``argumentHint``,
``aliases``, ``builtin``; the repository's own ``.claude/commands/*.md``
among them, described with a " (project)" suffix) and names them again in
each turn's ``system``/``init`` line (``slash_commands``, with
``terminal_slash_commands`` for those bound to a local terminal). What a
client gets is the ``initialize`` list, kept in step with the latest
``init`` line, without the commands that only make sense in a terminal or
that the CLI keeps for itself (names starting with ``_``).

Each command says where it comes from when that is known (``source``):
``builtin`` for the CLI's own (its ``builtin`` flag), ``project`` for the
repository's (the " (project)" suffix), nothing for the others (the user's
own, plugins', or a name an ``init`` line added).

Pure functions: the engines call them with what they have.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Final, TypeGuard

#: Most commands a session lists (more are left off, in the CLI's order).
MAX_COMMANDS: Final = 200
#: Longest command name kept (a longer one is left off).
MAX_COMMAND_NAME: Final = 64
#: Longest description passed on (cut with "…"; some skills describe themselves at length).
MAX_COMMAND_DESCRIPTION: Final = 300
#: Longest argument hint passed on (cut with "…").
MAX_ARGUMENT_HINT: Final = 120
#: Most aliases kept per command.
MAX_ALIASES: Final = 8

# Claude Code's command names: letters, digits, "-", "_", "." and ":" (a
# subdirectory of .claude/commands becomes "dir:name"). Nothing else, so a
# name can be typed after "/" and never carries spaces or markup.
_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]*")
_COMMAND_TEXT: Final = re.compile(r"/([A-Za-z0-9][A-Za-z0-9_.:-]*)(?:\s+(.*))?", re.S)


def valid_name(name: object) -> TypeGuard[str]:
    """Whether ``name`` is a command name a client may list and type."""
    if not isinstance(name, str) or len(name) > MAX_COMMAND_NAME:
        return False
    return _NAME.fullmatch(name) is not None


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())  # one line: the palette shows one
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


#: Where a command comes from: the CLI's own, or the repository's ``.claude/commands``.
SOURCE_BUILTIN: Final = "builtin"
SOURCE_PROJECT: Final = "project"
#: How Claude Code marks a repository command's description.
PROJECT_SUFFIX: Final = " (project)"


def command(
    name: str, description: str = "", argument_hint: str = "", source: str | None = None
) -> dict[str, Any]:
    """One command in the shape the ``session_commands`` op answers with."""
    entry: dict[str, Any] = {
        "name": name,
        "description": _cut(description, MAX_COMMAND_DESCRIPTION),
    }
    hint = _cut(argument_hint, MAX_ARGUMENT_HINT)
    if hint:
        entry["argumentHint"] = hint
    if source is not None:
        entry["source"] = source
    return entry


def source_of(raw: dict[str, Any]) -> str | None:
    """Where a CLI-listed command comes from (:data:`SOURCE_BUILTIN`, ...), None when unknown."""
    if raw.get("builtin") is True:
        return SOURCE_BUILTIN
    description = raw.get("description")
    if isinstance(description, str) and description.endswith(PROJECT_SUFFIX):
        return SOURCE_PROJECT
    return None


def from_cli(
    listed: object,
    slash_commands: Iterable[object] | None = None,
    terminal_commands: Iterable[object] = (),
) -> list[dict[str, Any]]:
    """The commands to offer, from the CLI's ``initialize`` ``commands`` (any JSON).

    ``slash_commands`` are the names of the latest ``init`` line (None: no turn
    yet): a listed command it no longer names is gone, a name it adds (a
    command file written since the CLI started) is offered without a
    description. ``terminal_commands`` (``terminal_slash_commands``) are left
    off. Malformed entries are skipped, long texts cut, at most
    :data:`MAX_COMMANDS` kept.
    """
    current = None if slash_commands is None else {n for n in slash_commands if valid_name(n)}
    hidden = {n for n in terminal_commands if isinstance(n, str)}
    out: list[dict[str, Any]] = []
    seen: set[str] = set()

    def keep(name: str) -> bool:
        return (
            len(out) < MAX_COMMANDS
            and name not in seen
            and name not in hidden
            and (current is None or name in current)
        )

    for raw in listed if isinstance(listed, list) else []:
        if not isinstance(raw, dict):
            continue
        name = raw.get("name")
        if not valid_name(name) or not keep(name):
            continue
        description = raw.get("description")
        hint = raw.get("argumentHint")
        entry = command(
            name,
            description if isinstance(description, str) else "",
            hint if isinstance(hint, str) else "",
            source_of(raw),
        )
        aliases = raw.get("aliases")
        if isinstance(aliases, list):
            kept = [a for a in aliases if valid_name(a) and a != name][:MAX_ALIASES]
            if kept:
                entry["aliases"] = kept
        seen.add(name)
        out.append(entry)
    for name in sorted(current or ()):
        if keep(name):
            seen.add(name)
            out.append(command(name))
    return out


def split_command(text: str) -> tuple[str, str] | None:
    """``(name, arguments)`` of a message that is a slash command, else None.

    As Claude Code reads its input: ``/`` first, a valid name, then nothing
    or whitespace and the arguments (trimmed).
    """
    match = _COMMAND_TEXT.fullmatch(text)
    if match is None or len(match[1]) > MAX_COMMAND_NAME:
        return None
    return match[1], (match[2] or "").strip()
