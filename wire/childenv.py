"""Environments for child processes, built from an allow-list, never inherited whole.

The control plane's environment holds its secrets (``CONTROLPLANE_GITHUB_TOKEN``,
``FFCLOUD_DEV_PASSWORD``, database URLs with passwords ...). A local vmagent,
and the Claude Code CLI that vmagent runs, get only the variables named
here: what any program needs to run (``PATH``, ``HOME``, the locale, proxies
and CA certificates), and their own settings by prefix.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Final

#: Variables any program may need to run, passed on when set.
BASE_NAMES: Final = frozenset(
    {
        "PATH",
        "HOME",
        "USER",
        "LOGNAME",
        "SHELL",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TMPDIR",
        "TERM",
        "XDG_CONFIG_HOME",
        "XDG_CACHE_HOME",
        "XDG_DATA_HOME",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
        "NODE_EXTRA_CA_CERTS",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "NO_PROXY",
        "http_proxy",
        "https_proxy",
        "no_proxy",
    }
)
#: Prefixes of the locale variables (``LC_ALL``, ``LC_CTYPE`` ...).
BASE_PREFIXES: Final = ("LC_",)
#: What the Claude Code CLI reads beyond the base: its API and its own settings.
CLAUDE_PREFIXES: Final = ("ANTHROPIC_", "CLAUDE_")
#: Claude Code's own variables without its prefix: ``IS_SANDBOX`` lets it offer
#: bypassPermissions while it runs as root (a VM that is itself the sandbox).
CLAUDE_NAMES: Final = frozenset({"IS_SANDBOX"})
#: What a vmagent reads beyond the base: its settings, and what its Claude CLI needs.
VMAGENT_PREFIXES: Final = ("VMAGENT_", *CLAUDE_PREFIXES)
#: Never passed on, whatever the prefixes say. ``CLAUDECODE`` tells the CLI it
#: runs inside another Claude Code session, which makes it refuse to start.
NEVER: Final = frozenset({"CLAUDECODE"})


def allowed_env(env: Mapping[str, str], prefixes: Iterable[str]) -> dict[str, str]:
    """The variables of ``env`` that are in :data:`BASE_NAMES` or start with a prefix."""
    starts = (*BASE_PREFIXES, *prefixes)
    return {
        name: value
        for name, value in env.items()
        if name not in NEVER and (name in BASE_NAMES or name.startswith(starts))
    }


def vmagent_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment a local vmagent gets from the control plane's."""
    return allowed_env(env, VMAGENT_PREFIXES)


def claude_env(env: Mapping[str, str]) -> dict[str, str]:
    """The environment the Claude Code CLI gets from vmagent's."""
    passed = allowed_env(env, CLAUDE_PREFIXES)
    passed.update({name: env[name] for name in CLAUDE_NAMES if name in env})
    return passed
