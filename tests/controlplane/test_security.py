"""Security properties of the control plane against real servers on loopback:
login throttling under a parallel burst and across control planes, and the
client address taken from a trusted proxy only."""

from __future__ import annotations

import datetime as dt
import json
import os
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
from hypothesis import given
from hypothesis import strategies as st
from trio_websocket import ConnectionRejected

from controlplane import loginlimits, passwords, store
from controlplane.clientaddr import client_address, parse_networks
from controlplane.db import Database
from controlplane.schema import sessions
from controlplane.server import Running, serve
from controlplane.settings import Settings
from controlplane.statedir import StateDirError, secure_dir
from controlplane.throttle import KeyState, Policy, delay_after, keys_for, reserve, wait_for
from tests.controlplane.conftest import PASSWORD
from tests.controlplane.test_integration import in_process, login, stack
from tests.support.fake_github import FakeGitHub
from tests.support.relayd import Relayd, close_code, recv_json, send_json
from tests.support.waiting import wait_until
from wire.childenv import claude_env, vmagent_env
from wire.revocations import read_file

POLICY = Policy(pair_free=5, account_free=20, window=300, max_delay=60)


@pytest.fixture
def state() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="cpsec-", dir="/tmp") as path:
        yield Path(path)


def base_settings(state: Path, **changes: Any) -> Settings:
    settings = Settings(state_dir=state, listen="127.0.0.1:0", provisioner="none")
    return attrs.evolve(settings, **changes)


def add_user(settings: Settings, name: str = "alice") -> None:
    settings.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    db = Database.open(settings.database_url)
    hashed = passwords.hash_password(PASSWORD)
    db.run_sync(lambda c: store.add_user(c, name, hashed))
    db.close()


@asynccontextmanager
async def served(settings: Settings) -> AsyncIterator[Running]:
    async with trio.open_nursery() as nursery:
        running: Running = await nursery.start(partial(serve, settings))
        yield running
        running.stop()


def frozen_clock() -> Callable[[], float]:
    """A clock that stays at this moment."""
    now = time.time()
    return lambda: now


async def burst(urls: list[str], count: int, username: str = "alice") -> list[int]:
    """``count`` wrong logins at once, spread over ``urls``; their status codes."""
    codes: list[int] = []
    async with httpx.AsyncClient(timeout=20) as http:

        async def one(url: str) -> None:
            response = await http.post(
                f"{url}/api/auth/login", json={"username": username, "password": "wrong"}
            )
            codes.append(response.status_code)

        async with trio.open_nursery() as nursery:
            for i in range(count):
                nursery.start_soon(one, urls[i % len(urls)])
    return codes


# --- the rules ---------------------------------------------------------------


def test_delays_start_after_the_free_attempts_and_double_up_to_the_cap() -> None:
    assert [delay_after(n, 5, 60) for n in range(1, 5)] == [0, 0, 0, 0]
    assert [delay_after(n, 5, 60) for n in range(5, 12)] == [1, 2, 4, 8, 16, 32, 60]
    assert delay_after(10**9, 5, 60) == 60


def test_a_key_is_forgotten_after_a_quiet_window() -> None:
    state = KeyState(attempts=30, last_at=100, next_at=160)
    assert wait_for(state, 110, 300) == 50
    assert wait_for(state, 400, 300) == 0
    assert reserve(state, 400, 5, POLICY).attempts == 1


@given(st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=60))
def test_no_more_than_the_free_attempts_pass_within_a_second(gaps: list[float]) -> None:
    """Whatever the timing, attempts that pass (wait 0) are spaced by the delays."""
    now, state, passed = 0.0, None, 0
    for gap in gaps:
        now += gap
        if wait_for(state, now, POLICY.window) == 0:
            state = reserve(state, now, POLICY.pair_free, POLICY)
            passed += 1
    if now < 1:  # everything in the first second: only the free ones
        assert passed <= POLICY.pair_free


