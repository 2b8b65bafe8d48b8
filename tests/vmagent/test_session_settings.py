"""The ``session_settings`` op's entry check: any args give a change or a clear refusal."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vmagent.engines.base import PERMISSION_MODES
from vmagent.session import MAX_MODEL_NAME, SettingsError, check_settings
from wire.protocol import ErrorCode

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=120),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner),
    max_leaves=5,
)


@given(
    st.dictionaries(
        st.sampled_from(["model", "permissionMode", "other"]) | st.text(max_size=8),
        json_values | st.sampled_from(PERMISSION_MODES),
        max_size=3,
    ),
    st.booleans(),
)
def test_any_args_are_a_change_or_a_refusal(args: dict[str, Any], allow_bypass: bool) -> None:
    refused: SettingsError | None = None
    try:
        wanted = check_settings(args, allow_bypass=allow_bypass)
    except SettingsError as exc:
        refused = exc
    if refused is not None:
        assert refused.code in (ErrorCode.BAD_REQUEST, ErrorCode.FORBIDDEN)
        assert refused.message
        return
    assert wanted.model is not None or wanted.permission_mode is not None
    assert wanted.permission_mode is None or wanted.permission_mode in PERMISSION_MODES
    assert wanted.model is None or 0 < len(wanted.model) <= MAX_MODEL_NAME
    if not allow_bypass:
        assert wanted.permission_mode != "bypassPermissions"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ({}, ErrorCode.BAD_REQUEST),
        ({"permissionMode": "yolo"}, ErrorCode.BAD_REQUEST),
        ({"model": ""}, ErrorCode.BAD_REQUEST),
        ({"model": "m" * (MAX_MODEL_NAME + 1)}, ErrorCode.BAD_REQUEST),
        ({"permissionMode": "bypassPermissions"}, ErrorCode.FORBIDDEN),
    ],
)
def test_refusals(args: dict[str, Any], code: ErrorCode) -> None:
    with pytest.raises(SettingsError) as caught:
        check_settings(args, allow_bypass=False)
    assert caught.value.code == code


def test_bypass_where_allowed() -> None:
    wanted = check_settings({"permissionMode": "bypassPermissions"}, allow_bypass=True)
    assert wanted.permission_mode == "bypassPermissions"
