#!/usr/bin/env python3
"""A small FF Cloud client: log in, open the relay, subscribe, print the stream.

    FFCLOUD_PASSWORD=secret python examples/client.py --url https://ffcloud.example.com --user alice
    python examples/client.py --user alice --workspace WS_ID --send "What does this repo do?"

It logs in over HTTP, asks the control plane where the relay is, opens one
WebSocket with the access token in the ``Authorization`` header, subscribes
to a workspace (the newest one unless ``--workspace`` says which) and prints
what arrives: the snapshot of the conversation, then live output. With
``--send`` it also sends a message and exits when Claude's turn ends.
The access token lives minutes; the client renews it over HTTP and hands the
new one to the open connection (``auth``) before it expires.

Needs Python 3.11, trio, trio-websocket and httpx. It is written against the
public protocol (docs/protocol.md) and imports nothing from this project, so
it can be copied out as the start of another client; docs/client-guide.md
walks through it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import json
import os
import ssl
import sys
import time
import uuid
from typing import Any

import attrs
import httpx
import trio
from trio_websocket import (
    ConnectionClosed,
    ConnectionRejected,
    HandshakeError,
    WebSocketConnection,
    open_websocket_url,
)

SUBPROTOCOL = "ffcloud.v1"
CLIENT_PATH = "/v1/client"
#: Renew the access token this many seconds before it expires.
RENEW_MARGIN = 60.0
#: Largest frame accepted from the relay (snapshots of long conversations are big).
MAX_FRAME = 64 * 1024 * 1024


class ClientError(Exception):
    """The control plane refused a request; the message says why."""


@attrs.define
class Session:
    """A logged-in user: the HTTP client (which holds the refresh cookie) and the token."""

    http: httpx.AsyncClient
    token: str
    expires_at: float  # seconds since the epoch


def _api_error(response: httpx.Response) -> ClientError:
    try:
        error = response.json()["error"]
        return ClientError(f"{response.status_code} {error['code']}: {error['message']}")
    except (ValueError, KeyError, TypeError):
        return ClientError(f"HTTP {response.status_code}")


def _token_from(response: httpx.Response) -> tuple[str, float]:
    if response.status_code != 200:
        raise _api_error(response)
    body = response.json()
    expires = dt.datetime.fromisoformat(body["expiresAt"].replace("Z", "+00:00"))
    return body["accessToken"], expires.timestamp()


async def login(http: httpx.AsyncClient, username: str, password: str) -> Session:
    """``POST /api/auth/login``; the refresh cookie stays in ``http``'s cookie jar."""
    response = await http.post("/api/auth/login", json={"username": username, "password": password})
    token, expires_at = _token_from(response)
    return Session(http, token, expires_at)


async def get_json(session: Session, path: str) -> Any:
    """``GET`` an API path with the access token."""
    response = await session.http.get(path, headers={"Authorization": f"Bearer {session.token}"})
    if response.status_code != 200:
        raise _api_error(response)
    return response.json()


async def keep_token_fresh(session: Session, ws: WebSocketConnection) -> None:
    """Renew the access token before it expires and give the new one to the relay.

    Without this the relay closes the connection (4401) when the token expires.
    """
    while True:
        await trio.sleep(max(session.expires_at - RENEW_MARGIN - time.time(), 1.0))
        response = await session.http.post("/api/auth/refresh")
        session.token, session.expires_at = _token_from(response)
        await ws.send_message(json.dumps({"type": "auth", "token": session.token}))


def _delta_text(event: dict[str, Any]) -> str | None:
    """The printable part of a ``stream_event`` (text as it streams, tool names)."""
    kind = event.get("type")
    if kind == "content_block_delta" and event.get("delta", {}).get("type") == "text_delta":
        return str(event["delta"].get("text", ""))
    if kind == "content_block_start" and event.get("content_block", {}).get("type") == "tool_use":
        return f"\n[tool {event['content_block'].get('name', '?')}]\n"
    if kind == "message_stop":
        return "\n"
    return None


def _claude_text(data: dict[str, Any], *, live: bool) -> str | None:
    """Render one Claude Code stream-json line (``claude_message.data``)."""
    kind = data.get("type")
    if kind == "stream_event":
        return _delta_text(data.get("event", {}))
    if kind == "assistant" and not live:
        # Live, its text has already streamed as deltas; in a snapshot the
        # deltas of a finished message are left out, so print it whole.
        blocks = data.get("message", {}).get("content", [])
        parts = [b["text"] for b in blocks if b.get("type") == "text" and "text" in b]
        parts += [f"[tool {b.get('name', '?')}]" for b in blocks if b.get("type") == "tool_use"]
        return "\n".join(parts) + "\n" if parts else None
    if kind == "result":
        cost = data.get("total_cost_usd")
        money = f", ${cost:.4f}" if isinstance(cost, int | float) else ""
        return f"[turn done: {data.get('duration_ms', '?')} ms{money}]\n"
    return None


