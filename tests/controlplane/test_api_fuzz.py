"""Fuzzing the HTTP API as an ordinary logged-in user would (docs/protocol.md section 7).

Hypothesis sends arbitrary JSON bodies (wrong types, huge numbers, surrogate
escapes, repeated keys, deep nesting, huge strings), Content-Types, path ids
and Authorization headers through Quart's test client. What must hold for
every request:

* the answer is a success the route documents, or a 4xx whose body is JSON
  ``{"error": {"code", "message"}}`` (never a 500, never an HTML page);
* another user's workspaces are exactly as they were.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from quart_trio import QuartTrio

from controlplane import passwords, store
from controlplane.app import create_app
from controlplane.coordinator import Coordinator
from controlplane.db import Database
from controlplane.keys import KeyRing
from controlplane.services import Services
from controlplane.settings import Settings
from tests.controlplane.conftest import PASSWORD
from wire.protocol import Scope
from wire.tokens import SigningKey, issue_token

FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
ISSUE = "https://github.com/octo/hello/issues/7"


def _github(request: httpx.Request) -> httpx.Response:
    """Every issue exists (no sockets: the fuzz is about our side)."""
    return httpx.Response(200, json={"title": "An issue", "body": "Its body."})


class World:
    """One app with alice (the attacker, logged in) and bob (the bystander)."""

    def __init__(self, tmp: Path) -> None:
        self.settings = Settings(
            state_dir=tmp / "state",
            github_api_url="http://127.0.0.1:9",
            webui_dir=tmp / "webui",
            relay_url="ws://127.0.0.1:8765",
            max_workspaces_per_user=10_000,
        )
        self.settings.state_dir.mkdir(parents=True)
        keyring = KeyRing(self.settings.state_dir)
        keyring.load()
        self.db = Database.open(self.settings.database_url)
        hashed = passwords.hash_password(PASSWORD)
        self.alice, self.bob = self.db.run_sync(
            lambda c: [store.add_user(c, name, hashed) for name in ("alice", "bob")]
        )
        self.services = Services(
            settings=self.settings,
            db=self.db,
            keyring=keyring,
            coordinator=Coordinator(self.db),
            github_transport=httpx.MockTransport(_github),
        )
        self.app: QuartTrio = create_app(self.services)
        self.token = trio.run(self._login, "alice")
        self.bob_token = trio.run(self._login, "bob")
        bob_ws = trio.run(self._create, self.bob_token)
        self.bob_workspace = bob_ws
        self.bob_before = self.bob_state()

    async def _login(self, name: str) -> str:
        client = self.app.test_client()
        response = await client.post(
            "/api/auth/login", json={"username": name, "password": PASSWORD}
        )
        assert response.status_code == 200
        return str((await response.get_json())["accessToken"])

    async def _create(self, token: str) -> str:
        client = self.app.test_client()
        response = await client.post(
            "/api/workspaces", json={"issueUrl": ISSUE}, headers=bearer(token)
        )
        assert response.status_code == 201
        return str((await response.get_json())["id"])

    def bob_state(self) -> list[Any]:
        """Everything about bob's workspaces that an attacker could change."""
        found = self.db.run_sync(lambda c: store.list_workspaces(c, self.bob.id))
        audit = self.db.run_sync(lambda c: store.list_audit(c, self.bob_workspace, 1000))
        return [found, audit]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    world = World(tmp_path)
    yield world
    world.db.close()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def check_answer(response: Any, ok: set[int]) -> int:
    """The answer is a documented success, or a JSON error with a 4xx."""
    status: int = response.status_code
    raw = await response.get_data(as_text=False)
    if status in ok:
        return status
    assert 400 <= status < 500, (status, raw[:500])
    assert response.content_type == "application/json", (status, raw[:500])
    body = json.loads(raw)
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message"}, body
    assert isinstance(body["error"]["code"], str)
    assert body["error"]["code"]
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return status


# --- strategies ----------------------------------------------------------------

#: Strings an attacker likes: anything, lone surrogates, NULs, huge ones.
hostile_text = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["\ud800", "a\udfffb", "\x00", "\u202e", "a" * 70, "é" * 5000]),
    st.builds(lambda n: "x" * n, st.integers(0, 70_000)),
)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=False, allow_infinity=False),
    hostile_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=10,
)


