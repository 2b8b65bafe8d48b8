"""The command line: flags, their environment variables, and defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from vmagent.agent import Backoff, vm_id_of, vm_url
from vmagent.main import build_parser, make_engine, settings_for, settings_from
from vmagent.workspace import SessionLimits
from wire.protocol import Scope
from wire.tokens import SigningKey, issue_token


def test_section_8_flags() -> None:
    args = build_parser({}).parse_args(
        [
            "--relay-url",
            "wss://r.example",
            "--token-file",
            "/t",
            "--state-dir",
            "/s",
            "--engine",
            "claude",
            "--git-base-url",
            "file:///srv/git",
            "--no-clone",
        ]
    )
    settings = settings_from(args)
    assert settings.relay_url == "wss://r.example"
    assert settings.token_file == Path("/t")
    assert settings.state_dir == Path("/s")
    assert settings.plan.clone is False
    assert settings.plan.git_base_url == "file:///srv/git"


@pytest.mark.parametrize(
    ("engine", "argv", "env", "clone"),
    [
        ("claude", [], {}, True),
        ("demo", [], {}, False),
        ("claude", ["--no-clone"], {}, False),
        ("demo", ["--clone"], {}, True),
        ("claude", [], {"VMAGENT_NO_CLONE": "1"}, False),
        ("demo", [], {"VMAGENT_CLONE": "true"}, True),
        ("claude", ["--clone"], {"VMAGENT_NO_CLONE": "1"}, True),
    ],
)
def test_clone_defaults_to_the_engine(
    engine: str, argv: list[str], env: dict[str, str], clone: bool
) -> None:
    args = build_parser(env).parse_args(["--token-file", "t", "--engine", engine, *argv])
    assert settings_from(args).plan.clone is clone


def test_environment_variables() -> None:
    env = {
        "VMAGENT_RELAY_URL": "ws://10.0.0.1:8765",
        "VMAGENT_TOKEN_FILE": "/run/token",
        "VMAGENT_ENGINE": "claude",
        "VMAGENT_OUTBOX_LIMIT": "7",
        "VMAGENT_DEMO_DELAY": "0.5",
    }
    args = build_parser(env).parse_args([])
    assert (args.relay_url, args.token_file, args.engine) == (
        "ws://10.0.0.1:8765",
        "/run/token",
        "claude",
    )
    assert settings_from(args).outbox_limit == 7
    assert args.demo_delay == 0.5
    assert settings_from(args).sessions == SessionLimits(max_open=5, max_closed=20)
    # The command line wins.
    assert build_parser(env).parse_args(["--engine", "demo"]).engine == "demo"


def test_session_limits() -> None:
    env = {"VMAGENT_MAX_SESSIONS": "3"}
    args = build_parser(env).parse_args(["--token-file", "t", "--max-closed-sessions", "7"])
    assert settings_from(args).sessions == SessionLimits(max_open=3, max_closed=7)
    for bad in (["--max-sessions", "0"], ["--max-closed-sessions", "many"]):
        with pytest.raises(SystemExit):
            build_parser({}).parse_args(bad)


def test_relay_url_and_vm_id() -> None:
    assert vm_url("ws://h:1") == "ws://h:1/v1/vm"
    assert vm_url("wss://h/") == "wss://h/v1/vm"
    assert vm_url("ws://h:1/v1/vm") == "ws://h:1/v1/vm"
    token = issue_token(
        SigningKey.generate(), sub="vm-42", scope=Scope.VM, issuer="x", ttl_seconds=60
    )
    assert vm_id_of(token) == "vm-42"
    assert vm_id_of("garbage") == "unknown"


def test_backoff_grows_with_jitter_and_resets() -> None:
    import random

    backoff = Backoff(0.5, 8.0, random.Random(1))
    waits = [backoff.next() for _ in range(8)]
    caps = [0.5, 1, 2, 4, 8, 8, 8, 8]
    assert all(cap / 2 <= w <= cap for w, cap in zip(waits, caps, strict=True))
    assert len(set(waits)) == len(waits)  # jittered
    backoff.reset()
    assert backoff.next() <= 0.5


def test_claude_max_line_reaches_the_engine_and_is_checked(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from vmagent.engines.claude import DEFAULT_MAX_LINE, ClaudeEngine

    default = make_engine(build_parser({}).parse_args(["--engine", "claude"]))
    assert isinstance(default, ClaudeEngine)
    assert default.max_line == DEFAULT_MAX_LINE
    env = {"VMAGENT_CLAUDE_MAX_LINE": "4096"}
    engine = make_engine(build_parser(env).parse_args(["--engine", "claude"]))
    assert isinstance(engine, ClaudeEngine)
    assert engine.max_line == 4096
    for bad in (["--claude-max-line", "12"], ["--claude-max-line", "lots"]):
        with pytest.raises(SystemExit):
            build_parser({}).parse_args(bad)
    with pytest.raises(SystemExit):
        build_parser({"VMAGENT_CLAUDE_MAX_LINE": "-1"}).parse_args([])
    assert "at least 1024 bytes" in capsys.readouterr().err


def test_claude_max_plan_reaches_the_engine_and_is_checked() -> None:
    from vmagent.engines.claude import ClaudeEngine
    from vmagent.engines.plans import DEFAULT_MAX_PLAN

    default = make_engine(build_parser({}).parse_args(["--engine", "claude"]))
    assert isinstance(default, ClaudeEngine)
    assert default.max_plan == DEFAULT_MAX_PLAN
    env = {"VMAGENT_CLAUDE_MAX_PLAN": "4096"}
    engine = make_engine(build_parser(env).parse_args(["--engine", "claude"]))
    assert isinstance(engine, ClaudeEngine)
    assert engine.max_plan == 4096
    for bad in (["--claude-max-plan", "12"], ["--claude-max-plan", "lots"]):
        with pytest.raises(SystemExit):
            build_parser({}).parse_args(bad)


def test_bypass_is_off_where_claude_code_would_refuse_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from vmagent.engines.claude import ClaudeEngine

    args = build_parser({}).parse_args(["--engine", "claude", "--token-file", "t"])
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    monkeypatch.delenv("IS_SANDBOX", raising=False)
    root = ClaudeEngine()
    assert not root.bypass_possible()
    assert settings_for(settings_from(args), root).allow_bypass_permissions is False
    sandbox = ClaudeEngine(env={"IS_SANDBOX": "1"})
    assert sandbox.bypass_possible()
    assert settings_for(settings_from(args), sandbox).allow_bypass_permissions is True
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert settings_for(settings_from(args), ClaudeEngine()).allow_bypass_permissions is True
    demo = make_engine(build_parser({}).parse_args(["--engine", "demo"]))
    assert settings_for(settings_from(args), demo).allow_bypass_permissions is True
