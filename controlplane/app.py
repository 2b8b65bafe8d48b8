"""The HTTP API (PROTOCOL.md section 7), the key set, health, and the web UI.

Handlers stay thin: parse, authorise, run a unit of work from
:mod:`controlplane.store`, tell the coordinator, answer with a model.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import secrets
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio
from pydantic import TypeAdapter
from quart import Response, request, send_from_directory
from quart_schema import (
    QuartSchema,
    document_request,
    document_response,
    hide,
    security_scheme,
)
from quart_trio import QuartTrio
from werkzeug.exceptions import NotFound

from controlplane import errors, store
from controlplane.coordinator import Coordinator
from controlplane.db import Database
from controlplane.errors import ApiError, parse_body
from controlplane.issues import InvalidIssueUrl, fetch_issue, parse_issue_url
from controlplane.keys import KeyRing
from controlplane.metrics import Metrics
from controlplane.models import (
    AuditEntryOut,
    ConfigOut,
    CreateWorkspaceRequest,
    ErrorOut,
    HealthOut,
    IssueOut,
    LoginRequest,
    LoginResponse,
    UserOut,
    WorkspaceOut,
)
from controlplane.passwords import verify_password
from controlplane.relaylink import RelayLink
from controlplane.settings import Settings
from controlplane.throttle import LoginThrottle
from wire.protocol import Scope
from wire.tokens import TokenError, issue_token

REFRESH_COOKIE = "ffcloud_refresh"
REFRESH_COOKIE_PATH = "/api/auth"
#: Audit entries one request returns at most (the most recent ones).
AUDIT_LIMIT = 1000
#: Password checks at once (argon2 is slow on purpose; this bounds the CPU spent).
HASH_THREADS = 2
#: The OpenAPI security requirement of routes that need an access token.
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]
_NOT_SPA = ("/api/", "/.well-known/", "/openapi.json", "/healthz", "/metrics")


@attrs.define
class Services:
    """What the handlers use; built once by ``serve`` (or a test)."""

    settings: Settings
    db: Database
    keyring: KeyRing
    coordinator: Coordinator
    link: RelayLink | None = None
    metrics: Metrics | None = None
    github_transport: httpx.AsyncBaseTransport | None = None
    clock: Callable[[], float] = time.time
    throttle: LoginThrottle = attrs.field(init=False)
    hash_limiter: trio.CapacityLimiter | None = None

    def __attrs_post_init__(self) -> None:
        self.throttle = LoginThrottle(
            self.settings.login_max_failures, self.settings.login_failure_window, self.clock
        )


def is_loopback(host: str | None) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if not host:
        return False
    if host.startswith("["):  # [v6]:port
        name = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:  # name:port or v4:port
        name = host.rsplit(":", 1)[0]
    else:  # a name, or a bare v6 address
        name = host
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def content_security_policy(relay_url: str) -> str:
    """Scripts and styles from us only; WebSockets to the relay; no framing."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            # React sets style attributes; no inline script is allowed.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self' {relay_url}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def to_workspace_out(ws: store.Workspace) -> WorkspaceOut:
    """The API's view of a workspace."""
    return WorkspaceOut(
        id=ws.id,
        name=ws.name,
        issue=IssueOut(
            url=ws.issue_url,
            owner=ws.issue_owner,
            repo=ws.issue_repo,
            number=ws.issue_number,
            title=ws.issue_title,
            fetch_error=ws.issue_fetch_error,
        ),
        status=ws.status,
        vm_id=ws.vm_id,
        created_at=ws.created_at,
        updated_at=ws.updated_at,
    )