def test_xff_counts_only_from_a_trusted_proxy() -> None:
    trusted = parse_networks("127.0.0.1, 10.0.0.0/8")
    assert client_address("203.0.113.9", ["1.2.3.4"], trusted) == "203.0.113.9"
    assert client_address("127.0.0.1", ["1.2.3.4"], trusted) == "1.2.3.4"
    # A client's own forged entry stays to the left of what the proxy saw.
    assert client_address("127.0.0.1", ["6.6.6.6, 1.2.3.4"], trusted) == "1.2.3.4"
    assert client_address("127.0.0.1", ["1.2.3.4, 10.1.1.1"], trusted) == "1.2.3.4"
    assert client_address("127.0.0.1", [], trusted) == "127.0.0.1"
    assert client_address("::ffff:127.0.0.1", ["1.2.3.4"], trusted) == "1.2.3.4"
    with pytest.raises(ValueError):
        parse_networks("not-an-address")


def test_the_database_counts_reservations_and_gives_a_good_login_back(tmp_path: Path) -> None:
    db = Database.open(f"sqlite:///{tmp_path / 't.db'}")
    pair, account = keys_for("Alice", "192.0.2.1")
    waits = [
        db.run_sync(lambda c: loginlimits.reserve_attempt(c, pair, account, 1000.0, POLICY))
        for _ in range(7)
    ]
    assert waits[:5] == [0] * 5
    assert all(w > 0 for w in waits[5:])
    assert db.run_sync(lambda c: loginlimits.attempts_of(c, account)) == 5
    db.run_sync(lambda c: loginlimits.login_succeeded(c, pair, account, POLICY))
    assert db.run_sync(lambda c: loginlimits.attempts_of(c, pair)) == 0
    assert db.run_sync(lambda c: loginlimits.attempts_of(c, account)) == 4
    db.close()


# --- real servers --------------------------------------------------------------


async def test_a_parallel_burst_checks_at_most_the_limit(state: Path) -> None:
    settings = base_settings(state)
    add_user(settings)
    with trio.fail_after(60):
        async with served(settings) as running:
            # One instant for the whole burst: the first delay (1 s) cannot run out
            # on a slow machine, so every attempt after the free ones must wait.
            running.services.clock = frozen_clock()
            codes = await burst([running.url], 40)
            async with httpx.AsyncClient(base_url=running.url, timeout=10) as http:
                # Even the right password waits now: the pair's delay is running.
                good = await http.post(
                    "/api/auth/login", json={"username": "alice", "password": PASSWORD}
                )
    assert codes.count(401) == settings.login_max_failures
    assert codes.count(429) == 40 - settings.login_max_failures
    assert good.status_code == 429
    assert int(good.headers["Retry-After"]) >= 1


async def test_two_control_planes_on_one_database_share_the_counts(state: Path) -> None:
    settings = base_settings(state)
    add_user(settings)
    with trio.fail_after(60):
        async with served(settings) as one, served(settings) as two:
            one.services.clock = two.services.clock = frozen_clock()
            codes = await burst([one.url, two.url], 40)
    assert codes.count(401) == settings.login_max_failures
    assert codes.count(429) == 40 - settings.login_max_failures


async def test_a_forged_xff_from_an_untrusted_peer_is_ignored(state: Path) -> None:
    settings = base_settings(state, login_max_failures=2)
    with trio.fail_after(30):
        async with served(settings) as running, httpx.AsyncClient(timeout=10) as http:
            codes = [
                (
                    await http.post(
                        f"{running.url}/api/auth/login",
                        json={"username": "bob", "password": "wrong"},
                        headers={"X-Forwarded-For": f"198.51.100.{i}"},
                    )
                ).status_code
                for i in range(3)
            ]
    # Three "addresses", but one peer (127.0.0.1): the pair's free attempts run out.
    assert codes == [401, 401, 429]


# --- file modes ----------------------------------------------------------------

#: Files of the state dir that are public on purpose (relayd reads them).
PUBLIC_FILES = {"jwks.json", "revoked.json"}


def open_to_others(root: Path) -> list[str]:
    """Files and directories under ``root`` that others may read or enter."""
    found = []
    for path in [root, *root.rglob("*")]:
        if path.is_symlink() or path.is_socket() or path.name in PUBLIC_FILES:
            continue
        # A directory may keep the group's search bit (relayd opens jwks.json).
        if path.stat().st_mode & (0o067 if path.is_dir() else 0o077):
            found.append(f"{path.relative_to(root)} {oct(path.stat().st_mode & 0o777)}")
    return found


def mode_of(path: Path) -> int:
    return path.stat().st_mode & 0o777


