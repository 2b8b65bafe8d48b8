"""The shared repository-name rule: the control plane and vmagent agree on every name."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.issues import InvalidIssueUrl, parse_issue_url
from vmagent.workdir import WorkdirError, clone_url
from wire.repos import name_problem

NAMES = st.text(alphabet="abcXYZ019._-/ ", min_size=0, max_size=12)


@given(NAMES, NAMES)
def test_the_api_accepts_exactly_what_vmagent_clones(owner: str, repo: str) -> None:
    try:
        ref = parse_issue_url(f"https://github.com/{owner}/{repo}/issues/1")
    except InvalidIssueUrl:
        api_ok = False
    else:
        api_ok = True
        assert (ref.owner, ref.repo) == (owner, repo)
    try:
        url = clone_url("https://github.com", owner, repo)
    except WorkdirError:
        vm_ok = False
    else:
        vm_ok = True
        assert not repo.startswith("-")
        # No segment climbs ("0." + ".git" gives the harmless segment "0..git").
        assert not {".", ".."} & set(url.removeprefix("https://").split("/"))
    assert api_ok == vm_ok == (name_problem(owner, repo) is None)


@pytest.mark.parametrize(
    ("owner", "repo", "ok"),
    [
        ("octo", "hello", True),
        ("octo", ".github", True),
        ("octo", "-rf", False),
        ("-octo", "hello", False),
        ("octo", "x.git", False),
        ("octo", "..", False),
        ("octo", ".", False),
    ],
)
def test_examples(owner: str, repo: str, ok: bool) -> None:
    assert (name_problem(owner, repo) is None) == ok
