"""The HTTP API (docs/protocol.md section 7), the key set, health, and the web UI.

Handlers stay thin: parse, authorise, run a unit of work from
:mod:`controlplane.store`, tell the coordinator, answer with a model.
"""

from __future__ import annotations

import json

import trio
from quart import Response, request
from quart_schema import (
    QuartSchema,
    document_request,
    document_response,
    hide,
    security_scheme,
)
from quart_trio import QuartTrio

from controlplane import errors, store
from controlplane.auth import BEARER, install_auth
from controlplane.clientaddr import TrustedProxies, parse_networks
from controlplane.errors import ApiError, parse_body
from controlplane.issues import InvalidIssueUrl, fetch_issue, parse_issue_url
from controlplane.models import (
    AuditEntryOut,
    ConfigOut,
    CreateWorkspaceRequest,
    ErrorOut,
    HealthOut,
    IssueOut,
    WorkspaceOut,
)
from controlplane.services import Services
from controlplane.settings import Settings
from controlplane.web import (
    HostGuard,
    install_headers,
    install_webui,
    is_loopback,
    json_response,
)

#: Audit entries one request returns at most (the most recent ones).
AUDIT_LIMIT = 1000


def to_workspace_out(ws: store.Workspace, relay_url: str) -> WorkspaceOut:
    """The API's view of a workspace; ``relay_url`` (this node's) when its VM has no node yet."""
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
        relay_url=ws.relay_url or relay_url,
        lost_at=ws.lost_at,
    )


def github_token_for(settings: Settings, owner: str) -> str | None:
    """The server's GitHub token, only for the owners ``github_token_owners`` names.

    Any user may name any issue: with the token used for every owner, they
    could read the private repositories the token can see.
    """
    owners = settings.token_owners
    if settings.github_token and ("*" in owners or owner.lower() in owners):
        return settings.github_token
    return None


def create_app(services: Services) -> QuartTrio:
    """The Quart-trio application."""
    settings = services.settings
    app = QuartTrio(__name__, static_folder=None)
    # No redirect from "//" to "/": it answered an HTML page, and turned
    # DELETE /api/workspaces//audit into DELETE of the workspace "audit".
    app.url_map.merge_slashes = False
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
    # X-Forwarded-For/-Proto count only from a trusted proxy (login throttling, cookies).
    app.asgi_app = HostGuard(  # type: ignore[method-assign]
        TrustedProxies(app.asgi_app, parse_networks(settings.trusted_proxies))
    )
    install_headers(app, settings.relay_url, services.metrics)
    current_user = install_auth(app, services)

    # --- config and workspaces --------------------------------------------------

    @app.get("/api/config")
    @document_response(ConfigOut)
    async def config() -> Response:
        """Where clients open their WebSocket."""
        return json_response(ConfigOut(relay_url=settings.relay_url))

    @app.get("/api/workspaces")
    @security_scheme(BEARER)
    @document_response(list[WorkspaceOut])
    async def list_workspaces() -> Response:
        """The caller's workspaces, newest first."""
        user = await current_user()
        found = await services.db.run(lambda c: store.list_workspaces(c, user.id))
        return json_response([to_workspace_out(w, settings.relay_url) for w in found])

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
            token=github_token_for(settings, ref.owner),
            timeout_seconds=settings.github_timeout,
            body_max=settings.issue_body_max,
            transport=services.github_transport,
        )
        created = await services.db.run(lambda c: store.add_workspace(c, user.id, ref, fetched))
        services.coordinator.kick()
        return json_response(to_workspace_out(created, settings.relay_url), 201)

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
        return json_response(to_workspace_out(found, settings.relay_url))

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
                    session_id=e.session_id,
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
        body, content_type = await services.metrics.render(
            services.db, services.coordinator, services.link
        )
        return Response(body, content_type=content_type)

    install_webui(app, settings.webui_dir)
    return app