def leave_open(state: Path) -> None:
    """What an older version left: a 0755 directory, a database readable by everyone."""
    state.chmod(0o755)
    old = state / "controlplane.db"
    old.touch(mode=0o644)
    old.chmod(0o644)


async def test_an_open_state_dir_is_tightened_and_every_file_is_private(state: Path) -> None:
    leave_open(state)
    assert mode_of(state / "controlplane.db") == 0o644
    settings = base_settings(state, login_max_failures=50)
    add_user(settings)
    with trio.fail_after(30):
        async with served(settings) as running, httpx.AsyncClient(timeout=10) as http:
            for password in ("wrong", PASSWORD):  # writes: WAL and SHM exist now
                await http.post(
                    f"{running.url}/api/auth/login",
                    json={"username": "alice", "password": password},
                )
            assert (state / "controlplane.db-wal").exists()
            assert open_to_others(state) == []
    assert mode_of(state) == 0o710  # 0755 without what others and the group may not do
    assert mode_of(state / "jwks.json") & 0o004  # public on purpose


def test_a_fresh_database_is_created_private(tmp_path: Path) -> None:
    db = Database.open(f"sqlite:///{tmp_path / 'fresh.db'}")
    db.run_sync(lambda c: store.add_user(c, "carol", "hash"))
    files = [p for p in tmp_path.iterdir() if p.name.startswith("fresh.db")]
    assert len(files) >= 2  # the database and its WAL
    assert all(p.stat().st_mode & 0o077 == 0 for p in files), [oct(p.stat().st_mode) for p in files]
    db.close()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give the directory away")
def test_a_state_dir_of_another_user_is_refused(state: Path) -> None:
    os.chown(state, 65534, 65534)
    with pytest.raises(StateDirError, match="belongs to uid 65534"):
        secure_dir(state)


# --- sessions end: at the API and at relayd -------------------------------------


@pytest.fixture
def short_tmp() -> Iterator[Path]:
    # Unix socket paths are limited to 108 bytes; pytest's tmp_path can be longer.
    with tempfile.TemporaryDirectory(prefix="cps-", dir="/tmp") as path:
        yield Path(path)


async def refused_by_relayd(relay: Relayd, user_id: str, token: str) -> str:
    """The handshake refusal's code (fails the test when relayd accepts)."""
    with pytest.raises(ConnectionRejected) as refused:
        async with relay.connect_client(user_id, token=token):
            pass
    assert refused.value.status_code == 401
    return str(json.loads(refused.value.body or b"{}")["error"]["code"])


async def me(http: httpx.AsyncClient, token: str) -> int:
    return (await http.get("/api/me", headers={"Authorization": f"Bearer {token}"})).status_code


async def test_a_password_change_ends_old_access_tokens_at_the_api_and_relayd(
    short_tmp: Path, github: FakeGitHub
) -> None:
    with trio.fail_after(60):
        async with stack(short_tmp, github, provisioner="none", reconcile_interval=0.1) as (
            running,
            relay,
            http,
        ):
            token, user_id = await login(http)
            assert await me(http, token) == 200
            async with relay.connect_client(user_id, token=token) as conn:
                # As `controlplane user add --update` does it, from another process:
                # the reconciler finds it in the database.
                hashed = passwords.hash_password("a new passphrase")
                db = Database.open(running.services.settings.database_url)
                assert db.run_sync(lambda c: store.set_password(c, "alice", hashed))
                db.close()
                assert await close_code(conn) == 4403
            assert await me(http, token) == 401
            assert await refused_by_relayd(relay, user_id, token) == "token_revoked"
            # A login with the new password works at both.
            fresh, _ = await login(http, "alice", "a new passphrase")
            assert await me(http, fresh) == 200
            async with relay.connect_client(user_id, token=fresh) as conn:
                await send_json(conn, {"type": "subscribe", "workspaceId": "nope"})
                assert (await recv_json(conn))["code"] == "not_found"
    # relayd's restarts read the list the control plane wrote.
    written = read_file(short_tmp / "cp" / "revoked.json")
    assert user_id in written.users


