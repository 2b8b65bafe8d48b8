"""``serve`` over a real socket without relayd: health says so, and a trusted
proxy's X-Forwarded-For decides which address login throttling counts."""

from __future__ import annotations

import json
import os
import signal
import tempfile
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import httpx
import pytest
import trio

from controlplane.keys import KeyRing
from controlplane.server import Running, serve
from controlplane.settings import Settings
from tests.support.waiting import wait_until


@pytest.fixture
def state() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cps-", dir="/tmp") as path:
        yield Path(path)


async def test_serve_without_relayd_behind_a_proxy(state: Path) -> None:
    settings = Settings(
        state_dir=state,
        listen="127.0.0.1:0",
        provisioner="none",
        trusted_proxies="127.0.0.1",
        login_max_failures=2,
    )
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(partial(serve, settings))
            # The public keys were written before the port was bound.
            assert json.loads((state / "jwks.json").read_text())["keys"]
            async with httpx.AsyncClient(base_url=running.url, timeout=5) as http:
                health = await http.get("/healthz")
                assert health.status_code == 503
                assert health.json()["database"] == "ok"
                assert "relayd.sock" in health.json()["relay"]

                async def attempt(user: str, client_ip: str) -> int:
                    response = await http.post(
                        "/api/auth/login",
                        json={"username": user, "password": "wrong"},
                        headers={"X-Forwarded-For": client_ip},
                    )
                    return response.status_code

                assert await attempt("u1", "198.51.100.1") == 401
                assert await attempt("u1", "198.51.100.1") == 401
                assert await attempt("u1", "198.51.100.1") == 429  # that pair must wait
                assert await attempt("u1", "198.51.100.2") == 401  # another address need not
                assert await attempt("u2", "198.51.100.1") == 401  # nor another account
            running.stop()


async def test_sighup_reloads_the_keys_and_sigterm_stops_gracefully(state: Path) -> None:
    settings = Settings(state_dir=state, listen="127.0.0.1:0", provisioner="none")
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(partial(serve, settings, handle_signals=True))
            async with httpx.AsyncClient(base_url=running.url, timeout=5) as http:
                before = (await http.get("/.well-known/jwks.json")).json()
                assert len(before["keys"]) == 1
                # `controlplane keys rotate` in another process, then a reload.
                other = KeyRing(state)
                other.load()
                other.rotate(longest_token_ttl=3600)
                os.kill(os.getpid(), signal.SIGHUP)

                async def reloaded() -> bool:  # the reload runs in a worker thread
                    return len((await http.get("/.well-known/jwks.json")).json()["keys"]) == 2

                await wait_until(reloaded)
                assert running.services.keyring.signing_key.kid == other.signing_key.kid
            os.kill(os.getpid(), signal.SIGTERM)
        # serve() returned by itself: the nursery closed without being cancelled here.
