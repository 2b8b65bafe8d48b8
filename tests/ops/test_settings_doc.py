"""The operator guide's settings tables and the example env files match the programs.

The flags come from each program's own ``--help``; the guide must list
exactly those, each with the environment variable the rule gives
(``RELAYD_``/``CONTROLPLANE_``/``VMAGENT_`` + upper case, dashes to
underscores), and the example env files may only set variables that exist.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.units import ROOT, SYSTEMD_DIR

BIN = Path(sys.executable).parent
#: Guide heading -> (command line, environment prefix, example env file).
PROGRAMS = {
    "relayd": (("relayd",), "RELAYD_", "relayd.env.example"),
    "controlplane serve": (("controlplane", "serve"), "CONTROLPLANE_", "controlplane.env.example"),
    "vmagent": (("vmagent",), "VMAGENT_", "vmagent.env.example"),
}


@functools.cache
def _help_flags(argv: tuple[str, ...]) -> frozenset[str]:
    proc = subprocess.run(
        [str(BIN / argv[0]), *argv[1:], "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    # Option lines start with two spaces and the flag; flags named in help texts do not.
    return frozenset(re.findall(r"^  (--[a-z][a-z0-9-]*)", proc.stdout, re.M)) - {"--help"}


def _documented(heading: str) -> dict[str, str]:
    """Flag -> environment variable, from the table under ``### heading``."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split(f"\n### {heading}\n", 1)[1].split("\n#", 1)[0]
    return dict(re.findall(r"^\| `(--[a-z0-9-]+)` \| `(\w+)` \|", section, re.M))


@pytest.mark.parametrize("heading", PROGRAMS)
def test_guide_lists_exactly_the_flags(heading: str) -> None:
    argv, prefix, _env_file = PROGRAMS[heading]
    documented = _documented(heading)
    assert set(documented) == _help_flags(argv)
    for flag, env in documented.items():
        assert env == prefix + flag[2:].upper().replace("-", "_")


@pytest.mark.parametrize("heading", PROGRAMS)
def test_example_env_files_set_only_real_variables(heading: str) -> None:
    _argv, prefix, env_file = PROGRAMS[heading]
    known = set(_documented(heading).values())
    text = (SYSTEMD_DIR / env_file).read_text()
    named = set(re.findall(rf"^#?({prefix}\w+)=", text, re.M))
    assert named, env_file
    assert named <= known, named - known