def object_text(fields: list[str]) -> st.SearchStrategy[str]:
    """A JSON object's text with the route's fields (and others), values of any type.

    Written by hand so that keys can repeat and strings can hold escapes
    ``json.dumps`` would never write (lone surrogates).
    """
    key = st.sampled_from([*fields, "extra", "", "Username", "issue_url"]) | st.text(max_size=8)
    value = json_values.map(json.dumps) | st.sampled_from(
        [
            '"\\ud800"',
            '"a\\udc00b"',
            '"\\u0000"',
            "1e999999",
            "-1e999999",
            "9" * 5000,
            "NaN",
            "Infinity",
            "[" * 5000 + "]" * 5000,
            '"' + "a" * 100_000 + '"',
        ]
    )
    pair = st.tuples(key, value).map(lambda kv: f"{json.dumps(kv[0])}:{kv[1]}")
    return st.lists(pair, max_size=5).map(lambda pairs: "{" + ",".join(pairs) + "}")


def valid_object(fields: dict[str, str]) -> st.SearchStrategy[str]:
    """A good body with one field replaced by hostile text (or repeated)."""
    name = st.sampled_from(sorted(fields))
    return st.tuples(name, st.sampled_from(["\\ud800", "\\udfff", "a\\ud800b", "\\u0000"])).map(
        lambda nv: (
            "{" + ",".join(f'"{k}":"{nv[1] if k == nv[0] else v}"' for k, v in fields.items()) + "}"
        )
    ) | st.just(
        "{"
        + ",".join(f'"{k}":"{v}"' for k, v in fields.items())
        + ',"'
        + sorted(fields)[0]
        + '":"x"}'
    )


def bodies(fields: dict[str, str]) -> st.SearchStrategy[bytes]:
    """Bodies for a route whose good body has ``fields``."""
    text = st.one_of(
        object_text(list(fields)),
        valid_object(fields),
        json_values.map(json.dumps),
        st.sampled_from(
            [
                "",
                "{",
                "[" * 5000,
                '{"a":' * 3000,
                "[" * 100_000,
                "{}" * 3,
                "null",
                '"x"',
                "\ufeff{}",
            ]
        ),
    )
    return st.one_of(
        text.map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.binary(max_size=200),
        text.map(lambda t: t.encode("utf-16", "surrogatepass")),
    )


content_types = st.just("application/json") | st.sampled_from(
    [
        "application/json",
        "application/json; charset=utf-8",
        "application/json; charset=latin-1",
        "APPLICATION/JSON",
        "text/plain",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "",
        "application/json ;;",
        "application/json; charset=\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
    ]
)


# --- the tests -----------------------------------------------------------------


@FUZZ
@given(body=bodies({"username": "alice", "password": PASSWORD}), content_type=content_types)
async def test_login_takes_any_body(world: World, body: bytes, content_type: str) -> None:
    client = world.app.test_client()
    headers = {"Content-Type": content_type} if content_type else {}
    response = await client.post("/api/auth/login", data=body, headers=headers)
    await check_answer(response, {200})
    assert world.bob_state() == world.bob_before


@FUZZ
@given(body=bodies({"issueUrl": ISSUE}), content_type=content_types)
async def test_create_workspace_takes_any_body(
    world: World, body: bytes, content_type: str
) -> None:
    client = world.app.test_client()
    headers = {"Content-Type": content_type, **bearer(world.token)}
    response = await client.post("/api/workspaces", data=body, headers=headers)
    if await check_answer(response, {201}) == 201:
        created = await response.get_json()
        assert created["issue"]["owner"] == "octo"
    assert world.bob_state() == world.bob_before


path_ids = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["\ud800", "%00", "..", "../..", "%2e%2e", "a/b", "\x00", "w" * 10_000]),
    st.builds(lambda w: w, st.just("BOB")),  # replaced by bob's real id below
)


@FUZZ
@given(
    workspace_id=path_ids,
    method=st.sampled_from(["GET", "DELETE", "PUT", "POST", "PATCH"]),
    suffix=st.sampled_from(["", "/audit", "/audit/", "/", "/x"]),
)
# Werkzeug merged "//" by redirecting, with an HTML page, and kept the method.
@example(workspace_id="", method="DELETE", suffix="/audit")
async def test_any_workspace_path(
    world: World, workspace_id: str, method: str, suffix: str
) -> None:
    if workspace_id == "BOB":
        workspace_id = world.bob_workspace  # alice asks for bob's workspace: 404
    quoted = urllib.parse.quote(workspace_id.encode("utf-8", "surrogatepass"), safe="/%")
    client = world.app.test_client()
    send = getattr(client, method.lower())  # the typed open() insists on a json argument
    response = await send(f"/api/workspaces/{quoted}{suffix}", headers=bearer(world.token))
    status = await check_answer(response, {200, 204})
    if workspace_id == world.bob_workspace and suffix in ("", "/audit"):
        assert status in (404, 405), status
    assert world.bob_state() == world.bob_before


