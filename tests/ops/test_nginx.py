"""The sample nginx config of docs/ in front of real backends, over real TLS.

Debian's nginx runs on loopback with ``docs/nginx-ffcloud.conf`` as written
(ports and certificate paths aside). Behind it: a trio-websocket server
where relayd would be and a hypercorn server where the control plane would
be; both record what reached them, so the tests see what the proxy passed on.
"""

from __future__ import annotations

import json
import ssl
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import trustme
from hypercorn.config import Config
from hypercorn.trio import serve
from trio_websocket import (
    ConnectionClosed,
    WebSocketRequest,
    open_websocket,
    serve_websocket,
)

from tests.ops.nginx import Nginx, serve_nginx

ORIGIN = "https://ffcloud.example.com"
#: Stands in for a JWT: the tests look for it where it must and must not be.
TOKEN = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ0ZXN0In0.c2lnbmF0dXJl"
BIG = 1024 * 1024 - 64  # just under a client frame's default limit


@attrs.define
class Backends:
    """What reached the stand-ins for relayd and the control plane."""

    ws: list[dict[str, Any]] = attrs.Factory(list)
    http: list[dict[str, Any]] = attrs.Factory(list)


@attrs.frozen
class Proxied:
    nginx: Nginx
    seen: Backends
    tls: ssl.SSLContext


def _headers(pairs: Any) -> dict[str, str]:
    return {bytes(k).decode().lower(): bytes(v).decode() for k, v in pairs}


def _relay_handler(seen: Backends) -> Any:
    async def handler(request: WebSocketRequest) -> None:
        seen.ws.append(
            {
                "path": request.path,
                "headers": _headers(request.headers),
                "subprotocols": list(request.proposed_subprotocols),
            }
        )
        ws = await request.accept(subprotocol="ffcloud.v1")
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass

    return handler


def _http_app(seen: Backends) -> Any:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                event = await receive()
                await send({"type": event["type"] + ".complete"})
                if event["type"] == "lifespan.shutdown":
                    return
        seen.http.append({"path": scope["path"], "headers": _headers(scope["headers"])})
        body = json.dumps({"path": scope["path"]}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})

    return app


@pytest.fixture
async def proxied(nursery: trio.Nursery, tmp_path: Path) -> Proxied:
    ca = trustme.CA()
    cert = ca.issue_cert("ffcloud.example.com", "127.0.0.1")
    cert_path, key_path = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    for i, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(str(cert_path), append=i > 0)
    cert.private_key_pem.write_to_path(str(key_path))
    tls = ssl.create_default_context()
    ca.configure_trust(tls)

    seen = Backends()
    with trio.fail_after(20):
        relay = await nursery.start(
            partial(
                serve_websocket,
                _relay_handler(seen),
                "127.0.0.1",
                0,
                None,
                handler_nursery=nursery,
                max_message_size=2 * BIG,
            )
        )
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        binds = await nursery.start(partial(serve, _http_app(seen), config))
        http_port = int(binds[0].rsplit(":", 1)[1])
        work = tmp_path / "nginx"
        work.mkdir()
        nginx = await nursery.start(
            partial(
                serve_nginx,
                work,
                relayd_port=relay.port,
                controlplane_port=http_port,
                cert=cert_path,
                key=key_path,
            )
        )
    return Proxied(nginx, seen, tls)


async def test_websocket_upgrade_for_browsers(proxied: Proxied) -> None:
    """A browser's handshake: bearer subprotocol and Origin reach relayd intact."""
    with trio.fail_after(20):
        async with open_websocket(
            "127.0.0.1",
            proxied.nginx.https_port,
            "/v1/client",
            use_ssl=proxied.tls,
            subprotocols=["ffcloud.v1", f"bearer.{TOKEN}"],
            extra_headers=[(b"Origin", ORIGIN.encode())],
            max_message_size=2 * BIG,
        ) as ws:
            assert ws.subprotocol == "ffcloud.v1"
            await ws.send_message('{"type":"subscribe","workspaceId":"w1"}')
            assert await ws.get_message() == '{"type":"subscribe","workspaceId":"w1"}'
            big = "x" * BIG
            await ws.send_message(big)
            assert await ws.get_message() == big
    [request] = proxied.seen.ws
    assert request["path"] == "/v1/client"
    assert request["subprotocols"] == ["ffcloud.v1", f"bearer.{TOKEN}"]
    assert request["headers"]["origin"] == ORIGIN
    assert request["headers"]["x-forwarded-proto"] == "https"
    assert request["headers"]["x-forwarded-for"] == "127.0.0.1"
    assert TOKEN not in proxied.nginx.access_log.read_text()


async def test_websocket_upgrade_for_vms(proxied: Proxied) -> None:
    """A VM's handshake: the Authorization header reaches relayd, not the log."""
    with trio.fail_after(20):
        async with open_websocket(
            "127.0.0.1",
            proxied.nginx.https_port,
            "/v1/vm",
            use_ssl=proxied.tls,
            subprotocols=["ffcloud.v1"],
            extra_headers=[(b"Authorization", f"Bearer {TOKEN}".encode())],
        ) as ws:
            await ws.send_message('{"type":"hello"}')
            assert await ws.get_message() == '{"type":"hello"}'
    [request] = proxied.seen.ws
    assert request["path"] == "/v1/vm"
    assert request["headers"]["authorization"] == f"Bearer {TOKEN}"
    assert "origin" not in request["headers"]
    log = proxied.nginx.access_log.read_text()
    assert "/v1/vm" in log
    assert TOKEN not in log


async def test_http_to_the_control_plane(proxied: Proxied) -> None:
    with trio.fail_after(20):
        async with httpx.AsyncClient(verify=proxied.tls) as client:
            base = f"https://127.0.0.1:{proxied.nginx.https_port}"
            response = await client.get(
                f"{base}/api/workspaces", headers={"Authorization": f"Bearer {TOKEN}"}
            )
            assert response.status_code == 200
            assert response.json() == {"path": "/api/workspaces"}
            assert "max-age" in response.headers["strict-transport-security"]
            # Not for the public: the scraper reads the control plane directly.
            metrics = await client.get(f"{base}/metrics")
            assert metrics.status_code == 404
            too_big = await client.post(f"{base}/api/workspaces", content=b"x" * 100_000)
            assert too_big.status_code == 413
    assert [r["path"] for r in proxied.seen.http] == ["/api/workspaces"]
    headers = proxied.seen.http[0]["headers"]
    assert headers["authorization"] == f"Bearer {TOKEN}"
    assert headers["x-forwarded-proto"] == "https"
    assert headers["host"] == "127.0.0.1"


async def test_plain_http_is_sent_to_https(proxied: Proxied) -> None:
    with trio.fail_after(20):
        async with httpx.AsyncClient() as client:
            response = await client.get(
                f"http://127.0.0.1:{proxied.nginx.http_port}/api/config?x=1",
                headers={"Host": "ffcloud.example.com"},
            )
    assert response.status_code == 301
    assert response.headers["location"] == "https://ffcloud.example.com/api/config?x=1"
    assert proxied.seen.http == []
