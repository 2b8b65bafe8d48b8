"""A fake GitHub REST API on loopback: just ``GET /repos/{owner}/{repo}/issues/{n}``.

Issues are added with :meth:`FakeGitHub.add_issue`; ``hang`` makes every
answer wait (to test timeouts) and ``fail_with`` makes them an HTTP error.
Every request is recorded, with its headers, so tests can check what was sent.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart import Response, jsonify, request
from quart_trio import QuartTrio


@attrs.define
class Recorded:
    """One request the fake received."""

    path: str
    headers: dict[str, str]  # names in lower case


@attrs.define
class FakeGitHub:
    """State of the fake; ``url`` is its base URL once started."""

    url: str = ""
    issues: dict[tuple[str, str, int], dict[str, Any]] = attrs.field(factory=dict)
    requests: list[Recorded] = attrs.field(factory=list)
    hang: bool = False
    fail_with: int | None = None

    def add_issue(self, owner: str, repo: str, number: int, title: str, body: str | None) -> None:
        """Make an issue exist."""
        self.issues[(owner, repo, number)] = {
            "number": number,
            "title": title,
            "body": body,
            "state": "open",
            "html_url": f"https://github.com/{owner}/{repo}/issues/{number}",
        }

    def app(self) -> QuartTrio:
        """The ASGI app that serves this state."""
        app = QuartTrio("fake_github")

        @app.get("/repos/<owner>/<repo>/issues/<int:number>")
        async def issue(owner: str, repo: str, number: int) -> Response:
            self.requests.append(
                Recorded(request.path, {k.lower(): v for k, v in request.headers.items()})
            )
            if self.hang:
                await trio.sleep_forever()
            if self.fail_with is not None:
                response = jsonify({"message": "fake failure"})
                response.status_code = self.fail_with
                return response
            found = self.issues.get((owner, repo, number))
            if found is None:
                response = jsonify({"message": "Not Found"})
                response.status_code = 404
                return response
            return jsonify(found)

        return app


@asynccontextmanager
async def fake_github() -> AsyncIterator[FakeGitHub]:
    """Serve a :class:`FakeGitHub` on a free loopback port for the duration."""
    fake = FakeGitHub()
    config = Config()
    config.bind = ["127.0.0.1:0"]
    config.accesslog = None
    config.errorlog = logging.getLogger("fake_github")
    config.graceful_timeout = 0.1
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(serve, fake.app(), config)
        fake.url = binds[0]
        yield fake
        nursery.cancel_scope.cancel()