def _token_variants(world: World) -> list[str]:
    key = SigningKey.generate("other")
    good = world.token
    head, payload, sig = good.split(".")
    vm = issue_token(
        world.services.keyring.signing_key,
        sub=world.alice.id,
        scope=Scope.VM,
        issuer=world.settings.issuer,
        ttl_seconds=60,
    )
    stranger = issue_token(
        key, sub=world.bob.id, scope=Scope.CLIENT, issuer=world.settings.issuer, ttl_seconds=60
    )
    return [
        good[:-1],
        good[: len(good) // 2],
        f"{head}.{payload}.",
        f"{head}.{payload}",
        f"eyJhbGciOiJub25lIn0.{payload}.",
        f"{head}.{payload}.{sig}{sig}",
        vm,
        stranger,
        good + "\x00",
        good * 40,
    ]


@FUZZ
@given(
    scheme=st.sampled_from(["Bearer", "bearer", "BEARER", "Basic", "", "Bearer\t", "Token"]),
    token=st.one_of(
        st.text(max_size=80),
        st.integers(0, 9).map(lambda i: f"<variant {i}>"),
        st.builds(lambda n: "a." * n, st.integers(0, 5000)),
    ),
    route=st.sampled_from(["/api/me", "/api/workspaces", "/api/workspaces/x/audit"]),
)
async def test_any_authorization_header(world: World, scheme: str, token: str, route: str) -> None:
    if token.startswith("<variant "):
        token = _token_variants(world)[int(token[9])]
    # Header values travel as latin-1: what a client can put on the wire.
    value = f"{scheme} {token}".encode("utf-8", "surrogatepass").decode("latin-1")
    value = value.replace("\r", "").replace("\n", "")
    client = world.app.test_client()
    response = await client.get(route, headers={"Authorization": value})
    status = await check_answer(response, set())
    assert status in (401, 403, 404), status
    assert world.bob_state() == world.bob_before


def _splits(url: str) -> bool:
    try:
        urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return True


header_text = st.text(st.characters(max_codepoint=255, exclude_characters="\r\n"), max_size=40)


@FUZZ
@given(
    route=st.sampled_from(["/api/auth/login", "/api/auth/refresh", "/api/auth/logout"]),
    origin=st.none()
    | st.sampled_from(["http://localhost", "http://[", "http://[::1", "null", "http://a:x"])
    | header_text,
    # Quart's test client splits the Host as a URL itself: only Hosts it can split.
    host=(st.none() | st.sampled_from(["localhost", "[::1]:80", "a:x"]) | header_text).filter(
        lambda h: h is None or _splits(f"http://{h}/")
    ),
    cookie=st.none() | header_text,
)
# An Origin urlsplit cannot split raised ValueError: a 500.
@example(route="/api/auth/logout", origin="http://[", host=None, cookie=None)
# A Host with an empty label: werkzeug could not bind the routes, the server answered 500.
@example(route="/api/auth/login", origin=None, host=".", cookie=None)
@example(route="/api/auth/login", origin=None, host="a" * 64, cookie=None)
async def test_cookie_routes_take_any_origin_host_and_cookie(
    world: World, route: str, origin: str | None, host: str | None, cookie: str | None
) -> None:
    headers = {"Content-Type": "application/json"}
    if origin is not None:
        headers["Origin"] = origin
    if host is not None:
        headers["Host"] = host
    if cookie is not None:
        headers["Cookie"] = f"ffcloud_refresh={cookie}"
    client = world.app.test_client()
    body = json.dumps({"username": "bob", "password": "wrong"}).encode()
    response = await client.post(route, data=body, headers=headers)
    await check_answer(response, {204})
    assert world.bob_state() == world.bob_before


@FUZZ
@given(
    path=st.one_of(
        st.text(max_size=40),
        st.sampled_from(["assets/app.js", "index.html", "..%2f..%2fetc/passwd", "%00.js"]),
        st.builds(
            lambda n, ext: "a" * n + ext, st.integers(200, 5000), st.sampled_from(["", ".js"])
        ),
        st.builds(lambda n: "assets/" + "b" * n, st.integers(200, 5000)),
    )
)
# A file name too long for the file system raised OSError: a 500.
@example(path="a" * 300 + ".png")
@example(path="assets/" + "b" * 300)
@example(path="/::")
async def test_any_page_path(world: World, path: str) -> None:
    world.settings.webui_dir.mkdir(parents=True, exist_ok=True)
    (world.settings.webui_dir / "index.html").write_text("<!doctype html><title>app</title>")
    quoted = urllib.parse.quote(path.encode("utf-8", "surrogatepass"), safe="/%")
    # Quart's test client reads "//x" as a host (and raises on "//::", escaped or
    # not); a request line is never split that way, so the path starts with one slash.
    quoted = quoted.lstrip("/")
    response = await world.app.test_client().get(f"/{quoted}")
    if await check_answer(response, {200}) == 200:
        assert response.content_type.startswith(("text/html", "text/javascript")), response
