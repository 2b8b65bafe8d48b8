"""What an engine sees of its workspace, and what the workspace asks of an engine."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any, Final, Protocol

import attrs

from wire.attachments import Attachment
from wire.messages import Answer


@attrs.frozen
class Decision:
    """A user's decision on a permission request."""

    allow: bool
    message: str | None = None
    user_id: str | None = None


#: The permission modes a user may pick for a session (Claude Code's own names).
PERMISSION_MODES: Final = ("default", "acceptEdits", "plan", "bypassPermissions")
#: The mode that lets Claude run every tool unasked; an operator may forbid it.
BYPASS_MODE: Final = "bypassPermissions"


@attrs.frozen
class SessionSettings:
    """The model and permission mode a user chose for a session (None: the engine's own)."""

    model: str | None = None
    permission_mode: str | None = None


class EngineError(Exception):
    """A failure the user should see as ``status error`` with this detail."""


class Host(Protocol):
    """The workspace as an engine uses it."""

    workspace_id: str
    workdir: Path

    @property
    def issue(self) -> dict[str, Any] | None:
        """The issue the workspace works on (url, owner, repo, number, title?, body?)."""

    @property
    def session_id(self) -> str | None:
        """The Claude session id kept in the log (to resume), if any."""

    @property
    def settings(self) -> SessionSettings:
        """The model and permission mode the engine starts with."""

    @property
    def bypass_allowed(self) -> bool:
        """Whether this VM lets the session switch to ``bypassPermissions``."""

    def emit(self, line: str) -> None:
        """Send one stream-json line as a ``claude_message`` (logged first)."""

    async def ask_question(self, questions: list[dict[str, Any]]) -> dict[str, Answer]:
        """Ask the user (``user_question``) and wait as long as it takes for the answers."""

    async def ask_permission(
        self, tool_name: str, tool_input: dict[str, Any], tool_use_id: str | None
    ) -> Decision:
        """Ask the user for permission (``permission_request``) and wait for the decision."""


class EngineSession(Protocol):
    """One workspace's running engine, open for as long as the workspace is."""

    async def turn(self, text: str, attachments: Sequence[Attachment] = ()) -> None:
        """Run one turn for a user message and its (checked) attachments, to its end
        (raises :class:`EngineError`)."""

    def interrupt(self) -> None:
        """Ask the current turn, if any, to stop soon."""

    async def configure(self, settings: SessionSettings) -> None:
        """Use ``settings`` from now on, also mid-turn (raises :class:`EngineError`)."""

    def models(self) -> list[dict[str, str]]:
        """The models on offer (``value``, ``displayName``, ``description``); [] if unknown yet."""

    async def commands(self) -> list[dict[str, Any]]:
        """The slash commands on offer (``name``, ``description``, ``argumentHint?``,
        ``aliases?``; see :mod:`vmagent.engines.commands`); raises :class:`EngineError`."""


class Engine(Protocol):
    """A kind of engine; opens one session per workspace."""

    name: str

    def open(self, host: Host) -> AbstractAsyncContextManager[EngineSession]:
        """Start a session for ``host`` (closed when the workspace stops)."""
