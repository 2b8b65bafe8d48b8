"""The operator guide's settings tables and the example env files match the programs.

The flags come from each program's own ``--help`` (its real argument parser,
in-process); the guide must list exactly those, each with the environment
variable the rule gives (``RELAYD_``/``CONTROLPLANE_``/``VMAGENT_`` + upper
case, dashes to underscores). The example env files may only name variables
that exist, their commented ``#VAR=value`` lines must be the real defaults,
and the guide's defaults must agree with them.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Callable

import pytest

from controlplane import main as controlplane_main
from relayd import settings as relayd_settings
from tests.ops.units import ROOT, SYSTEMD_DIR
from vmagent import main as vmagent_main

#: Guide heading -> (environment prefix, example env file).
PROGRAMS = {
    "relayd": ("RELAYD_", "relayd.env.example"),
    "controlplane serve": ("CONTROLPLANE_", "controlplane.env.example"),
    "vmagent": ("VMAGENT_", "vmagent.env.example"),
}
#: Guide heading -> what prints the program's --help (and exits), in-process.
HELP: dict[str, Callable[[], object]] = {
    "relayd": lambda: relayd_settings.parse_settings(["--help"], {}),
    "controlplane serve": lambda: controlplane_main.build_parser().parse_args(["serve", "--help"]),
    "vmagent": lambda: vmagent_main.build_parser({}).parse_args(["--help"]),
}


def _help_text(heading: str) -> str:
    """The program's ``--help`` output, from its real argument parser."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        HELP[heading]()
    return out.getvalue()


def _help_flags(heading: str) -> set[str]:
    # Option lines start with two spaces and the flag; flags named in help texts do not.
    return set(re.findall(r"^  (--[a-z][a-z0-9-]*)", _help_text(heading), re.M)) - {"--help"}


def _documented(heading: str) -> dict[str, str]:
    """Flag -> environment variable, from the table under ``### heading``."""
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split(f"\n### {heading}\n", 1)[1].split("\n#", 1)[0]
    return dict(re.findall(r"^\| `(--[a-z0-9-]+)` \| `(\w+)` \|", section, re.M))


@pytest.mark.parametrize("heading", PROGRAMS)
def test_guide_lists_exactly_the_flags(heading: str) -> None:
    prefix, _env_file = PROGRAMS[heading]
    documented = _documented(heading)
    assert set(documented) == _help_flags(heading)
    for flag, env in documented.items():
        assert env == prefix + flag[2:].upper().replace("-", "_")


@pytest.mark.parametrize("heading", PROGRAMS)
def test_example_env_files_set_only_real_variables(heading: str) -> None:
    prefix, env_file = PROGRAMS[heading]
    known = set(_documented(heading).values())
    text = (SYSTEMD_DIR / env_file).read_text()
    named = set(re.findall(rf"^#?({prefix}\w+)=", text, re.M))
    assert named, env_file
    assert named <= known, named - known


def _commented_defaults(env_file: str, prefix: str) -> dict[str, str]:
    """``#VAR=value`` lines of an example env file: the defaults it claims."""
    text = (SYSTEMD_DIR / env_file).read_text()
    return dict(re.findall(rf"^#({prefix}\w+)=(.+)$", text, re.M))


def _relayd(env: dict[str, str]) -> object:
    return relayd_settings.parse_settings([], env)


def _controlplane(env: dict[str, str]) -> object:
    return controlplane_main.settings_from(
        controlplane_main.build_parser().parse_args(["serve"]), env
    )


def _vmagent(env: dict[str, str]) -> object:
    return vars(vmagent_main.build_parser(env).parse_args(["--token-file", "t"]))


SETTINGS = {"relayd": _relayd, "controlplane serve": _controlplane, "vmagent": _vmagent}


@pytest.mark.parametrize("heading", PROGRAMS)
def test_example_defaults_are_the_real_defaults(heading: str) -> None:
    """Each commented ``#VAR=value`` changes nothing when set: it is the default."""
    prefix, env_file = PROGRAMS[heading]
    defaults = _commented_defaults(env_file, prefix)
    assert defaults, env_file
    load = SETTINGS[heading]
    for name, value in defaults.items():
        assert load({name: value}) == load({}), f"{name}={value} is not the default"


@pytest.mark.parametrize("heading", PROGRAMS)
def test_guide_defaults_match_the_example_files(heading: str) -> None:
    """Where the guide's default is one plain value, the example file agrees."""
    prefix, env_file = PROGRAMS[heading]
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split(f"\n### {heading}\n", 1)[1].split("\n#", 1)[0]
    table = dict(re.findall(r"^\| `--[a-z0-9-]+` \| `(\w+)` \| `([^`|]+)` \|", section, re.M))
    examples = _commented_defaults(env_file, prefix)
    shared = set(table) & set(examples)
    assert shared, heading
    for name in shared:
        assert table[name] == examples[name], name


def test_guide_defaults_match_relayd_help() -> None:
    """relayd's --help names each default: the guide's relayd table agrees."""
    helped = {
        env: default
        for default, env in re.findall(
            r"\[default\s+(.*?)\s+or\s+\$(RELAYD_\w+)\]", " ".join(_help_text("relayd").split())
        )
    }
    text = (ROOT / "docs" / "operations.md").read_text()
    section = text.split("\n### relayd\n", 1)[1].split("\n#", 1)[0]
    table = dict(re.findall(r"^\| `--[a-z0-9-]+` \| `(\w+)` \| `([^`|]+)` ", section, re.M))
    assert len(helped) >= 20
    assert set(table) == set(helped)
    for env, default in table.items():
        assert default == helped[env], env
