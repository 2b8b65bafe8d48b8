"""A fake GitHub REST API on loopback: issues and pull requests.

``GET /repos/{owner}/{repo}/issues/{n}``, ``POST /repos/{owner}/{repo}/pulls``
(422 when the head already has an open one, like GitHub) and
``GET /repos/{owner}/{repo}/pulls?head=owner:branch&state=all``, newest first.
Issues are added with :meth:`FakeGitHub.add_issue`, pull requests recorded in
:attr:`FakeGitHub.pulls` (with what was asked: title, head, base, body);
:meth:`FakeGitHub.set_pull_state` merges or closes one. ``hang`` makes every
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
    method: str = "GET"
    json: Any = None


@attrs.define
class FakeGitHub:
    """State of the fake; ``url`` is its base URL once started."""

    url: str = ""
    issues: dict[tuple[str, str, int], dict[str, Any]] = attrs.field(factory=dict)
    #: (owner, repo) -> the pull requests opened there, oldest first.
    pulls: dict[tuple[str, str], list[dict[str, Any]]] = attrs.field(factory=dict)
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

    def set_pull_state(self, owner: str, repo: str, number: int, state: str) -> None:
        """Make a pull request ``open``, ``closed`` or ``merged``."""
        for pull in self.pulls.get((owner, repo), []):
            if pull["number"] == number:
                pull["state"] = "closed" if state == "merged" else state
                pull["merged_at"] = "2026-01-01T00:00:00Z" if state == "merged" else None

    def _failure(self) -> Response | None:
        if self.fail_with is None:
            return None
        response = jsonify({"message": "fake failure"})
        response.status_code = self.fail_with
        return response

    def app(self) -> QuartTrio:
        """The ASGI app that serves this state."""
        app = QuartTrio("fake_github")

        @app.post("/repos/<owner>/<repo>/pulls")
        async def open_pull(owner: str, repo: str) -> Response:
            body = await request.get_json(force=True, silent=True)
            self.requests.append(
                Recorded(
                    request.path,
                    {k.lower(): v for k, v in request.headers.items()},
                    "POST",
                    body,
                )
            )
            if (failed := self._failure()) is not None:
                return failed
            pulls = self.pulls.setdefault((owner, repo), [])
            if not isinstance(body, dict) or not all(
                isinstance(body.get(k), str) for k in ("title", "head", "base")
            ):
                response = jsonify({"message": "Validation Failed"})
                response.status_code = 422
                return response
            if any(p["head"]["ref"] == body["head"] and p["state"] == "open" for p in pulls):
                response = jsonify(
                    {
                        "message": "Validation Failed",
                        "errors": [{"message": "A pull request already exists"}],
                    }
                )
                response.status_code = 422
                return response
            number = 100 + sum(len(v) for v in self.pulls.values())
            pull = {
                "number": number,
                "title": body["title"],
                "body": body.get("body"),
                "head": {"ref": body["head"]},
                "base": {"ref": body["base"]},
                "state": "open",
                "merged_at": None,
                "html_url": f"https://github.com/{owner}/{repo}/pull/{number}",
            }
            pulls.append(pull)
            response = jsonify(pull)
            response.status_code = 201
            return response

        @app.get("/repos/<owner>/<repo>/pulls")
        async def list_pulls(owner: str, repo: str) -> Response:
            self.requests.append(
                Recorded(request.path, {k.lower(): v for k, v in request.headers.items()})
            )
            if (failed := self._failure()) is not None:
                return failed
            head = request.args.get("head", "")
            ref = head.partition(":")[2] if head.startswith(f"{owner}:") else None
            found = [
                p
                for p in self.pulls.get((owner, repo), [])
                if ref is None or p["head"]["ref"] == ref
            ]
            return jsonify(list(reversed(found)))

        @app.get("/repos/<owner>/<repo>/issues/<int:number>")
        async def issue(owner: str, repo: str, number: int) -> Response:
            self.requests.append(
                Recorded(request.path, {k.lower(): v for k, v in request.headers.items()})
            )
            if self.hang:
                await trio.sleep_forever()
            if (failed := self._failure()) is not None:
                return failed
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
