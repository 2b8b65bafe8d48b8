"""The HTTP API through Quart's test client (docs/protocol.md section 7)."""

from __future__ import annotations

import datetime as dt
import json
import time
from functools import partial
from typing import Any

import attrs
import pytest
import trio
from quart_trio import QuartTrio

from controlplane import store
from controlplane.app import create_app
from controlplane.auth import REFRESH_COOKIE
from controlplane.services import Services
from tests.controlplane.conftest import PASSWORD
from tests.support.fake_github import FakeGitHub
from wire.protocol import Scope
from wire.tokens import SigningKey, issue_token

ISSUE = "https://github.com/octo/hello/issues/7"


async def login(app: QuartTrio, username: str = "alice", password: str = PASSWORD) -> Any:
    client = app.test_client()
    response = await client.post(
        "/api/auth/login", json={"username": username, "password": password}
    )
    return response


async def token_for(app: QuartTrio, username: str = "alice") -> str:
    response = await login(app, username)
    assert response.status_code == 200
    return str((await response.get_json())["accessToken"])


def refresh_cookie(client: Any) -> str:
    values = [c.value for c in client.cookie_jar if c.name == REFRESH_COOKIE]
    assert len(values) == 1
    return str(values[0])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def assert_error(response: Any, status: int, code: str) -> str:
    assert response.status_code == status, await response.get_data(as_text=True)
    assert response.content_type == "application/json"
    body = await response.get_json()
    assert set(body) == {"error"}
    assert body["error"]["code"] == code
    assert isinstance(body["error"]["message"], str)
    assert body["error"]["message"]
    return str(body["error"]["message"])


