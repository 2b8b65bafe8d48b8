"""The demo engine: scripted replies in Claude Code's shapes, no credentials.

It exists so the whole system can be tried without an API key. Every reply
says plainly that it comes from the demo, streams word by word at a human
pace, and shows each part of the UI on request. Trigger words in the user's
message (case-insensitive, first match wins):

- attachments (images, text files): says what it got, each file's name,
  type and size (it cannot see them: no model runs);

- ``question``: asks a ``user_question`` with two questions (the second is
  multi-select) through an ``AskUserQuestion`` tool call, then replies with
  the answers;
- ``permission`` or ``tool``: asks permission for the made-up, harmless
  ``RollDice`` tool; allowed, it "rolls" and reports the number; denied, it
  says so and quotes the user's reason;
- ``long``: a long reply (to try ``interrupt``);
- ``edit``: appends the message to ``notes.md`` in the working tree (a real
  change for the Changes panel);
- a slash command (checked before the words): its own ``/roll``,
  ``/shout`` and ``/context`` (:data:`DEMO_COMMANDS`), and the repository's
  ``.claude/commands/*.md``, whose prompt it shows with the arguments in it;
- anything else: a short reply that echoes the message.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Any, Final

import trio

from vmagent.engines import demo_commands, demo_repo
from vmagent.engines.base import EngineError, Host, SessionSettings
from vmagent.engines.commands import SOURCE_BUILTIN, command, split_command
from vmagent.engines.streamjson import LineWriter, input_json, message_id, tool_use_id
from wire.attachments import Attachment, TextAttachment

MODEL: Final = "demo"
#: The models the demo offers (it answers the same with each).
MODELS: Final = ("demo", "demo-large")
TOOLS: Final = ["AskUserQuestion", "RollDice"]
#: Seconds between streamed words by default (VMAGENT_DEMO_DELAY).
DEFAULT_WORD_DELAY: Final = 0.06
#: The demo's make-believe context window and the prompt it starts with (a system prompt,
#: tools), so the usage meter has a context fill to show.
CONTEXT_WINDOW: Final = 200_000
BASE_PROMPT_TOKENS: Final = 3_000

#: The demo's own slash commands: name -> (description, argument hint).
DEMO_COMMANDS: Final = {
    "roll": ("Roll a die (the demo's own command)", "[sides]"),
    "shout": ("Say the arguments back in capitals (the demo's own command)", "<text>"),
    "context": ("Show the demo's make-believe context usage", ""),
}
#: Most sides /roll accepts.
MAX_DIE_SIDES: Final = 1000

DEMO_QUESTIONS: Final[list[dict[str, Any]]] = [
    {
        "question": "Which colour should the demo button be?",
        "header": "Colour",
        "options": [
            {"label": "Teal", "description": "Calm and readable"},
            {"label": "Orange", "description": "Loud and cheerful"},
            {"label": "Grey", "description": "Say nothing"},
        ],
        "multiSelect": False,
    },
    {
        "question": "Which extras should the demo add?",
        "header": "Extras",
        "options": [
            {"label": "Dark mode", "description": "A dark theme"},
            {"label": "Sounds", "description": "A chime when done"},
            {"label": "Confetti", "description": "Only on Fridays"},
        ],
        "multiSelect": True,
    },
]


class DemoEngine:
    """Opens :class:`DemoSession` s; ``word_delay`` sets the streaming pace."""

    name = "demo"

    def __init__(self, word_delay: float = DEFAULT_WORD_DELAY) -> None:
        self.word_delay = word_delay

    @asynccontextmanager
    async def open(self, host: Host) -> AsyncIterator[DemoSession]:
        """A demo session in a small real repository (made on first use)."""
        await demo_repo.seed(host.workdir, host.issue)
        yield DemoSession(host, self.word_delay)


class DemoSession:
    """One workspace's demo conversation."""

    def __init__(self, host: Host, word_delay: float) -> None:
        self.host = host
        self.word_delay = word_delay
        # The demo keeps its "session" id across restarts through the log.
        self.lines = LineWriter(
            host.session_id or str(uuid.uuid4()),
            MODEL,
            str(host.workdir),
            TOOLS,
            context_window=CONTEXT_WINDOW,
        )
        self.lines.context_tokens = BASE_PROMPT_TOKENS
        self._apply(host.settings)
        self._scope: trio.CancelScope | None = None
        self._tokens_out = 0
        # The block being streamed (message id, index, kind, text so far), for _abort.
        self._block: tuple[str, int, str, str] | None = None
        self._open_message = False

    def _apply(self, settings: SessionSettings) -> None:
        if settings.model:
            self.lines.model = settings.model
        if settings.permission_mode:
            self.lines.permission_mode = settings.permission_mode

    async def configure(self, settings: SessionSettings) -> None:
        """Take the model and mode; the next ``init`` line reports them."""
        if settings.model and settings.model not in MODELS:
            raise EngineError(f"the demo engine has no model {settings.model!r}")
        self._apply(settings)

    def models(self) -> list[dict[str, str]]:
        """The demo's made-up models."""
        return [{"value": m, "displayName": m.capitalize()} for m in MODELS]

    async def commands(self) -> list[dict[str, Any]]:
        """The demo's own commands, then the repository's (read afresh each time)."""
        files = await trio.to_thread.run_sync(demo_commands.read_all, self.host.workdir)
        own = [
            command(name, *about, source=SOURCE_BUILTIN) for name, about in DEMO_COMMANDS.items()
        ]
        return own + [c for c in demo_commands.listed(files) if c["name"] not in DEMO_COMMANDS]

    def interrupt(self) -> None:
        """Stop the current turn at its next word."""
        if self._scope is not None:
            self._scope.cancel()

    async def turn(self, text: str, attachments: Sequence[Attachment] = ()) -> None:
        """Answer one message, following the trigger words."""
        started = time.monotonic()
        self._tokens_out = 0
        self._block = None
        self._open_message = False
        host = self.host
        offered = await self.commands()
        self.lines.slash_commands = [c["name"] for c in offered]
        host.emit(self.lines.init())
        # The context grows by each message and each reply, as a real conversation's does.
        self.lines.context_tokens += len(text.split())
        lowered = text.lower()
        num_turns = 1
        final = ""
        with trio.CancelScope() as scope:
            self._scope = scope
            try:
                slash = split_command(text.strip())
                if slash is not None and slash[0] in self.lines.slash_commands:
                    final = await self._command_flow(*slash)
                elif self.lines.permission_mode == "plan":
                    final = await self._plan_flow(text)
                    num_turns = 2
                elif attachments:
                    final = await self._say(describe_attachments(attachments))
                elif "question" in lowered:
                    final = await self._question_flow()
                    num_turns = 2
                elif "permission" in lowered or "tool" in lowered:
                    final = await self._permission_flow()
                    num_turns = 2
                elif "long" in lowered:
                    final = await self._say(_long_text())
                elif "edit" in lowered:
                    await trio.to_thread.run_sync(demo_repo.append_note, host.workdir, text)
                    final = await self._say(
                        f"This is the demo engine: it added your message to {demo_repo.NOTES}. "
                        "The Changes panel shows it."
                    )
                else:
                    final = await self._say(
                        "This is the demo engine, not Claude: no model is running and no "
                        f"credentials are used. You said: “{text.strip()[:500]}”. Send a message "
                        "with the word question, permission or long to see more of the interface."
                    )
            finally:
                self._scope = None
        elapsed = int((time.monotonic() - started) * 1000)
        self.lines.context_tokens += self._tokens_out
        if scope.cancelled_caught:
            self._abort()
            host.emit(
                self.lines.result(
                    subtype="error_during_execution",
                    is_error=True,
                    duration_ms=elapsed,
                    num_turns=num_turns,
                    result="",
                    input_tokens=len(text.split()),
                    output_tokens=self._tokens_out,
                    cost_usd=0.0,
                )
            )
            return
        host.emit(
            self.lines.result(
                subtype="success",
                is_error=False,
                duration_ms=elapsed,
                num_turns=num_turns,
                result=final,
                input_tokens=len(text.split()),
                output_tokens=self._tokens_out,
                cost_usd=0.0,
            )
        )

    # -- building blocks -------------------------------------------------------

    async def _stream_text(
        self, msg_id: str, index: int, kind: str, text: str, content: list[dict[str, Any]]
    ) -> None:
        """Stream one text or thinking block word by word, then its assistant line."""
        emit = self.host.emit
        block: dict[str, Any] = (
            {"type": "text", "text": ""}
            if kind == "text"
            else {"type": "thinking", "thinking": "", "signature": ""}
        )
        emit(
            self.lines.event(
                {"type": "content_block_start", "index": index, "content_block": block}
            )
        )
        words = text.split(" ")
        self._block = (msg_id, index, kind, "")
        for i, word in enumerate(words):
            piece = word if i == 0 else " " + word
            self._block = (msg_id, index, kind, self._block[3] + piece)
            delta = (
                {"type": "text_delta", "text": piece}
                if kind == "text"
                else {"type": "thinking_delta", "thinking": piece}
            )
            emit(self.lines.event({"type": "content_block_delta", "index": index, "delta": delta}))
            self._tokens_out += 1
            await trio.sleep(self.word_delay)
        content.append(
            {"type": "text", "text": text}
            if kind == "text"
            else {"type": "thinking", "thinking": text, "signature": "demo"}
        )
        # Claude Code prints a block's assistant line just before its content_block_stop.
        self._block = None
        emit(self.lines.assistant(msg_id, [content[-1]], self._tokens_out))
        emit(self.lines.event({"type": "content_block_stop", "index": index}))

    def _abort(self) -> None:
        """Close an interrupted turn the way Claude Code does.

        The block being streamed gets an ``assistant`` line with its text so
        far (``aborted``), then the ``[Request interrupted by user]`` user
        line, then the message's stop events.
        """
        emit = self.host.emit
        if self._block is not None:
            msg_id, _index, kind, so_far = self._block
            block = (
                {"type": "text", "text": so_far}
                if kind == "text"
                else {"type": "thinking", "thinking": so_far, "signature": "demo"}
            )
            emit(self.lines.assistant(msg_id, [block], self._tokens_out, aborted=True))
        emit(self.lines.user_text("[Request interrupted by user]"))
        if self._block is not None:
            emit(self.lines.event({"type": "content_block_stop", "index": self._block[1]}))
        if self._open_message:
            self._finish(None)
        self._block = None

    def _finish(self, stop_reason: str | None) -> None:
        self._open_message = False
        emit = self.host.emit
        emit(
            self.lines.event(
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                    "usage": {"output_tokens": self._tokens_out},
                }
            )
        )
        emit(self.lines.event({"type": "message_stop"}))

    async def _say(self, text: str, thinking: str = "The demo engine thinks in scripts.") -> str:
        msg_id = message_id()
        self._open_message = True
        self.host.emit(self.lines.message_start(msg_id, 10))
        content: list[dict[str, Any]] = []
        await self._stream_text(msg_id, 0, "thinking", thinking, content)
        await self._stream_text(msg_id, 1, "text", text, content)
        self._finish("end_turn")
        return text

    async def _tool_call(self, intro: str, name: str, tool_input: dict[str, Any]) -> str:
        """An assistant message that says ``intro`` and then calls a tool."""
        emit = self.host.emit
        msg_id = message_id()
        tool_id = tool_use_id()
        self._open_message = True
        emit(self.lines.message_start(msg_id, 10))
        content: list[dict[str, Any]] = []
        await self._stream_text(msg_id, 0, "text", intro, content)
        emit(
            self.lines.event(
                {
                    "type": "content_block_start",
                    "index": 1,
                    "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
                }
            )
        )
        raw = input_json(tool_input)
        for start in range(0, len(raw), 40):
            emit(
                self.lines.event(
                    {
                        "type": "content_block_delta",
                        "index": 1,
                        "delta": {
                            "type": "input_json_delta",
                            "partial_json": raw[start : start + 40],
                        },
                    }
                )
            )
            await trio.sleep(self.word_delay / 2)
        block = {"type": "tool_use", "id": tool_id, "name": name, "input": tool_input}
        emit(self.lines.assistant(msg_id, [block], self._tokens_out))
        emit(self.lines.event({"type": "content_block_stop", "index": 1}))
        self._finish("tool_use")
        return tool_id

    async def _question_flow(self) -> str:
        tool_input = {"questions": DEMO_QUESTIONS}
        tool_id = await self._tool_call(
            "This is the demo engine. It will now ask you two questions, the second one "
            "multi-select.",
            "AskUserQuestion",
            tool_input,
        )
        answers = await self.host.ask_question(DEMO_QUESTIONS)
        summary = "; ".join(
            f'"{q}"="{", ".join(a) if isinstance(a, list) else a}"' for q, a in answers.items()
        )
        self.host.emit(
            self.lines.tool_result(
                tool_id,
                f"User has answered your questions: {summary}. You can now continue with "
                "the user's answers in mind.",
                is_error=False,
            )
        )
        colour = _joined(answers.get(DEMO_QUESTIONS[0]["question"], "no colour"))
        extras = _joined(answers.get(DEMO_QUESTIONS[1]["question"], "no extras")) or "no extras"
        return await self._say(
            f"Demo: you chose {colour}, with {extras}. Nothing was changed: this is only "
            "the demo engine.",
            thinking="The demo reads the answers back.",
        )

    async def _permission_flow(self) -> str:
        sides = 20
        tool_input = {"sides": sides, "reason": "to show a permission prompt"}
        tool_id = await self._tool_call(
            "This is the demo engine. It would like to roll a die with the made-up, harmless "
            "RollDice tool, which needs your permission.",
            "RollDice",
            tool_input,
        )
        decision = await self.host.ask_permission("RollDice", tool_input, tool_id)
        if decision.allow:
            rolled = random.randint(1, sides)  # noqa: S311 - a demo die, not a secret
            self.host.emit(
                self.lines.tool_result(tool_id, f"Rolled a {rolled} (d{sides}).", is_error=False)
            )
            return await self._say(
                f"Demo: thanks for allowing it. The die shows {rolled}.",
                thinking="Permission was granted.",
            )
        reason = decision.message or "no reason given"
        self.host.emit(
            self.lines.tool_result(
                tool_id,
                f"The user doesn't want to proceed with this tool use. Reason: {reason}",
                is_error=True,
            )
        )
        return await self._say(
            f"Demo: understood, no die was rolled. Your reason: “{reason}”.",
            thinking="Permission was denied.",
        )

    async def _command_flow(self, name: str, arguments: str) -> str:
        """A slash command: the demo's own does its thing, a repository's shows its prompt."""
        if name == "roll":
            sides = int(arguments) if arguments.isdigit() and len(arguments) < 6 else 6
            sides = min(max(sides, 2), MAX_DIE_SIDES)
            rolled = random.randint(1, sides)  # noqa: S311 - a demo die, not a secret
            return await self._say(
                f"Demo /roll: the d{sides} shows {rolled}.", thinking="A slash command."
            )
        if name == "shout":
            return await self._say(
                f"Demo /shout: {arguments.upper() or 'NOTHING TO SHOUT'}",
                thinking="A slash command.",
            )
        if name == "context":
            used = self.lines.context_tokens
            return await self._say(
                f"Demo /context: {used:,} of {CONTEXT_WINDOW:,} tokens in use "
                f"({used * 100 // CONTEXT_WINDOW}%). Nothing is real: this is the demo engine.",
                thinking="A slash command.",
            )
        files = await trio.to_thread.run_sync(demo_commands.read_all, self.host.workdir)
        found = next((f for f in files if f.name == name), None)
        if found is None:
            return await self._say(f"Demo: the command file of /{name} is gone.")
        return await self._say(
            f"This is the demo engine: the repository's command /{name} asks for: "
            f"“{found.expand(arguments)[:1000]}”. Claude would now do that.",
            thinking="A repository command.",
        )

    async def _plan_flow(self, text: str) -> str:
        """Plan mode: a plan to approve (ExitPlanMode), then the demo "works"."""
        plan = (
            f"# Demo plan\n\nFor: {text[:200]}\n\n1. **Read** the code\n"
            "2. Make the change\n3. Run the tests"
        )
        tool_input = {"plan": plan}
        tool_id = await self._tool_call(
            "This is the demo engine in plan mode. Here is its plan.", "ExitPlanMode", tool_input
        )
        decision = await self.host.ask_permission("ExitPlanMode", tool_input, tool_id)
        if not decision.allow:
            comment = decision.message or "no comment"
            self.host.emit(self.lines.tool_result(tool_id, comment, is_error=True))
            return await self._say(
                f"Demo: back to planning, with your comment: “{comment}”.",
                thinking="The plan was sent back.",
            )
        # As Claude Code does, an approved plan leaves plan mode.
        self.lines.permission_mode = "default"
        self.host.emit(
            self.lines.tool_result(tool_id, "User has approved your plan.", is_error=False)
        )
        return await self._say(
            "Demo: plan approved. Nothing was changed: this is only the demo engine.",
            thinking="The plan was approved.",
        )


def _joined(answer: str | list[str]) -> str:
    return ", ".join(answer) if isinstance(answer, list) else answer


def _long_text() -> str:
    sentence = (
        "This is a long reply from the demo engine, streamed one word at a time so that "
        "the stop button can be tried while it runs."
    )
    return " ".join(f"({n}) {sentence}" for n in range(1, 41))


def describe_attachments(attachments: Sequence[Attachment]) -> str:
    """The demo's answer to files: what it got (names, types, sizes)."""
    parts = []
    for index, attachment in enumerate(attachments, start=1):
        if isinstance(attachment, TextAttachment):
            parts.append(f"{attachment.name} (text, {len(attachment.text):,} characters)")
        else:
            padding = attachment.data[-2:].count("=")
            size = len(attachment.data) // 4 * 3 - padding
            kind = attachment.media_type.removeprefix("image/").upper()
            parts.append(f"{attachment.name or f'image {index}'} ({kind} image, {size:,} bytes)")
    files = "file" if len(attachments) == 1 else "files"
    return (
        f"This is the demo engine: it got {len(attachments)} {files}: {'; '.join(parts)}. "
        "With the claude engine Claude reads them with your message."
    )
