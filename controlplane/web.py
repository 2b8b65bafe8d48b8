"""What every answer shares (security headers, JSON), and the web UI's files."""

from __future__ import annotations

import ipaddress
import json
import urllib.parse
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from quart import Response, request, send_from_directory
from quart_schema import hide
from quart_trio import QuartTrio
from werkzeug.exceptions import NotFound

from controlplane.errors import ApiError
from controlplane.metrics import Metrics

#: Paths that are never a page of the single-page app.
_NOT_SPA = ("/api/", "/.well-known/", "/openapi.json", "/healthz", "/metrics")


def same_host(origin: str, host: str) -> bool:
    """True when an ``Origin`` header names the host (and port) of the ``Host`` header.

    The scheme is not compared: behind a TLS proxy that is not a trusted
    proxy, the control plane sees http while the browser says https. A
    ``Host`` without a port (nginx's ``$host`` drops it) is compared with the
    origin's host name alone.
    """
    try:
        parts = urllib.parse.urlsplit(origin)
    except ValueError:  # "http://[": no host anyone could serve
        return False
    if parts.scheme not in ("http", "https") or not parts.netloc or not host:
        return False  # "null", or not a web origin
    default = {"http": ":80", "https": ":443"}[parts.scheme]
    netloc, host = parts.netloc.lower().removesuffix(default), host.lower().removesuffix(default)
    if netloc == host:
        return True
    has_port = host.rsplit("]", 1)[-1].count(":") == 1
    return not has_port and (parts.hostname or "") == host.strip("[]")


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


def valid_host(host: str) -> bool:
    """True when werkzeug can bind routes to a ``Host`` header (its name encodes as IDNA)."""
    try:
        host.lower().partition(":")[0].encode("idna")
    except UnicodeError:  # "." or "a..b": an empty label; a label over 63 characters
        return False
    return True


class HostGuard:
    """ASGI: a 400 JSON answer for a ``Host`` that werkzeug cannot bind routes to.

    Quart binds the URL map before any error handler runs: such a Host
    would end in the server's own 500 page instead of our JSON error.
    """

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """Handle one ASGI connection."""
        if scope.get("type") == "http":
            hosts = [v for k, v in scope.get("headers", []) if k.lower() == b"host"]
            if hosts and not valid_host(hosts[0].decode("latin-1")):
                body = json.dumps(
                    {"error": {"code": "bad_request", "message": "the Host header is not a host"}}
                ).encode()
                headers = [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"x-content-type-options", b"nosniff"),
                ]
                await send({"type": "http.response.start", "status": 400, "headers": headers})
                await send({"type": "http.response.body", "body": body})
                return
        await self.app(scope, receive, send)


def relay_origin(relay_url: str) -> str:
    """``scheme://host[:port]`` of a relay URL: every node behind one origin may be reached.

    Nodes behind one proxy differ by path (``wss://host/nodes/2``), and a CSP
    source with a path allows that path alone.
    """
    parts = urllib.parse.urlsplit(relay_url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme and parts.netloc else relay_url


def content_security_policy(relay_url: str) -> str:
    """Scripts and styles from us only; WebSockets to the relay's origin; no framing."""
    return "; ".join(
        [
            "default-src 'self'",
            "script-src 'self'",
            # React sets style attributes; no inline script is allowed.
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self'",
            f"connect-src 'self' {relay_origin(relay_url)}",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            "frame-ancestors 'none'",
        ]
    )


def json_response(model: Any, status: int = 200) -> Response:
    """Serialise a response model (or list of them) as camelCase JSON."""
    data = TypeAdapter(type(model)).dump_python(
        model, mode="json", by_alias=True, exclude_none=True
    )
    return Response(json.dumps(data), status=status, content_type="application/json")


def install_headers(app: QuartTrio, relay_url: str, metrics: Metrics | None) -> None:
    """Security headers on every answer (and request counts for the metrics)."""
    csp = content_security_policy(relay_url)

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
        if metrics is not None:
            rule = request.url_rule.rule if request.url_rule is not None else "unmatched"
            metrics.observe_request(request.method, rule, response.status_code)
        return response


def install_webui(app: QuartTrio, webui_dir: Path) -> None:
    """Serve the built web UI at ``/``, with ``index.html`` for page paths."""

    @app.get("/")
    @app.get("/<path:path>")
    @hide
    async def web_ui(path: str = "") -> Response:
        """Built files of the web UI; any other page path gets index.html."""
        if any(f"/{path}".startswith(prefix) for prefix in _NOT_SPA):
            raise ApiError(404, "not_found", "no such resource")
        root = webui_dir
        if path:
            try:
                response = await send_from_directory(root, path)
            except (NotFound, OSError):  # OSError: a name too long for the file system
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