async def test_login_returns_a_token_and_a_strict_refresh_cookie(app: QuartTrio) -> None:
    with trio.fail_after(10):
        response = await login(app)
    assert response.status_code == 200
    body = await response.get_json()
    assert body["user"]["username"] == "alice"
    assert body["expiresAt"].endswith("Z")
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith(f"{REFRESH_COOKIE}=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Path=/api/auth" in cookie
    # The test client talks to "localhost" over http: loopback, so not Secure.
    assert "Secure" not in cookie
    services: Services = app.extensions["ffcloud"]
    claims = services.keyring.verifier("ffcloud").verify(body["accessToken"], scope=Scope.CLIENT)
    assert claims.sub == body["user"]["id"]
    assert claims.exp - claims.iat == 15 * 60


async def test_refresh_cookie_is_secure_off_loopback(app: QuartTrio) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        response = await client.post(
            "/api/auth/login",
            json={"username": "alice", "password": PASSWORD},
            headers={"Host": "cloud.example.com"},
        )
    assert response.status_code == 200
    assert "Secure" in response.headers["Set-Cookie"]


async def test_unknown_user_and_wrong_password_look_the_same(app: QuartTrio) -> None:
    with trio.fail_after(10):
        wrong = await assert_error(await login(app, "alice", "nope"), 401, "invalid_credentials")
        unknown = await assert_error(
            await login(app, "mallory", "nope"), 401, "invalid_credentials"
        )
    assert wrong == unknown


async def test_repeated_failures_are_throttled(app: QuartTrio, clock: Any) -> None:
    services: Services = app.extensions["ffcloud"]
    services.clock = clock  # the test moves time, not sleeps
    with trio.fail_after(20):
        for _ in range(3):
            await assert_error(await login(app, "alice", "bad"), 401, "invalid_credentials")
        response = await login(app, "alice", PASSWORD)  # even the right password
        await assert_error(response, 429, "rate_limited")
        assert int(response.headers["Retry-After"]) > 0
        clock.now += services.settings.login_failure_window + 1
        assert (await login(app, "alice", PASSWORD)).status_code == 200


async def test_refresh_rotates_and_logout_revokes(app: QuartTrio) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        first = await client.post(
            "/api/auth/login", json={"username": "alice", "password": PASSWORD}
        )
        assert first.status_code == 200
        old_cookie = refresh_cookie(client)
        refreshed = await client.post("/api/auth/refresh")
        assert refreshed.status_code == 200
        assert (await refreshed.get_json())["accessToken"]
        new_cookie = refresh_cookie(client)
        assert new_cookie != old_cookie
        # The old token was spent: replaying it fails, and ends the new one too.
        other = app.test_client()
        other.set_cookie("localhost", REFRESH_COOKIE, old_cookie, path="/api/auth")
        await assert_error(await other.post("/api/auth/refresh"), 401, "invalid_refresh_token")
        await assert_error(await client.post("/api/auth/refresh"), 401, "invalid_refresh_token")
        # A fresh login, then logout: the cookie no longer refreshes.
        await client.post("/api/auth/login", json={"username": "alice", "password": PASSWORD})
        cookie = refresh_cookie(client)
        assert (await client.post("/api/auth/logout")).status_code == 204
        again = app.test_client()
        again.set_cookie("localhost", REFRESH_COOKIE, cookie, path="/api/auth")
        await assert_error(await again.post("/api/auth/refresh"), 401, "invalid_refresh_token")
        await assert_error(
            await app.test_client().post("/api/auth/refresh"), 401, "invalid_refresh_token"
        )


async def test_me_and_config(app: QuartTrio) -> None:
    with trio.fail_after(10):
        token = await token_for(app)
        client = app.test_client()
        me = await client.get("/api/me", headers=bearer(token))
        assert (await me.get_json())["username"] == "alice"
        config = await client.get("/api/config")
        assert await config.get_json() == {"relayUrl": "ws://127.0.0.1:8765"}


async def test_tokens_are_checked(app: QuartTrio) -> None:
    services: Services = app.extensions["ffcloud"]
    client = app.test_client()
    with trio.fail_after(10):
        token = await token_for(app)
        await assert_error(await client.get("/api/me"), 401, "unauthorized")
        await assert_error(
            await client.get("/api/me", headers={"Authorization": "Basic abc"}), 401, "unauthorized"
        )
        head, payload, signature = token.split(".")
        tampered = f"{head}.{payload}.{signature[:-4]}AAAA"
        await assert_error(
            await client.get("/api/me", headers=bearer(tampered)), 401, "invalid_token"
        )
        await assert_error(
            await client.get("/api/me", headers=bearer("junk")), 401, "invalid_token"
        )
        user = services.db.run_sync(lambda c: store.user_credentials(c, "alice"))
        assert user is not None
        key = services.keyring.signing_key
        expired = issue_token(
            key,
            sub=user[0].id,
            scope=Scope.CLIENT,
            issuer="ffcloud",
            ttl_seconds=60,
            now=time.time() - 3600,
        )
        await assert_error(
            await client.get("/api/me", headers=bearer(expired)), 401, "token_expired"
        )
        foreign = issue_token(
            SigningKey.generate(services.keyring.signing_key.kid),
            sub=user[0].id,
            scope=Scope.CLIENT,
            issuer="ffcloud",
            ttl_seconds=60,
        )
        await assert_error(
            await client.get("/api/me", headers=bearer(foreign)), 401, "invalid_token"
        )
        vm_token = issue_token(key, sub="vm-1", scope=Scope.VM, issuer="ffcloud", ttl_seconds=60)
        await assert_error(await client.get("/api/me", headers=bearer(vm_token)), 403, "forbidden")


async def test_workspace_lifecycle(app: QuartTrio, github: FakeGitHub) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        headers = bearer(await token_for(app))
        created = await client.post(
            "/api/workspaces", json={"issueUrl": ISSUE + "/?x=1#c"}, headers=headers
        )
        assert created.status_code == 201, await created.get_data(as_text=True)
        ws = await created.get_json()
        assert ws["issue"] == {
            "url": ISSUE,
            "owner": "octo",
            "repo": "hello",
            "number": 7,
            "title": "Make it greet",
        }
        assert ws["status"] == "provisioning"
        assert ws["name"] == "octo/hello#7"
        assert "vmId" not in ws
        assert github.requests[-1].path == "/repos/octo/hello/issues/7"
        listed = await (await client.get("/api/workspaces", headers=headers)).get_json()
        assert [w["id"] for w in listed] == [ws["id"]]
        second = await (
            await client.post("/api/workspaces", json={"issueUrl": ISSUE}, headers=headers)
        ).get_json()
        listed = await (await client.get("/api/workspaces", headers=headers)).get_json()
        assert [w["id"] for w in listed] == [second["id"], ws["id"]]  # newest first
        one = await client.get(f"/api/workspaces/{ws['id']}", headers=headers)
        assert (await one.get_json())["id"] == ws["id"]
        audit = await client.get(f"/api/workspaces/{ws['id']}/audit", headers=headers)
        assert await audit.get_json() == []
        deleted = await client.delete(f"/api/workspaces/{ws['id']}", headers=headers)
        assert deleted.status_code == 204
        archived = await (
            await client.get(f"/api/workspaces/{ws['id']}", headers=headers)
        ).get_json()
        assert archived["status"] == "deleted"
        listed = await (await client.get("/api/workspaces", headers=headers)).get_json()
        assert [w["id"] for w in listed] == [second["id"]]
        await assert_error(
            await client.delete(f"/api/workspaces/{ws['id']}", headers=headers), 404, "not_found"
        )


async def test_another_users_workspace_is_not_found(app: QuartTrio) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        alice = bearer(await token_for(app, "alice"))
        bob = bearer(await token_for(app, "bob"))
        ws = await (
            await client.post("/api/workspaces", json={"issueUrl": ISSUE}, headers=alice)
        ).get_json()
        for method, path in [
            ("GET", f"/api/workspaces/{ws['id']}"),
            ("DELETE", f"/api/workspaces/{ws['id']}"),
            ("GET", f"/api/workspaces/{ws['id']}/audit"),
            ("GET", "/api/workspaces/no-such-id"),
        ]:
            call = client.get if method == "GET" else client.delete
            response = await call(path, headers=bob)
            await assert_error(response, 404, "not_found")
        assert await (await client.get("/api/workspaces", headers=bob)).get_json() == []


async def test_issue_fetch_failures_still_create_the_workspace(
    app: QuartTrio, github: FakeGitHub
) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        headers = bearer(await token_for(app))
        missing = await client.post(
            "/api/workspaces",
            json={"issueUrl": "https://github.com/octo/hello/issues/99"},
            headers=headers,
        )
        assert missing.status_code == 201
        issue = (await missing.get_json())["issue"]
        assert "title" not in issue
        assert "no such issue" in issue["fetchError"]
        github.fail_with = 502
        failed = await (
            await client.post("/api/workspaces", json={"issueUrl": ISSUE}, headers=headers)
        ).get_json()
        assert "502" in failed["issue"]["fetchError"]
        github.fail_with = None
        github.hang = True  # the setting is 1 s in these tests
        slow = await (
            await client.post("/api/workspaces", json={"issueUrl": ISSUE}, headers=headers)
        ).get_json()
        assert "did not answer" in slow["issue"]["fetchError"]


async def test_github_token_is_sent_only_for_allowed_owners(
    app: QuartTrio, github: FakeGitHub
) -> None:
    services: Services = app.extensions["ffcloud"]
    services.settings = attrs.evolve(
        services.settings, github_token="gh-secret", github_token_owners="Octo, other"
    )
    github.add_issue("stranger", "private", 1, "Secret", "Only the token sees it.")
    app2 = create_app(services)
    with trio.fail_after(10):
        headers = bearer(await token_for(app2))
        client = app2.test_client()
        await client.post("/api/workspaces", json={"issueUrl": ISSUE}, headers=headers)
        assert github.requests[-1].headers["authorization"] == "Bearer gh-secret"
        await client.post(
            "/api/workspaces",
            json={"issueUrl": "https://github.com/stranger/private/issues/1"},
            headers=headers,
        )
        assert "authorization" not in github.requests[-1].headers


@pytest.mark.parametrize("repo", ["-upload-pack=evil", "..", "a..b", "x.git", "-"])
async def test_repository_names_vmagent_would_refuse_get_400(app: QuartTrio, repo: str) -> None:
    with trio.fail_after(10):
        headers = bearer(await token_for(app))
        response = await app.test_client().post(
            "/api/workspaces",
            json={"issueUrl": f"https://github.com/octo/{repo}/issues/1"},
            headers=headers,
        )
        await assert_error(response, 400, "invalid_issue_url")


@pytest.mark.parametrize(
    ("body", "content_type", "status", "code"),
    [
        (b"{not json", "application/json", 400, "bad_request"),
        (b"[]", "application/json", 400, "bad_request"),
        (b'{"issueUrl": 5}', "application/json", 400, "bad_request"),
        (b'{"issueUrl": null}', "application/json", 400, "bad_request"),
        (b"{}", "application/json", 400, "bad_request"),
        (
            b'{"issueUrl": "%s", "extra": 1}' % ISSUE.encode(),
            "application/json",
            400,
            "bad_request",
        ),
        (b'{"issue_url": "%s"}' % ISSUE.encode(), "application/json", 400, "bad_request"),
        (b'{"issueUrl": NaN}', "application/json", 400, "bad_request"),
        (b"[" * 30_000 + b"]" * 30_000, "application/json", 400, "bad_request"),
        (b'{"issueUrl": "\xff"}', "application/json", 400, "bad_request"),
        (b"issueUrl=x", "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
        (b'{"issueUrl": "' + b"x" * 70_000 + b'"}', "application/json", 413, "too_large"),
    ],
)
async def test_bad_bodies_get_clear_errors(
    app: QuartTrio, body: bytes, content_type: str, status: int, code: str
) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        headers = {**bearer(await token_for(app)), "Content-Type": content_type}
        response = await client.post("/api/workspaces", data=body, headers=headers)
        await assert_error(response, status, code)


async def test_unknown_fields_are_named(app: QuartTrio) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        headers = bearer(await token_for(app))
        response = await client.post(
            "/api/workspaces", json={"issueUrl": ISSUE, "colour": "red"}, headers=headers
        )
        assert "colour: unknown field" in await assert_error(response, 400, "bad_request")
        response = await client.post("/api/auth/login", json={"username": "alice", "password": 5})
        assert "password" in await assert_error(response, 400, "bad_request")


@pytest.mark.parametrize(
    "url",
    [
        "http://github.com/octo/hello/issues/7",
        "https://gitlab.com/octo/hello/issues/7",
        "https://github.com.evil.com/octo/hello/issues/7",
        "https://user@github.com/octo/hello/issues/7",
        "https://github.com:444/octo/hello/issues/7",
        "https://github.com/octo/hello/pull/7",
        "https://github.com/octo/hello/issues/0",
        "https://github.com/octo/hello/issues/07",
        "https://github.com/octo/hello/issues/-1",
        "https://github.com/octo/hello/issues/99999999999",
        "https://github.com/octo/hello/issues/7/comments",
        "https://github.com/octo/hello/issues",
        "https://github.com/-octo/hello/issues/7",
        "https://github.com/oc--to/hello/issues/7",
        "https://github.com/octo/../issues/7",
        "https://github.com/octo/hel lo/issues/7",
        " https://github.com/octo/hello/issues/7",
        "https://github.com/octo/hello/issues/7\n",
        "javascript:alert(1)",
        "not a url",
    ],
)
async def test_bad_issue_urls_are_refused(app: QuartTrio, url: str) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        headers = bearer(await token_for(app))
        response = await client.post("/api/workspaces", json={"issueUrl": url}, headers=headers)
        await assert_error(response, 400, "invalid_issue_url")


async def test_unknown_routes_and_methods_are_json(app: QuartTrio) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        await assert_error(await client.get("/api/nothing"), 404, "not_found")
        await assert_error(await client.put("/api/auth/login"), 405, "method_not_allowed")
        await assert_error(await client.get("/"), 404, "not_found")  # no web UI built here


async def test_security_headers_and_no_cors(app: QuartTrio) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        response = await client.get("/api/config", headers={"Origin": "https://evil.example"})
    csp = response.headers["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in csp
    assert "connect-src 'self' ws://127.0.0.1:8765" in csp
    assert "script-src 'self'" in csp
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert "Access-Control-Allow-Origin" not in response.headers


async def test_the_audit_names_each_entrys_session(app: QuartTrio, services: Services) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        headers = bearer(await token_for(app))
        created = await client.post("/api/workspaces", json={"issueUrl": ISSUE}, headers=headers)
        ws = await created.get_json()
        at = dt.datetime(2026, 12, 1, 9, 0, tzinfo=dt.UTC)
        for session in (None, "side-2"):
            services.db.run_sync(
                partial(
                    store.add_audit,
                    workspace_id=ws["id"],
                    user_id="u1",
                    action="interrupt",
                    request_id=None,
                    at=at,
                    session_id=session,
                )
            )
        audit = await (
            await client.get(f"/api/workspaces/{ws['id']}/audit", headers=headers)
        ).get_json()
        assert [e.get("sessionId", "absent") for e in audit] == ["absent", "side-2"]


async def test_jwks_and_openapi(app: QuartTrio) -> None:
    client = app.test_client()
    services: Services = app.extensions["ffcloud"]
    with trio.fail_after(10):
        jwks = await (await client.get("/.well-known/jwks.json")).get_json()
        openapi = await (await client.get("/openapi.json")).get_json()
    assert [k["kid"] for k in jwks["keys"]] == [services.keyring.signing_key.kid]
    assert jwks == json.loads(services.settings.jwks_path.read_text())
    assert all("d" not in k for k in jwks["keys"])  # never the private part
    assert "/api/workspaces" in openapi["paths"]
    post = openapi["paths"]["/api/workspaces"]["post"]
    schema_ref = post["requestBody"]["content"]["application/json"]["schema"]
    assert schema_ref["properties"]["issueUrl"]["type"] == "string"
    assert schema_ref["additionalProperties"] is False
    assert post["security"] == [{"bearer": []}]
    assert "security" not in openapi["paths"]["/api/auth/login"]["post"]
    assert "WorkspaceOut" in openapi["components"]["schemas"]


async def test_web_ui_is_served_with_a_single_page_fallback(
    app: QuartTrio, services: Services
) -> None:
    root = services.settings.webui_dir
    (root / "assets").mkdir(parents=True)
    (root / "index.html").write_text("<!doctype html><title>FF Cloud</title>")
    (root / "assets" / "app-1234.js").write_text("console.log(1)")
    client = app.test_client()
    with trio.fail_after(10):
        index = await client.get("/")
        assert "FF Cloud" in await index.get_data(as_text=True)
        deep = await client.get("/workspaces/abc")
        assert "FF Cloud" in await deep.get_data(as_text=True)
        asset = await client.get("/assets/app-1234.js")
        assert "immutable" in asset.headers["Cache-Control"]
        await assert_error(await client.get("/assets/missing.js"), 404, "not_found")
        escaped = await client.get("/../../etc/passwd")
        assert "root:" not in await escaped.get_data(as_text=True)
        await assert_error(await client.get("/api/unknown"), 404, "not_found")


async def test_metrics_only_from_loopback(app: QuartTrio) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        response = await client.get("/metrics", scope_base={"client": ("203.0.113.9", 1234)})
        await assert_error(response, 404, "not_found")
        response = await client.get(
            "/metrics",
            scope_base={"client": ("127.0.0.1", 1234)},
            headers={"X-Forwarded-For": "203.0.113.9"},
        )
        await assert_error(response, 404, "not_found")
        await login(app, "alice", "bad")
        response = await client.get("/metrics", scope_base={"client": ("127.0.0.1", 1234)})
        text = await response.get_data(as_text=True)
    assert "controlplane_login_failures_total 1.0" in text
    assert (
        'controlplane_http_requests_total{method="POST",route="/api/auth/login",status="401"} 1.0'
        in text
    )


async def test_healthz_reports_a_missing_relay(app: QuartTrio) -> None:
    client = app.test_client()
    with trio.fail_after(10):
        response = await client.get("/healthz")
    assert response.status_code == 503
    body = await response.get_json()
    assert body["database"] == "ok"
    assert body["relay"] != "ok"