def create_app(services: Services) -> QuartTrio:
    """The Quart-trio application."""
    settings = services.settings
    app = QuartTrio(__name__, static_folder=None)
    app.config["MAX_CONTENT_LENGTH"] = settings.max_request_bytes
    app.config["PROPAGATE_EXCEPTIONS"] = False
    QuartSchema(
        app,
        openapi_path="/openapi.json",
        # The documentation UIs load scripts from a CDN, which the CSP forbids.
        redoc_ui_path=None,
        scalar_ui_path=None,
        swagger_ui_path=None,
        info={"title": "FF Cloud control plane", "version": "1"},
        security_schemes={"bearer": {"type": "http", "scheme": "bearer", "bearer_format": "JWT"}},
    )
    errors.install(app)
    app.extensions["ffcloud"] = services
    csp = content_security_policy(settings.relay_url)

    def hasher_limiter() -> trio.CapacityLimiter:
        if services.hash_limiter is None:
            services.hash_limiter = trio.CapacityLimiter(HASH_THREADS)
        return services.hash_limiter

    @app.after_request
    async def _headers(response: Response) -> Response:
        headers = response.headers
        headers["Content-Security-Policy"] = csp
        headers["X-Frame-Options"] = "DENY"
        headers["X-Content-Type-Options"] = "nosniff"
        headers["Referrer-Policy"] = "no-referrer"
        headers["Cross-Origin-Opener-Policy"] = "same-origin"
        headers["Cross-Origin-Resource-Policy"] = "same-origin"
        headers["Permissions-Policy"] = "camera=(), microphone=(), geolocation=()"
        if request.path.startswith("/api/"):
            headers["Cache-Control"] = "no-store"
        if services.metrics is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            services.metrics.observe_request(request.method, rule, response.status_code)
        return response

    # --- auth ---------------------------------------------------------------

    async def current_user() -> store.User:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise ApiError(
                401,
                "unauthorized",
                "send an access token: Authorization: Bearer <token>",
                {"WWW-Authenticate": "Bearer"},
            )
        try:
            claims = services.keyring.verifier(settings.issuer).verify(
                token.strip(), scope=Scope.CLIENT
            )
        except TokenError as exc:
            if exc.reason == "scope":
                raise ApiError(403, "forbidden", "this token cannot use the API") from None
            code = "token_expired" if exc.reason == "expired" else "invalid_token"
            raise ApiError(
                401, code, str(exc), {"WWW-Authenticate": 'Bearer error="invalid_token"'}
            ) from None
        user = await services.db.run(lambda c: store.get_user(c, claims.sub))
        if user is None:
            raise ApiError(401, "invalid_token", "the token's user no longer exists")
        return user

    def cookie_secure() -> bool:
        if settings.cookie_secure == "always":
            return True
        if settings.cookie_secure == "never":
            return False
        return not (request.scheme == "http" and is_loopback(request.host))

    async def token_response(user: store.User, refresh: str, status: int = 200) -> Response:
        now = services.clock()
        access = issue_token(
            services.keyring.signing_key,
            sub=user.id,
            scope=Scope.CLIENT,
            issuer=settings.issuer,
            ttl_seconds=settings.access_token_ttl,
            now=now,
        )
        body = LoginResponse(
            access_token=access,
            expires_at=dt.datetime.fromtimestamp(int(now + settings.access_token_ttl), dt.UTC),
            user=UserOut(id=user.id, username=user.username),
        )
        response = json_response(body, status)
        response.set_cookie(
            REFRESH_COOKIE,
            refresh,
            max_age=int(settings.refresh_token_ttl),
            path=REFRESH_COOKIE_PATH,
            httponly=True,
            secure=cookie_secure(),
            samesite="Strict",
        )
        return response

    @app.post("/api/auth/login")
    @document_request(LoginRequest)
    @document_response(LoginResponse, 200)
    @document_response(ErrorOut, 401)
    @document_response(ErrorOut, 429)
    async def login() -> Response:
        """Log in; sets the refresh cookie."""
        body = await parse_body(LoginRequest)
        keys = [f"user:{body.username.casefold()}", f"ip:{request.remote_addr}"]
        wait = services.throttle.retry_after(keys)
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                "too many failed logins; try again later",
                {"Retry-After": str(int(wait) + 1)},
            )
        found = await services.db.run(lambda c: store.user_credentials(c, body.username))
        password_hash = found[1] if found else None
        ok = await trio.to_thread.run_sync(
            verify_password, password_hash, body.password, limiter=hasher_limiter()
        )
        if not ok or found is None:
            services.throttle.failed(keys)
            if services.metrics is not None:
                services.metrics.login_failures.inc()
            raise ApiError(401, "invalid_credentials", "wrong user name or password")
        user = found[0]
        services.throttle.succeeded(keys[:1])
        refresh = secrets.token_urlsafe(32)
        await services.db.run(
            lambda c: store.add_refresh_token(c, user.id, refresh, settings.refresh_token_ttl)
        )
        return await token_response(user, refresh)

    @app.post("/api/auth/refresh")
    @document_response(LoginResponse, 200)
    @document_response(ErrorOut, 401)
    async def refresh() -> Response:
        """A new access token for the refresh cookie, which is rotated."""
        old = request.cookies.get(REFRESH_COOKIE)
        if not old:
            raise ApiError(401, "invalid_refresh_token", "no refresh cookie; log in")
        new = secrets.token_urlsafe(32)
        user = await services.db.run(
            lambda c: store.rotate_refresh_token(c, old, new, settings.refresh_token_ttl)
        )
        if user is None:
            raise ApiError(401, "invalid_refresh_token", "the session has ended; log in again")
        return await token_response(user, new)

    @app.post("/api/auth/logout")
    async def logout() -> Response:
        """Revoke the refresh token."""
        token = request.cookies.get(REFRESH_COOKIE)
        if token:
            await services.db.run(lambda c: store.revoke_refresh_token(c, token))
        response = Response("", status=204)
        response.delete_cookie(
            REFRESH_COOKIE,
            path=REFRESH_COOKIE_PATH,
            httponly=True,
            samesite="Strict",
            secure=cookie_secure(),
        )
        return response

    @app.get("/api/me")
    @security_scheme(BEARER)
    @document_response(UserOut)
    async def me() -> Response:
        """Who the token belongs to."""
        user = await current_user()
        return json_response(UserOut(id=user.id, username=user.username))

    @app.get("/api/config")
    @document_response(ConfigOut)
    async def config() -> Response:
        """Where clients open their WebSocket."""
        return json_response(ConfigOut(relay_url=settings.relay_url))

    # --- workspaces ---------------------------------------------------------

    @app.get("/api/workspaces")
    @security_scheme(BEARER)
    @document_response(list[WorkspaceOut])
    async def list_workspaces() -> Response:
        """The caller's workspaces, newest first."""
        user = await current_user()
        found = await services.db.run(lambda c: store.list_workspaces(c, user.id))
        return json_response([to_workspace_out(w) for w in found])

    @app.post("/api/workspaces")
    @security_scheme(BEARER)
    @document_request(CreateWorkspaceRequest)
    @document_response(WorkspaceOut, 201)
    @document_response(ErrorOut, 400)
    async def create_workspace() -> Response:
        """A workspace from a GitHub issue URL."""
        user = await current_user()
        body = await parse_body(CreateWorkspaceRequest)
        try:
            ref = parse_issue_url(body.issue_url)
        except InvalidIssueUrl as exc:
            raise ApiError(400, "invalid_issue_url", str(exc)) from None
        count = await services.db.run(lambda c: store.count_user_workspaces(c, user.id))
        if count >= settings.max_workspaces_per_user:
            raise ApiError(
                409, "too_many_workspaces", f"at most {settings.max_workspaces_per_user} workspaces"
            )
        fetched = await fetch_issue(
            ref,
            api_url=settings.github_api_url,
            token=settings.github_token,
            timeout_seconds=settings.github_timeout,
            body_max=settings.issue_body_max,
            transport=services.github_transport,
        )
        created = await services.db.run(lambda c: store.add_workspace(c, user.id, ref, fetched))
        services.coordinator.kick()
        return json_response(to_workspace_out(created), 201)

    async def owned_workspace(workspace_id: str) -> tuple[store.User, store.Workspace]:
        user = await current_user()
        found = await services.db.run(lambda c: store.get_workspace(c, workspace_id, user.id))
        if found is None:
            raise ApiError(404, "not_found", "no such workspace")
        return user, found

    @app.get("/api/workspaces/<workspace_id>")
    @security_scheme(BEARER)
    @document_response(WorkspaceOut)
    @document_response(ErrorOut, 404)
    async def get_workspace(workspace_id: str) -> Response:
        """One workspace (also an archived one, with status ``deleted``)."""
        _, found = await owned_workspace(workspace_id)
        return json_response(to_workspace_out(found))

    @app.delete("/api/workspaces/<workspace_id>")
    @security_scheme(BEARER)
    @document_response(ErrorOut, 404)
    async def delete_workspace(workspace_id: str) -> Response:
        """Archive a workspace; its VM releases it."""
        user = await current_user()
        gone = await services.db.run(lambda c: store.delete_workspace(c, workspace_id, user.id))
        if gone is None:
            raise ApiError(404, "not_found", "no such workspace")
        await services.coordinator.release(workspace_id)
        return Response("", status=204)

    @app.get("/api/workspaces/<workspace_id>/audit")
    @security_scheme(BEARER)
    @document_response(list[AuditEntryOut])
    @document_response(ErrorOut, 404)
    async def workspace_audit(workspace_id: str) -> Response:
        """Who answered, approved, denied or interrupted, oldest first."""
        await owned_workspace(workspace_id)
        entries = await services.db.run(lambda c: store.list_audit(c, workspace_id, AUDIT_LIMIT))
        return json_response(
            [
                AuditEntryOut(
                    at=e.at,
                    action=e.action,
                    user_id=e.user_id,
                    request_id=e.request_id,
                    detail=e.detail,
                )
                for e in entries
            ]
        )

    # --- keys, health, metrics ------------------------------------------------

    @app.get("/.well-known/jwks.json")
    async def jwks() -> Response:
        """The public keys that verify our tokens."""
        response = Response(json.dumps(services.keyring.jwks()), content_type="application/json")
        response.headers["Cache-Control"] = "max-age=60"
        return response

    @app.get("/healthz")
    @document_response(HealthOut, 200)
    @document_response(HealthOut, 503)
    async def healthz() -> Response:
        """200 when the database and relayd are reachable; 503 and why otherwise."""
        database = "ok"
        try:
            with trio.fail_after(2):
                await services.db.ping()
        except Exception as exc:
            database = f"unreachable: {type(exc).__name__}"
        link = services.link
        relay = (
            "ok"
            if link is not None and link.connected
            else (f"unreachable: {link.last_error}" if link is not None else "not configured")
        )
        healthy = database == "ok" and relay == "ok"
        body = HealthOut(status="ok" if healthy else "unhealthy", database=database, relay=relay)
        return json_response(body, 200 if healthy else 503)

    @app.get("/metrics")
    @hide
    async def metrics() -> Response:
        """Prometheus metrics; from loopback only unless ``metrics_access`` is ``any``."""
        # A request relayed by a proxy comes from loopback too: it is not local.
        proxied = any(h in request.headers for h in ("Forwarded", "X-Forwarded-For", "X-Real-IP"))
        if services.metrics is None or (
            settings.metrics_access != "any" and (proxied or not is_loopback(request.remote_addr))
        ):
            raise ApiError(404, "not_found", "no such resource")
        body, content_type = await services.metrics.render(services)
        return Response(body, content_type=content_type)

    # --- the web UI -------------------------------------------------------------

    @app.get("/")
    @app.get("/<path:path>")
    @hide
    async def web_ui(path: str = "") -> Response:
        """Built files of the web UI; any other page path gets index.html."""
        if any(f"/{path}".startswith(prefix) for prefix in _NOT_SPA):
            raise ApiError(404, "not_found", "no such resource")
        root: Path = settings.webui_dir
        if path:
            try:
                response = await send_from_directory(root, path)
            except NotFound:
                if "." in path.rsplit("/", 1)[-1]:
                    raise ApiError(404, "not_found", "no such file") from None
            else:
                if path.startswith("assets/"):
                    # Vite names assets by content hash: they never change.
                    response.headers["Cache-Control"] = "public, max-age=31536000, immutable"
                return response
        try:
            response = await send_from_directory(root, "index.html")
        except NotFound:
            raise ApiError(404, "not_found", "the web UI is not built (run make webui)") from None
        response.headers["Cache-Control"] = "no-cache"
        return response

    return app


def json_response(model: Any, status: int = 200) -> Response:
    """Serialise a response model (or list of them) as camelCase JSON."""
    data = TypeAdapter(type(model)).dump_python(
        model, mode="json", by_alias=True, exclude_none=True
    )
    return Response(json.dumps(data), status=status, content_type="application/json")
