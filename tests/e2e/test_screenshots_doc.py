"""Every screenshot a browser test takes is named in the docs (so none is
taken for nothing and none shown is stale), and every screenshot named in the
docs is one a test takes."""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
TAKEN = re.compile(r"""(?:screenshot|shot)\(\s*\w+,\s*f?["']([\w{}-]+)["']""")
NAMED = re.compile(r"screenshots/([\w-]+)\.png")


def taken() -> set[str]:
    names: set[str] = set()
    for module in (REPO / "tests" / "e2e").glob("test_*.py"):
        for name in TAKEN.findall(module.read_text()):
            # f"plan-card-{theme}": the light and the dark one.
            if "{theme}" in name:
                names |= {name.replace("{theme}", t) for t in ("light", "dark")}
            else:
                names.add(name)
    return names


def named() -> set[str]:
    text = (REPO / "README.md").read_text()
    for doc in (REPO / "docs").glob("*.md"):
        text += doc.read_text()
    return set(NAMED.findall(text))


def test_every_screenshot_taken_is_named_in_the_docs() -> None:
    assert taken(), "no screenshot call found: the pattern no longer matches the tests"
    assert taken() - named() == set()


def test_every_screenshot_named_in_the_docs_is_taken_and_committed() -> None:
    missing = {n for n in named() if not (REPO / "docs" / "screenshots" / f"{n}.png").exists()}
    assert missing == set()
    assert named() - taken() == set()


def test_no_screenshot_file_is_left_that_no_test_takes() -> None:
    files = {p.stem for p in (REPO / "docs" / "screenshots").glob("*.png")}
    assert files - taken() == set()
