"""The browser tests share one stack (conftest's session-scoped ``stack``), and
each finds its workspace in the list by its issue: two modules creating a
workspace for the same issue would find each other's. Each module's issues
are therefore its own."""

from __future__ import annotations

import re
from collections import defaultdict
from pathlib import Path

HERE = Path(__file__).resolve().parent
ISSUE = re.compile(r"github\.com/acme/widgets/issues/(\d+)")


def test_no_two_modules_on_the_shared_stack_use_the_same_issue() -> None:
    users: dict[int, set[str]] = defaultdict(set)
    for module in sorted(HERE.glob("test_*.py")):
        text = module.read_text()
        if "run_stack(" in text:
            continue  # a stack of its own
        for number in ISSUE.findall(text):
            users[int(number)].add(module.name)
    shared = {n: sorted(m) for n, m in users.items() if len(m) > 1}
    assert shared == {}, f"issues used by more than one module: {shared}"
    assert users, "no issue found: the pattern no longer matches the tests"
