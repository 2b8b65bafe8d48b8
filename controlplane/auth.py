"""Login, refresh, logout, and who a request's access token belongs to."""

from __future__ import annotations

import datetime as dt
import math
import secrets
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

import trio
from quart import Response, request
from quart_schema import document_request, document_response, security_scheme
from quart_trio import QuartTrio

from controlplane import loginlimits, store
from controlplane.errors import ApiError, parse_body
from controlplane.models import ErrorOut, LoginRequest, LoginResponse, UserOut
from controlplane.passwords import verify_password
from controlplane.throttle import keys_for
from controlplane.web import is_loopback, json_response, same_host
from wire.protocol import Scope
from wire.tokens import TokenError, issue_token

if TYPE_CHECKING:
    from controlplane.services import Services

REFRESH_COOKIE = "ffcloud_refresh"
REFRESH_COOKIE_PATH = "/api/auth"
#: Password checks at once (argon2 is slow on purpose; this bounds the CPU spent).
HASH_THREADS = 2
#: The OpenAPI security requirement of routes that need an access token.
BEARER: list[dict[str, list[str]]] = [{"bearer": []}]

CurrentUser = Callable[[], Awaitable[store.User]]


def install_auth(app: QuartTrio, services: Services) -> CurrentUser:
    """Add the ``/api/auth`` routes and ``/api/me``; returns the current-user check."""
    settings = services.settings

    def hasher_limiter() -> trio.CapacityLimiter:
        if services.hash_limiter is None:
            services.hash_limiter = trio.CapacityLimiter(HASH_THREADS)
        return services.hash_limiter

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
        user = await services.db.run(
            lambda c: store.access_allowed(c, claims.sub, claims.sid, claims.gen)
        )
        if user is None:
            # Logged out, password changed, user removed: the session has ended.
            raise ApiError(
                401,
                "invalid_token",
                "the token's session has ended; log in again",
                {"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        return user

    def same_origin() -> None:
        """Refuse a browser request sent by another site to a cookie endpoint.

        ``SameSite=Strict`` keeps the cookie off cross-site requests in
        today's browsers; this is the second lock. A request without
        ``Origin`` (curl, scripts) passes: it cannot come from a page.
        """
        origin = request.headers.get("Origin")
        if origin is None:
            return
        if not same_host(origin, request.headers.get("Host", "")):
            raise ApiError(403, "forbidden_origin", "this request came from another site")

    def cookie_secure() -> bool:
        if settings.cookie_secure == "always":
            return True
        if settings.cookie_secure == "never":
            return False
        return not (request.scheme == "http" and is_loopback(request.host))

    async def token_response(session: store.Session, refresh: str, status: int = 200) -> Response:
        now = services.clock()
        user = session.user
        # Never past the session's absolute end.
        left = max(0.0, session.expires_at.timestamp() - now)
        ttl = min(settings.access_token_ttl, left)
        access = issue_token(
            services.keyring.signing_key,
            sub=user.id,
            scope=Scope.CLIENT,
            issuer=settings.issuer,
            ttl_seconds=ttl,
            now=now,
            extra={"sid": session.id, "gen": session.gen},
        )
        body = LoginResponse(
            access_token=access,
            expires_at=dt.datetime.fromtimestamp(int(now + ttl), dt.UTC),
            user=UserOut(id=user.id, username=user.username),
        )
        response = json_response(body, status)
        response.set_cookie(
            REFRESH_COOKIE,
            refresh,
            max_age=int(
                max(0.0, min(settings.refresh_token_ttl, session.expires_at.timestamp() - now))
            ),
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
        same_origin()
        body = await parse_body(LoginRequest)
        policy = settings.throttle_policy
        pair_key, account_key = keys_for(body.username, request.remote_addr or "?")
        # Reserved before the (slow) password check: attempts in flight count.
        wait = await loginlimits.reserve(
            services.db, pair_key, account_key, services.clock(), policy
        )
        if wait > 0:
            raise ApiError(
                429,
                "rate_limited",
                "too many login attempts; try again later",
                {"Retry-After": str(math.ceil(wait))},
            )
        found = await services.db.run(lambda c: store.user_credentials(c, body.username))
        password_hash = found[1] if found else None
        ok = await trio.to_thread.run_sync(
            verify_password, password_hash, body.password, limiter=hasher_limiter()
        )
        if not ok or found is None:
            if services.metrics is not None:
                services.metrics.login_failures.inc()
            raise ApiError(401, "invalid_credentials", "wrong user name or password")
        user = found[0]
        await services.db.run(
            lambda c: loginlimits.login_succeeded(c, pair_key, account_key, policy)
        )
        refresh = secrets.token_urlsafe(32)
        session = await services.db.run(
            lambda c: store.add_session(
                c, user, refresh, settings.refresh_token_ttl, settings.session_max_age
            )
        )
        return await token_response(session, refresh)

    @app.post("/api/auth/refresh")
    @document_response(LoginResponse, 200)
    @document_response(ErrorOut, 401)
    async def refresh() -> Response:
        """A new access token for the refresh cookie, which is rotated."""
        same_origin()
        old = request.cookies.get(REFRESH_COOKIE)
        if not old:
            raise ApiError(401, "invalid_refresh_token", "no refresh cookie; log in")
        new = secrets.token_urlsafe(32)
        session = await services.db.run(
            lambda c: store.rotate_refresh_token(c, old, new, settings.refresh_token_ttl)
        )
        if session is None:
            raise ApiError(401, "invalid_refresh_token", "the session has ended; log in again")
        return await token_response(session, new)

    @app.post("/api/auth/logout")
    async def logout() -> Response:
        """End the session: its refresh tokens, and its access tokens at the API and relayd."""
        same_origin()
        token = request.cookies.get(REFRESH_COOKIE)
        if token:
            ended = await services.db.run(lambda c: store.revoke_refresh_token(c, token))
            if ended is not None:
                services.coordinator.kick()  # relayd hears of it on this pass
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

    return current_user
