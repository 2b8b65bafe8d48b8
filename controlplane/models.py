"""The HTTP API's request and response models (docs/protocol.md section 7).

Pydantic dataclasses in strict mode: no coercion (``"5"`` is not ``5``),
unknown fields refused, camelCase on the wire. quart-schema validates requests
and builds ``/openapi.json`` from these same classes.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from pydantic import ConfigDict, Field
from pydantic.alias_generators import to_camel
from pydantic.dataclasses import dataclass

from controlplane.passwords import MAX_PASSWORD_LENGTH

MAX_USERNAME_LENGTH = 64

# Strict per field rather than per model: a strict pydantic dataclass would
# accept only instances of itself, not the parsed JSON object.
_REQUEST = ConfigDict(extra="forbid", alias_generator=to_camel, validate_by_name=False)
_RESPONSE = ConfigDict(alias_generator=to_camel, serialize_by_alias=True, validate_by_name=True)


@dataclass(config=_REQUEST)
class LoginRequest:
    """Credentials."""

    username: Annotated[str, Field(strict=True, min_length=1, max_length=MAX_USERNAME_LENGTH)]
    password: Annotated[str, Field(strict=True, min_length=1, max_length=MAX_PASSWORD_LENGTH)]


@dataclass(config=_REQUEST)
class CreateWorkspaceRequest:
    """A workspace from a GitHub issue."""

    issue_url: Annotated[str, Field(strict=True, min_length=1, max_length=2048)]


@dataclass(config=_RESPONSE)
class UserOut:
    """Who is logged in."""

    id: str
    username: str


@dataclass(config=_RESPONSE)
class LoginResponse:
    """An access token; the refresh token travels in a cookie."""

    access_token: str
    expires_at: dt.datetime
    user: UserOut


@dataclass(config=_RESPONSE)
class ConfigOut:
    """Where clients open their WebSocket."""

    relay_url: str


@dataclass(config=_RESPONSE)
class IssueOut:
    """The GitHub issue a workspace comes from."""

    url: str
    owner: str
    repo: str
    number: int
    title: str | None = None
    #: Why title and body are missing, when GitHub could not be asked.
    fetch_error: str | None = None


@dataclass(config=_RESPONSE)
class WorkspaceOut:
    """A workspace."""

    id: str
    name: str
    issue: IssueOut
    status: str
    created_at: dt.datetime
    updated_at: dt.datetime
    #: Where the workspace's relayd serves clients: its VM's node, else this node's.
    relay_url: str
    vm_id: str | None = None
    #: When its VM was given up on and it was placed again (its conversation started over).
    lost_at: dt.datetime | None = None


@dataclass(config=_RESPONSE)
class AuditEntryOut:
    """Who answered, approved, denied or interrupted."""

    at: dt.datetime
    action: str
    user_id: str | None = None
    request_id: str | None = None
    detail: str | None = None
    #: The workspace session it is about; absent: main.
    session_id: str | None = None


@dataclass(config=_RESPONSE)
class ErrorBody:
    """``code`` is a stable word; ``message`` is for people."""

    code: str
    message: str


@dataclass(config=_RESPONSE)
class ErrorOut:
    """Every error answer."""

    error: ErrorBody


@dataclass(config=_RESPONSE)
class HealthOut:
    """``ok`` or why not."""

    status: str
    database: str
    relay: str