def render(message: dict[str, Any], *, live: bool = True) -> str | None:
    """What to print for one relay message, or None to print nothing."""
    kind = message.get("type")
    if kind == "claude_message":
        return _claude_text(message.get("data", {}), live=live)
    if kind == "subscribed":
        return f"# subscribed to {message['workspaceId']} ({message.get('mode')})\n"
    if kind == "messages_snapshot":
        lines = [
            f"# snapshot up to seq {message.get('seq')}: {len(message.get('messages', []))} "
            f"messages, status {message.get('status')}\n"
        ]
        for item in [*message.get("messages", []), *message.get("pending", [])]:
            text = render(item, live=False)
            if text:
                lines.append(text)
        return "".join(lines)
    if kind == "status":
        detail = f" ({message['detail']})" if message.get("detail") else ""
        return f"[status] {message.get('status')}{detail}\n"
    if kind == "user_message":
        return f"> {message.get('text', '')}\n"
    if kind == "user_question":
        questions = "; ".join(q.get("question", "?") for q in message.get("questions", []))
        return f"[question {message.get('requestId')}] {questions}\n"
    if kind == "permission_request":
        tool_input = json.dumps(message.get("toolInput", {}))[:200]
        return f"[permission {message.get('requestId')}] {message.get('toolName')} {tool_input}\n"
    if kind == "request_resolved":
        return f"[resolved {message.get('requestId')}] {message.get('resolution')}\n"
    if kind == "error":
        return f"[error] {message.get('code')}: {message.get('message')}\n"
    return None


async def stream(
    session: Session, relay_url: str, workspace_id: str, send: str | None, tls: ssl.SSLContext
) -> None:
    """Subscribe and print; with ``send``, send it and return when the turn ends."""
    url = relay_url.rstrip("/") + CLIENT_PATH
    headers = [(b"authorization", f"Bearer {session.token}".encode())]
    context = tls if url.startswith("wss:") else None
    async with (
        open_websocket_url(
            url,
            context,
            subprotocols=[SUBPROTOCOL],
            extra_headers=headers,
            max_message_size=MAX_FRAME,
        ) as ws,
        trio.open_nursery() as nursery,
    ):
        nursery.start_soon(keep_token_fresh, session, ws)
        await ws.send_message(json.dumps({"type": "subscribe", "workspaceId": workspace_id}))
        client_message_id = str(uuid.uuid4())
        sent = accepted = False
        while True:
            message = json.loads(await ws.get_message())
            text = render(message)
            if text:
                sys.stdout.write(text)
                sys.stdout.flush()
            kind = message.get("type")
            if send is not None and not sent and kind in ("messages_snapshot", "subscribed"):
                # After "subscribed" comes a snapshot or a replay; sending now is
                # fine either way: the VM numbers our message after both.
                await ws.send_message(
                    json.dumps(
                        {
                            "type": "user_message",
                            "workspaceId": workspace_id,
                            "clientMessageId": client_message_id,
                            "text": send,
                        }
                    )
                )
                sent = True
            if kind == "user_message" and message.get("clientMessageId") == client_message_id:
                accepted = True
            if kind == "error" and sent and message.get("ref") == client_message_id:
                raise ClientError(f"the message was refused: {message.get('code')}")
            if accepted and kind == "claude_message" and message["data"].get("type") == "result":
                nursery.cancel_scope.cancel()
                return


async def run(args: argparse.Namespace, password: str) -> None:
    """Log in, pick the workspace, stream it."""
    tls = ssl.create_default_context(cafile=args.ca_file)
    async with httpx.AsyncClient(base_url=args.url, verify=tls, timeout=10.0) as http:
        session = await login(http, args.user, password)
        relay_url = (await get_json(session, "/api/config"))["relayUrl"]
        workspace_id = args.workspace
        if workspace_id is None:
            workspaces = await get_json(session, "/api/workspaces")
            if not workspaces:
                raise ClientError("no workspace yet: create one in the web UI")
            workspace_id = workspaces[0]["id"]  # newest first
        await stream(session, relay_url, workspace_id, args.send, tls)


def _leaf(exc: BaseException) -> BaseException:
    """The single error inside nested exception groups (or ``exc`` itself)."""
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def main() -> None:
    """Command line entry point."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--url", default="http://127.0.0.1:8080", help="the control plane")
    parser.add_argument("--user", required=True)
    parser.add_argument("--workspace", help="workspace id (default: the newest)")
    parser.add_argument("--send", help="send this message, print the reply, then exit")
    parser.add_argument("--ca-file", help="CA certificates to trust (default: the system's)")
    args = parser.parse_args()
    password = os.environ.get("FFCLOUD_PASSWORD") or getpass.getpass(f"{args.user}'s password: ")
    try:
        trio.run(run, args, password)
    except BaseException as exc:  # trio wraps errors of concurrent tasks in groups
        problem = _leaf(exc)
        if isinstance(problem, KeyboardInterrupt):
            return
        if isinstance(problem, ClientError):
            sys.exit(f"client.py: {problem}")
        if isinstance(problem, ConnectionClosed):
            sys.exit(f"client.py: the relay closed the connection: {problem.reason}")
        if isinstance(problem, ConnectionRejected):
            body = (problem.body or b"").decode(errors="replace")
            sys.exit(f"client.py: the relay refused the connection: {problem.status_code} {body}")
        if isinstance(problem, HandshakeError):
            cause = problem.__cause__ or problem
            sys.exit(f"client.py: cannot open the relay's WebSocket: {cause!r}")
        if isinstance(problem, httpx.HTTPError | OSError):
            sys.exit(f"client.py: {type(problem).__name__}: {problem}")
        raise


if __name__ == "__main__":
    main()
