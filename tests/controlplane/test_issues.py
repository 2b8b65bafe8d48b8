"""GitHub issue URLs: what is accepted, what it becomes, and that nothing else gets in."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from controlplane.issues import MAX_ISSUE_NUMBER, InvalidIssueUrl, IssueRef, parse_issue_url


@pytest.mark.parametrize(
    "url",
    [
        "https://github.com/octo/hello/issues/7",
        "https://github.com/octo/hello/issues/7/",
        "https://github.com/octo/hello/issues/7?utm=x",
        "https://github.com/octo/hello/issues/7#issuecomment-1",
        "https://github.com/octo/hello/issues/7/?a=b#c",
    ],
)
def test_accepted_forms_become_the_canonical_url(url: str) -> None:
    ref = parse_issue_url(url)
    assert ref == IssueRef("octo", "hello", 7)
    assert ref.url == "https://github.com/octo/hello/issues/7"


def test_names_github_allows() -> None:
    ref = parse_issue_url("https://github.com/Some-Org9/my.repo_name-2/issues/2147483647")
    assert (ref.owner, ref.repo, ref.number) == ("Some-Org9", "my.repo_name-2", MAX_ISSUE_NUMBER)


@given(st.text(max_size=200))
def test_any_text_is_refused_or_parsed_to_a_canonical_url(text: str) -> None:
    try:
        ref = parse_issue_url(text)
    except InvalidIssueUrl:
        return  # refused with a reason; anything else would fail the test
    assert parse_issue_url(ref.url) == ref
    assert ref.url.startswith("https://github.com/")


@given(
    st.from_regex(r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}", fullmatch=True),
    # Never a leading "-", never "..": wire.repos refuses those (a git option, a climb).
    st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,10}(?:\.[A-Za-z0-9_-]{1,5}){0,2}", fullmatch=True),
    st.integers(min_value=1, max_value=MAX_ISSUE_NUMBER),
)
def test_every_valid_triple_round_trips(owner: str, repo: str, number: int) -> None:
    if repo.endswith(".git"):
        return
    assert parse_issue_url(f"https://github.com/{owner}/{repo}/issues/{number}") == IssueRef(
        owner, repo, number
    )
