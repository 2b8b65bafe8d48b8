"""Read systemd unit files the way the tests need them.

Enough of systemd's syntax for our own files: sections, ``Key=value``,
repeated keys, comments and backslash continuation lines.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
SYSTEMD_DIR: Final = ROOT / "systemd"
UNITS: Final = ("relayd", "controlplane", "vmagent")

_EXPOSURE = re.compile(r"Overall exposure level for \S+: (\d+\.\d)")


def parse_unit(path: Path) -> dict[str, dict[str, list[str]]]:
    """Sections of a unit file, each mapping a key to its values in order."""
    sections: dict[str, dict[str, list[str]]] = {}
    current: dict[str, list[str]] | None = None
    pending = ""
    for raw in path.read_text().splitlines():
        line = pending + raw.strip() if pending else raw.strip()
        pending = ""
        if not line or line[0] in "#;":
            continue
        if line.endswith("\\"):
            pending = line[:-1].rstrip() + " "
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None, f"{path.name}: {line!r} outside a section"
        key, sep, value = line.partition("=")
        assert sep, f"{path.name}: not a key=value line: {line!r}"
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def analyze() -> str:
    """Path of systemd-analyze; fails the test when it is missing."""
    tool = shutil.which("systemd-analyze")
    assert tool, "systemd-analyze is missing: install Debian's systemd (make test does)"
    return tool


def exposure(unit: Path) -> float:
    """The overall exposure score of ``systemd-analyze security --offline=yes``."""
    # An absolute path: systemd-analyze treats a bare name as an installed unit.
    proc = subprocess.run(
        [analyze(), "security", "--offline=yes", "--no-pager", str(unit.resolve())],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    match = _EXPOSURE.search(proc.stdout)
    assert match, f"no score for {unit.name}: {proc.stdout[-500:]} {proc.stderr}"
    return float(match.group(1))