async def test_a_logout_ends_that_sessions_access_tokens_only(
    short_tmp: Path, github: FakeGitHub
) -> None:
    with trio.fail_after(60):
        async with (
            stack(short_tmp, github, provisioner="none") as (running, relay, http),
            httpx.AsyncClient(base_url=running.url, timeout=5) as other_device,
        ):
            token, user_id = await login(http)
            kept, _ = await login(other_device)
            async with (
                relay.connect_client(user_id, token=token) as conn,
                relay.connect_client(user_id, token=kept) as other,
            ):
                assert (await http.post("/api/auth/logout")).status_code == 204
                assert await close_code(conn) == 4403
                await send_json(other, {"type": "subscribe", "workspaceId": "nope"})
                assert (await recv_json(other))["code"] == "not_found"
            assert await me(http, token) == 401
            assert await refused_by_relayd(relay, user_id, token) == "token_revoked"
            assert await me(other_device, kept) == 200


# --- cookie endpoints and the absolute session lifetime ------------------------


async def test_cookie_endpoints_refuse_a_foreign_origin(state: Path) -> None:
    settings = base_settings(state)
    add_user(settings)
    with trio.fail_after(30):
        async with served(settings) as running, httpx.AsyncClient(base_url=running.url) as http:
            own = {"Origin": running.url}
            foreign = {"Origin": "https://evil.example"}
            body = {"username": "alice", "password": PASSWORD}
            refused = await http.post("/api/auth/login", json=body, headers=foreign)
            assert refused.status_code == 403
            assert refused.json()["error"]["code"] == "forbidden_origin"
            assert (await http.post("/api/auth/login", json=body, headers=own)).status_code == 200
            for path in ("/api/auth/refresh", "/api/auth/logout"):
                answer = await http.post(path, headers=foreign)
                assert answer.status_code == 403, path
            # The refused logout ended nothing: the cookie still refreshes.
            assert (await http.post("/api/auth/refresh", headers=own)).status_code == 200
            assert (await http.post("/api/auth/refresh")).status_code == 200  # no Origin: curl


async def test_a_session_ends_at_its_absolute_lifetime(state: Path) -> None:
    settings = base_settings(state, session_max_age=3600.0)
    add_user(settings)
    with trio.fail_after(30):
        async with served(settings) as running, httpx.AsyncClient(base_url=running.url) as http:
            body = {"username": "alice", "password": PASSWORD}
            first = await http.post("/api/auth/login", json=body)
            max_age = int(first.headers["set-cookie"].split("Max-Age=")[1].split(";")[0])
            assert 3590 <= max_age <= 3600  # the session's end, not the 30 days of a token
            token = first.json()["accessToken"]
            assert (await http.post("/api/auth/refresh")).status_code == 200
            # The session reaches its end (as if 3600 s had passed).
            db = running.services.db
            past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
            await db.run(lambda c: c.execute(sessions.update().values(expires_at=past)))
            assert (await http.post("/api/auth/refresh")).status_code == 401
            assert await me(http, token) == 401


# --- least privilege for local vmagents (make dev) -----------------------------

# The argv first: the test waits for the env file, renamed into place last.
RECORDER = """#!/bin/sh
echo "$@" > "$RECORD.argv"
env > "$RECORD.env.tmp" && mv "$RECORD.env.tmp" "$RECORD.env"
exec sleep 1000
"""


async def test_a_local_vmagent_gets_an_allow_listed_environment_outside_the_state_dir(
    state: Path, tmp_path: Path
) -> None:
    record = tmp_path / "vmagent"
    fake = tmp_path / "fake-vmagent"
    fake.write_text(RECORDER.replace("$RECORD", str(record)))
    fake.chmod(0o755)
    settings = base_settings(
        state / "cp", provisioner="local", vmagent_command=str(fake), relay_backoff_max=60.0
    )
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        "LC_ALL": "C.UTF-8",
        "CONTROLPLANE_GITHUB_TOKEN": "ghp-secret",
        "CONTROLPLANE_DATABASE": "postgresql://cp:db-password@db/ffcloud",
        "FFCLOUD_DEV_PASSWORD": "dev-secret",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
        "VMAGENT_DEMO_DELAY": "0",
        "ANTHROPIC_API_KEY": "sk-for-claude",
    }
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            running: Running = await nursery.start(partial(serve, settings, env=env))
            # A child process writes it: no event to wait on.
            await wait_until(record.with_suffix(".env").exists)
            running.stop()
            nursery.cancel_scope.cancel()
    seen = dict(line.split("=", 1) for line in record.with_suffix(".env").read_text().splitlines())
    assert not {k for k in seen if k.startswith(("CONTROLPLANE_", "FFCLOUD_"))}
    assert "AWS_SECRET_ACCESS_KEY" not in seen
    assert "ghp-secret" not in record.with_suffix(".env").read_text()
    assert seen["VMAGENT_DEMO_DELAY"] == "0"
    assert seen["ANTHROPIC_API_KEY"] == "sk-for-claude"  # the claude engine needs it
    assert seen["LC_ALL"] == "C.UTF-8"
    argv = record.with_suffix(".argv").read_text().split()
    paths = [Path(argv[argv.index(flag) + 1]) for flag in ("--token-file", "--state-dir")]
    cp_state = settings.state_dir.resolve()
    for path in paths:
        assert cp_state not in path.resolve().parents, path
        assert path.resolve().parent.parent == settings.local_vms_dir.resolve()
    assert mode_of(settings.local_vms_dir) == 0o700


