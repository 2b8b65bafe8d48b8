"""The repository stands alone: no file in it refers to a file outside it.

The wire contract is ``docs/protocol.md``; a reference to a design file kept
elsewhere, to a folder beside the checkout, or a relative path that climbs out
of the repository would leave a reader with nothing to open.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from typing import Final

import pytest

from tests.ops.units import ROOT

#: The design's contract file, which lives outside the repository (spelled in
#: two parts so that this file does not name it).
OUTSIDE_CONTRACT: Final = "PROTOCOL" + ".md"
#: Folders that sit beside a checkout on a developer's machine or in CI. (Not
#: whatever else is there: a checkout in /tmp would see every name in /tmp.)
KNOWN_NEIGHBOURS: Final = ("shared", "mission", "brief")
_UP_PATH = re.compile(r"(?<![\w.])((?:\.\./)+)([\w.-]*)")
_MD_LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)\s]*)?\)")
#: Generated files, and this one (its samples of what is refused).
_SKIP: Final = ("webui/package-lock.json", "uv.lock", "tests/ops/test_standalone.py")


def _tracked() -> list[Path]:
    """The files git tracks (or, outside a git checkout, every file not ignored)."""
    try:
        out = subprocess.run(
            ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        ignored = {".git", ".venv", "node_modules", "dist", ".tools", ".state"}
        return [
            p
            for p in ROOT.rglob("*")
            if p.is_file() and not ignored & set(p.relative_to(ROOT).parts)
        ]
    return [ROOT / name for name in out.decode().split("\0") if name]


def _texts() -> list[tuple[str, str]]:
    """``(relative path, text)`` of every tracked text file."""
    texts = []
    for path in _tracked():
        rel = path.relative_to(ROOT).as_posix()
        if rel in _SKIP or not path.is_file():
            continue
        try:
            texts.append((rel, path.read_text(encoding="utf-8")))
        except UnicodeDecodeError:
            continue  # images and other binary files
    return texts


def outside_references(
    rel: str, text: str, neighbours: Iterable[str] = KNOWN_NEIGHBOURS
) -> list[str]:
    """What in ``text`` (the file ``rel`` of the repository) points outside it."""
    found = []
    if OUTSIDE_CONTRACT in text:
        found.append(OUTSIDE_CONTRACT)
    here = (ROOT / rel).parent
    for match in _UP_PATH.finditer(text):
        ups, name = match.group(1), match.group(2)
        target = (here / ups / name).resolve()
        if not target.is_relative_to(ROOT) or name in neighbours:
            found.append(match.group(0))
    for name in neighbours:
        absolute = str(ROOT.parent / name)
        if re.search(re.escape(absolute) + r"(?![\w.-])", text):
            found.append(absolute)
    if rel.endswith(".md"):
        for link in _MD_LINK.findall(text):
            if "://" in link or link.startswith("mailto:"):
                continue
            if not (here / link).resolve().exists():
                found.append(f"broken link {link}")
    return found


def test_no_file_refers_outside_the_repository() -> None:
    texts = _texts()
    assert len(texts) > 50, "the tracked files were not found"
    bad = {rel: refs for rel, text in texts if (refs := outside_references(rel, text))}
    assert not bad


@pytest.mark.parametrize(
    "text",
    [
        "see " + OUTSIDE_CONTRACT + " section 4",
        "the contract: ../shared/design/x.md",
        "from ../../../../../../etc/passwd",
        "[contract](../../elsewhere.md)",
        "[contract](missing.md)",
    ],
)
def test_the_check_finds_outside_references(text: str) -> None:
    assert outside_references("docs/guide.md", text)


@pytest.mark.parametrize(
    "text",
    [
        "see [the protocol](protocol.md#4-guarantees)",
        "a clone of ../examples/client.py",
        "Path traversal: workspaces/../x is refused",
        "[site](https://example.com/a/../b)",
    ],
)
def test_the_check_lets_inside_references_be(text: str) -> None:
    assert outside_references("docs/guide.md", text) == []
