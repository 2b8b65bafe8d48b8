"""``vmagent``: the command line (docs/protocol.md section 8) and the process's life.

Every flag also reads an environment variable ``VMAGENT_<FLAG>`` (upper case,
dashes to underscores); a flag given on the command line wins. systemd: the
agent sends ``READY=1`` once its logs are loaded and it runs (it does not wait
for relayd, which may be down), ``WATCHDOG=1`` from its event loop, and
``STOPPING=1`` on SIGTERM or SIGINT, then stops its sessions and exits 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Final

import attrs
import trio

from vmagent.agent import (
    DEFAULT_BACKOFF_INITIAL,
    DEFAULT_BACKOFF_MAX,
    DEFAULT_OUTBOX_LIMIT,
    DEFAULT_TOKEN_CHECK_INTERVAL,
    Agent,
    AgentSettings,
)
from vmagent.attachments import (
    DEFAULT_MAX_ATTACHMENTS,
    DEFAULT_MAX_IMAGE_BYTES,
    DEFAULT_MAX_IMAGE_EDGE,
    DEFAULT_MAX_SNAPSHOT_ATTACHMENT_CHARS,
    DEFAULT_MAX_TEXT_ATTACHMENT_CHARS,
    AttachmentLimits,
)
from vmagent.engines.base import Engine
from vmagent.engines.claude import DEFAULT_MAX_LINE, ClaudeEngine
from vmagent.engines.demo import DEFAULT_WORD_DELAY, DemoEngine
from vmagent.engines.plans import DEFAULT_MAX_PLAN
from vmagent.op_server import DEFAULT_MAX_REPLY_CHARS
from vmagent.publish import (
    DEFAULT_API_TIMEOUT,
    DEFAULT_AUTHOR_EMAIL,
    DEFAULT_AUTHOR_NAME,
    DEFAULT_GITHUB_API_URL,
    DEFAULT_PUSH_TIMEOUT,
    PublishSettings,
)
from vmagent.session import DEFAULT_MAX_QUEUED_MESSAGES
from vmagent.session_list import DEFAULT_MAX_CLOSED_SESSIONS, DEFAULT_MAX_SESSIONS
from vmagent.terminals import (
    DEFAULT_MAX_TERMINALS,
    DEFAULT_MAX_TERMINALS_PER_CONNECTION,
    DEFAULT_TERMINAL_CHUNK_BYTES,
    DEFAULT_TERMINAL_OUTPUT_RATE,
    TerminalLimits,
)
from vmagent.workdir import DEFAULT_CLONE_TIMEOUT, DEFAULT_GIT_BASE_URL, WorkdirPlan
from vmagent.workspace import SessionLimits
from vmagent.workspace_ops import (
    DEFAULT_MAX_DIFF_CHARS,
    DEFAULT_MAX_FILE_BYTES,
    DEFAULT_MAX_FILES,
    DEFAULT_OP_TIMEOUT,
    OpLimits,
)
from wire import sdnotify
from wire.logs import setup_logging

log = logging.getLogger("vmagent")

#: The smallest ``--claude-max-line``.
MIN_MAX_LINE: Final = 1024
#: The smallest ``--claude-max-plan``.
MIN_MAX_PLAN: Final = 1024

DEFAULT_RELAY_URL: Final = "ws://127.0.0.1:8765"
DEFAULT_STATE_DIR: Final = ".state/vmagent"
ENGINES: Final = ("claude", "demo")


def _env_bool(value: str) -> bool:
    return value.strip().lower() in ("1", "true", "yes", "on")


def _bytes_at_least(minimum: int, why: str) -> Callable[[str], int]:
    """An argparse type: a number of bytes of at least ``minimum`` (``why``: what must fit)."""

    def parse(value: str) -> int:
        try:
            limit = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of bytes: {value!r}") from None
        if limit < minimum:
            raise argparse.ArgumentTypeError(f"at least {minimum} bytes ({why})")
        return limit

    return parse


#: A line limit: the notice that replaces a cut line must fit.
_line_limit: Final = _bytes_at_least(MIN_MAX_LINE, "the notice that replaces a line must fit")
#: A plan limit: the note that ends a cut plan must fit.
_plan_limit: Final = _bytes_at_least(MIN_MAX_PLAN, "the note that ends a cut plan must fit")


def build_parser(env: Mapping[str, str]) -> argparse.ArgumentParser:
    """The argument parser, with defaults taken from ``VMAGENT_*`` variables."""

    def default(flag: str, fallback: str | None) -> str | None:
        return env.get("VMAGENT_" + flag.upper().replace("-", "_"), fallback)

    p = argparse.ArgumentParser(
        prog="vmagent",
        description="The FF Cloud VM agent: dials relayd and runs Claude Code sessions.",
    )
    p.add_argument("--relay-url", default=default("relay-url", DEFAULT_RELAY_URL))
    p.add_argument(
        "--token-file",
        default=default("token-file", None),
        help="file holding this VM's token (re-read on every reconnect)",
    )
    p.add_argument("--state-dir", default=default("state-dir", DEFAULT_STATE_DIR))
    p.add_argument("--engine", choices=ENGINES, default=default("engine", "demo"))
    p.add_argument("--git-base-url", default=default("git-base-url", DEFAULT_GIT_BASE_URL))
    p.add_argument(
        "--github-token-file",
        default=default("github-token-file", None),
        help="file holding the GitHub token for push and pull requests (re-read on every use)",
    )
    p.add_argument("--github-api-url", default=default("github-api-url", DEFAULT_GITHUB_API_URL))
    p.add_argument("--git-author-name", default=default("git-author-name", DEFAULT_AUTHOR_NAME))
    p.add_argument("--git-author-email", default=default("git-author-email", DEFAULT_AUTHOR_EMAIL))
    p.add_argument(
        "--push-timeout",
        type=float,
        default=float(default("push-timeout", str(DEFAULT_PUSH_TIMEOUT)) or 0),
    )
    p.add_argument(
        "--github-api-timeout",
        type=float,
        default=float(default("github-api-timeout", str(DEFAULT_API_TIMEOUT)) or 0),
    )
    clone_default: bool | None = None
    if "VMAGENT_CLONE" in env:
        clone_default = _env_bool(env["VMAGENT_CLONE"])
    if "VMAGENT_NO_CLONE" in env:
        clone_default = not _env_bool(env["VMAGENT_NO_CLONE"])
    p.add_argument(
        "--clone",
        dest="clone",
        action="store_true",
        default=clone_default,
        help="clone the issue's repository (default with the claude engine)",
    )
    p.add_argument("--no-clone", dest="clone", action="store_false")
    p.add_argument(
        "--clone-timeout",
        type=float,
        default=float(default("clone-timeout", str(DEFAULT_CLONE_TIMEOUT)) or 0),
    )
    p.add_argument(
        "--demo-delay",
        type=float,
        default=float(default("demo-delay", str(DEFAULT_WORD_DELAY)) or 0),
        help="seconds between the demo engine's streamed words",
    )
    p.add_argument(
        "--claude-cli",
        default=default("claude-cli", None),
        help="the Claude Code CLI to run (default: the one bundled with claude-agent-sdk)",
    )
    p.add_argument("--claude-model", default=default("claude-model", None))
    p.add_argument(
        "--no-bypass-permissions",
        dest="allow_bypass_permissions",
        action="store_false",
        default=(default("no-bypass-permissions", "") or "").lower() not in ("1", "true", "yes"),
        help="refuse to switch a session to the bypassPermissions mode",
    )
    p.add_argument(
        "--claude-max-line",
        type=_line_limit,
        # A string default goes through ``type`` too: a bad variable is a usage error.
        default=default("claude-max-line", str(DEFAULT_MAX_LINE)),
        metavar="BYTES",
        help="longest Claude Code output line sent on as it is (longer: a notice instead)",
    )
    p.add_argument(
        "--claude-max-plan",
        type=_plan_limit,
        default=default("claude-max-plan", str(DEFAULT_MAX_PLAN)),
        metavar="BYTES",
        help="most plan text an ExitPlanMode permission card carries (longer: cut, with a note)",
    )
    p.add_argument(
        "--outbox-limit",
        type=int,
        default=int(default("outbox-limit", str(DEFAULT_OUTBOX_LIMIT)) or 0),
    )
    p.add_argument(
        "--max-queued-messages",
        type=int,
        default=int(default("max-queued-messages", str(DEFAULT_MAX_QUEUED_MESSAGES)) or 0),
    )
    p.add_argument(
        "--max-sessions",
        type=_positive,
        default=default("max-sessions", str(DEFAULT_MAX_SESSIONS)),
        help="sessions a workspace may have open at once, its first included",
    )
    p.add_argument(
        "--max-closed-sessions",
        type=_positive,
        default=default("max-closed-sessions", str(DEFAULT_MAX_CLOSED_SESSIONS)),
        help="closed sessions kept per workspace (readable); past it the one closed first goes",
    )
    p.add_argument(
        "--backoff-initial",
        type=float,
        default=float(default("backoff-initial", str(DEFAULT_BACKOFF_INITIAL)) or 0),
    )
    p.add_argument(
        "--backoff-max",
        type=float,
        default=float(default("backoff-max", str(DEFAULT_BACKOFF_MAX)) or 0),
    )
    p.add_argument(
        "--token-check-interval",
        type=float,
        default=float(default("token-check-interval", str(DEFAULT_TOKEN_CHECK_INTERVAL)) or 0),
        help="seconds between looks at the token file (a new token is sent as auth)",
    )
    for flag, kind, fallback, what in OP_FLAGS:
        p.add_argument(
            flag, type=kind, default=kind(default(flag[2:], str(fallback)) or 0), help=what
        )
    p.add_argument(
        "--no-terminals",
        dest="terminals",
        action="store_false",
        default=not _env_bool(env.get("VMAGENT_NO_TERMINALS", "0")),
        help="refuse every terminal_open on this VM (error forbidden)",
    )
    for name, parse, count, text in TERMINAL_FLAGS + ATTACHMENT_FLAGS:
        p.add_argument(
            name, type=parse, default=parse(default(name[2:], str(count)) or "0"), help=text
        )
    p.add_argument(
        "--terminal-shell",
        default=default("terminal-shell", None),
        help="the terminals' shell (default: $SHELL, the user's login shell, /bin/bash)",
    )
    p.add_argument("--log-level", default=default("log-level", "info"))
    return p


def _positive(value: str) -> int:
    """A count or a rate: a whole number of at least 1."""
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError("at least 1")
    return number


#: The bounds of terminals: flag, type, default, help.
TERMINAL_FLAGS: Final[tuple[tuple[str, Callable[[str], int], int, str], ...]] = (
    (
        "--max-terminals-per-connection",
        _positive,
        DEFAULT_MAX_TERMINALS_PER_CONNECTION,
        "terminals one client connection may have open",
    ),
    ("--max-terminals", _positive, DEFAULT_MAX_TERMINALS, "terminals open on this VM at most"),
    (
        "--terminal-chunk-bytes",
        _positive,
        DEFAULT_TERMINAL_CHUNK_BYTES,
        "largest PTY read sent as one terminal_output",
    ),
    (
        "--terminal-output-rate",
        _positive,
        DEFAULT_TERMINAL_OUTPUT_RATE,
        "bytes a second one terminal may send (past it the PTY is not read)",
    ),
)


#: The bounds of a user message's attachments: flag, type, default, help.
ATTACHMENT_FLAGS: Final[tuple[tuple[str, Callable[[str], int], int, str], ...]] = (
    ("--max-attachments", _positive, DEFAULT_MAX_ATTACHMENTS, "files one user message may carry"),
    (
        "--max-image-bytes",
        _positive,
        DEFAULT_MAX_IMAGE_BYTES,
        "largest image of a user message (decoded bytes)",
    ),
    (
        "--max-image-edge",
        _positive,
        DEFAULT_MAX_IMAGE_EDGE,
        "longest side of an image of a user message (pixels)",
    ),
    (
        "--max-text-attachment-chars",
        _positive,
        DEFAULT_MAX_TEXT_ATTACHMENT_CHARS,
        "longest text file of a user message (characters)",
    ),
    (
        "--max-snapshot-attachment-chars",
        _positive,
        DEFAULT_MAX_SNAPSHOT_ATTACHMENT_CHARS,
        "attachment data a snapshot carries, newest first (older ones: omitted)",
    ),
)


#: The bounds of the panels' requests: flag, type, default, help.
OP_FLAGS: Final[tuple[tuple[str, type[int] | type[float], float, str], ...]] = (
    ("--op-timeout", float, DEFAULT_OP_TIMEOUT, "seconds one git command of a request may take"),
    ("--max-diff-chars", int, DEFAULT_MAX_DIFF_CHARS, "a diff is cut after this many characters"),
    ("--max-files", int, DEFAULT_MAX_FILES, "files listed by changes and files at most"),
    ("--max-file-bytes", int, DEFAULT_MAX_FILE_BYTES, "bytes of a file shown at most"),
    ("--max-reply-chars", int, DEFAULT_MAX_REPLY_CHARS, "longest reply frame (characters)"),
)


def make_engine(args: argparse.Namespace) -> Engine:
    """The engine the command line asks for."""
    if args.engine == "claude":
        return ClaudeEngine(
            cli_path=args.claude_cli,
            model=args.claude_model,
            max_line=args.claude_max_line,
            max_plan=args.claude_max_plan,
        )
    return DemoEngine(word_delay=args.demo_delay)


def settings_from(args: argparse.Namespace) -> AgentSettings:
    """Agent settings from parsed arguments."""
    clone = args.clone if args.clone is not None else args.engine == "claude"
    return AgentSettings(
        relay_url=args.relay_url,
        token_file=Path(args.token_file),
        state_dir=Path(args.state_dir),
        plan=WorkdirPlan(
            clone=clone, git_base_url=args.git_base_url, clone_timeout=args.clone_timeout
        ),
        outbox_limit=args.outbox_limit,
        backoff_initial=args.backoff_initial,
        backoff_max=args.backoff_max,
        max_queued_messages=args.max_queued_messages,
        sessions=SessionLimits(max_open=args.max_sessions, max_closed=args.max_closed_sessions),
        token_check_interval=args.token_check_interval,
        ops=OpLimits(
            op_timeout=args.op_timeout,
            max_diff_chars=args.max_diff_chars,
            max_files=args.max_files,
            max_file_bytes=args.max_file_bytes,
        ),
        max_reply_chars=args.max_reply_chars,
        publish=PublishSettings(
            github_token_file=Path(args.github_token_file) if args.github_token_file else None,
            github_api_url=args.github_api_url,
            author_name=args.git_author_name,
            author_email=args.git_author_email,
            push_timeout=args.push_timeout,
            api_timeout=args.github_api_timeout,
        ),
        terminals=TerminalLimits(
            enabled=args.terminals,
            max_per_connection=args.max_terminals_per_connection,
            max_total=args.max_terminals,
            chunk_bytes=args.terminal_chunk_bytes,
            output_rate=args.terminal_output_rate,
            shell=args.terminal_shell,
        ),
        allow_bypass_permissions=args.allow_bypass_permissions,
        attachments=AttachmentLimits(
            max_attachments=args.max_attachments,
            max_image_bytes=args.max_image_bytes,
            max_image_edge=args.max_image_edge,
            max_text_chars=args.max_text_attachment_chars,
            max_snapshot_chars=args.max_snapshot_attachment_chars,
        ),
    )


async def serve(agent: Agent) -> None:
    """Run the agent until SIGTERM or SIGINT; speak the systemd notify protocol."""
    with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(agent.run)
            sdnotify.notify("READY=1")
            log.info("vmagent running", extra={"engine": agent.engine.name})
            nursery.start_soon(sdnotify.watchdog_loop)
            async for signum in signals:
                log.info("stopping", extra={"signal": signal.Signals(signum).name})
                sdnotify.notify("STOPPING=1")
                nursery.cancel_scope.cancel()
                break


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    args = build_parser(os.environ).parse_args(argv)
    setup_logging(args.log_level)
    if not args.token_file:
        print("vmagent: --token-file (or VMAGENT_TOKEN_FILE) is required", file=sys.stderr)
        sys.exit(2)
    engine = make_engine(args)
    agent = Agent(settings_for(settings_from(args), engine), engine)
    trio.run(serve, agent)


def settings_for(settings: AgentSettings, engine: Engine) -> AgentSettings:
    """``settings`` with bypassPermissions off where the engine cannot run it."""
    if (
        settings.allow_bypass_permissions
        and isinstance(engine, ClaudeEngine)
        and not engine.bypass_possible()
    ):
        log.warning(
            "bypassPermissions is off: Claude Code refuses it to root "
            "(run vmagent as another user, or set IS_SANDBOX=1 on a VM that is a sandbox)"
        )
        return attrs.evolve(settings, allow_bypass_permissions=False)
    return settings