def test_the_claude_cli_gets_only_its_own_and_the_base_variables() -> None:
    env = {
        "PATH": "/usr/bin",
        "HOME": "/home/vm",
        "ANTHROPIC_API_KEY": "sk",
        "CLAUDE_CONFIG_DIR": "/c",
        "VMAGENT_TOKEN_FILE": "/run/token",
        "CONTROLPLANE_GITHUB_TOKEN": "ghp",
        "CLAUDECODE": "1",
        "GITHUB_TOKEN": "ghp2",
        "IS_SANDBOX": "1",
    }
    assert claude_env(env) == {
        "PATH": "/usr/bin",
        "HOME": "/home/vm",
        "ANTHROPIC_API_KEY": "sk",
        "CLAUDE_CONFIG_DIR": "/c",
        "IS_SANDBOX": "1",
    }
    assert "VMAGENT_TOKEN_FILE" in vmagent_env(env)
    assert "CONTROLPLANE_GITHUB_TOKEN" not in vmagent_env(env)


async def test_a_removed_users_tokens_end_at_the_api_and_relayd(
    short_tmp: Path, github: FakeGitHub, capsys: pytest.CaptureFixture[str]
) -> None:
    with trio.fail_after(60):
        async with stack(short_tmp, github, provisioner="none", reconcile_interval=0.1) as (
            running,
            relay,
            http,
        ):
            token, user_id = await login(http)
            async with relay.connect_client(user_id, token=token) as conn:
                state_dir = running.services.settings.state_dir
                assert await in_process(state_dir, "user", "remove", "alice") == 0
                assert "alice removed" in capsys.readouterr().out
                assert await close_code(conn) == 4403
            assert await me(http, token) == 401
            assert await refused_by_relayd(relay, user_id, token) == "token_revoked"
            login_again = await http.post(
                "/api/auth/login", json={"username": "alice", "password": "integration password"}
            )
            assert login_again.status_code == 401
            assert await in_process(state_dir, "user", "remove", "alice") == (
                "controlplane: no user 'alice'"
            )


async def test_with_relayd_away_the_revocation_file_still_follows_a_logout(state: Path) -> None:
    settings = base_settings(state, reconcile_interval=0.1)
    add_user(settings)
    listed = state / "revoked.json"
    with trio.fail_after(30):
        async with served(settings) as running, httpx.AsyncClient(base_url=running.url) as http:
            body = {"username": "alice", "password": PASSWORD}
            token = (await http.post("/api/auth/login", json=body)).json()["accessToken"]
            sid = running.services.keyring.verifier(settings.issuer).verify(token).sid
            assert sid is not None
            assert (await http.post("/api/auth/logout")).status_code == 204
            # The reconciler writes it in a worker thread: no event to wait on here.
            await wait_until(lambda: listed.exists() and sid in read_file(listed).sessions)
    assert listed.stat().st_mode & 0o777 == 0o644  # relayd, another user, reads it


addresses = st.ip_addresses().map(str)


@given(addresses, st.lists(addresses, max_size=4))
def test_an_untrusted_peer_is_counted_as_itself_whatever_it_claims(
    peer: str, claimed: list[str]
) -> None:
    trusted = parse_networks("127.0.0.1,::1")
    if peer in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
        # A trusted proxy: the right-most address that is not a proxy, or itself.
        found = client_address(peer, [", ".join(claimed)], trusted)
        assert found in [*claimed, peer]
    else:
        assert client_address(peer, [", ".join(claimed)], trusted) == peer
