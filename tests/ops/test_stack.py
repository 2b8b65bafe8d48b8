"""The real services behind the sample nginx config, as the operator guide sets them up.

Debian's nginx with ``docs/nginx-ffcloud.conf`` terminates TLS in front of
the real relayd and the real control plane, whose local provisioner runs a
real vmagent (demo engine) that dials relayd through nginx too. Through the
proxy: ``examples/client.py`` logs in, subscribes, sends a message and
prints the streamed answer. Beside it, Prometheus metrics of both services
are scraped with a real HTTP client and compared with the operator guide.
"""

from __future__ import annotations

import os
import re
import ssl
import sys
from functools import partial
from pathlib import Path

import attrs
import httpx
import trio
import trustme
from argon2 import PasswordHasher

from controlplane import store
from controlplane.server import Running, prepare_state, serve
from controlplane.settings import Settings
from tests.ops.nginx import free_port, serve_nginx
from tests.ops.units import ROOT
from tests.support.fake_github import fake_github
from tests.support.relayd import start_relayd

ISSUE = "https://github.com/octo/hello/issues/7"
PASSWORD = "operator guide password"


def _cheap_hash(password: str) -> str:
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(password)


def _documented_metrics() -> dict[str, str]:
    """Metric name -> type, from the table in docs/operations.md."""
    text = (ROOT / "docs" / "operations.md").read_text()
    return dict(re.findall(r"^\| `((?:relayd|controlplane)_\w+)` \| (\w+) \|", text, re.M))


def _exposed_metrics(*bodies: str) -> dict[str, str]:
    """Metric name -> type, from ``# TYPE`` lines of the exposition text."""
    found: dict[str, str] = {}
    for body in bodies:
        for name, kind in re.findall(r"^# TYPE (\w+) (\w+)$", body, re.M):
            # prometheus_client adds a *_created series to every counter.
            if name.startswith(("relayd_", "controlplane_")) and not name.endswith("_created"):
                found[name] = kind
    return found


async def _wait_status(running: Running, http: httpx.AsyncClient, path: str, want: str) -> None:
    """Wait, event by event from relayd, until the API shows ``want``."""
    while True:
        changed = running.services.coordinator.wait_event
        response = await http.get(path)
        if response.json()["status"] == want:
            return
        await changed()


async def test_client_example_and_metrics_through_the_proxy(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    ca_path, cert_path, key_path = (tmp_path / n for n in ("ca.pem", "cert.pem", "key.pem"))
    ca.cert_pem.write_to_path(str(ca_path))
    for i, pem in enumerate(cert.cert_chain_pems):
        pem.write_to_path(str(cert_path), append=i > 0)
    cert.private_key_pem.write_to_path(str(key_path))
    tls = ssl.create_default_context(cafile=str(ca_path))

    cp_port = free_port()
    settings = Settings(
        state_dir=tmp_path / "cp",
        listen=f"127.0.0.1:{cp_port}",
        provisioner="local",
        relay_backoff_max=0.5,
        github_timeout=2.0,
    )
    _keys, db = await trio.to_thread.run_sync(prepare_state, settings)
    db.run_sync(lambda c: store.add_user(c, "alice", _cheap_hash(PASSWORD)))
    db.close()
    work = tmp_path / "nginx"
    work.mkdir()

    with trio.fail_after(90):
        async with (
            fake_github() as github,
            start_relayd(tmp_path, args=["--jwks", str(settings.jwks_path)]) as relay,
            trio.open_nursery() as nursery,
        ):
            github.add_issue("octo", "hello", 7, "Make it greet", "Say hello.")
            nginx = await nursery.start(
                partial(
                    serve_nginx,
                    work,
                    relayd_port=relay.port,
                    controlplane_port=cp_port,
                    cert=cert_path,
                    key=key_path,
                )
            )
            public = f"https://127.0.0.1:{nginx.https_port}"
            settings = attrs.evolve(
                settings,
                relay_socket=relay.control_socket,
                relay_url=f"wss://127.0.0.1:{nginx.https_port}",
                github_api_url=github.url,
            )
            # The local vmagent dials wss:// through nginx; it trusts the test CA.
            env = {
                **os.environ,
                "VMAGENT_DEMO_DELAY": "0",
                "VMAGENT_LOG_LEVEL": "warning",
                "SSL_CERT_FILE": str(ca_path),
            }
            running: Running = await nursery.start(partial(serve, settings, env=env))

            async with httpx.AsyncClient(base_url=public, verify=tls, timeout=10) as http:
                login = await http.post(
                    "/api/auth/login", json={"username": "alice", "password": PASSWORD}
                )
                assert login.status_code == 200, login.text
                http.headers["Authorization"] = f"Bearer {login.json()['accessToken']}"
                created = await http.post("/api/workspaces", json={"issueUrl": ISSUE})
                assert created.status_code == 201, created.text
                workspace_id = created.json()["id"]
                await _wait_status(running, http, f"/api/workspaces/{workspace_id}", "idle")
                # The proxy keeps the control plane's metrics to itself.
                assert (await http.get("/metrics")).status_code == 404

            result = await trio.run_process(
                [
                    sys.executable,
                    str(ROOT / "examples" / "client.py"),
                    "--url",
                    public,
                    "--user",
                    "alice",
                    "--workspace",
                    workspace_id,
                    "--send",
                    "Hello from the operator guide",
                    "--ca-file",
                    str(ca_path),
                ],
                env={**os.environ, "FFCLOUD_PASSWORD": PASSWORD},
                capture_stdout=True,
                capture_stderr=True,
                check=False,
            )
            out = result.stdout.decode()
            assert result.returncode == 0, result.stderr.decode() + out
            assert f"# subscribed to {workspace_id}" in out
            assert "> Hello from the operator guide\n" in out
            assert "[status] running" in out
            assert "[turn done:" in out

            async with httpx.AsyncClient(timeout=10) as scraper:
                relay_metrics = await scraper.get(f"{relay.metrics_url}/metrics")
                cp_metrics = await scraper.get(f"http://127.0.0.1:{cp_port}/metrics")
                relay_health = await scraper.get(f"{relay.metrics_url}/healthz")
                cp_health = await scraper.get(f"http://127.0.0.1:{cp_port}/healthz")
            assert relay_metrics.status_code == cp_metrics.status_code == 200
            assert relay_health.status_code == 200
            assert cp_health.json() == {"status": "ok", "database": "ok", "relay": "ok"}
            exposed = _exposed_metrics(relay_metrics.text, cp_metrics.text)
            assert exposed == _documented_metrics()
            # The conversation went through relayd and is counted.
            # The example sent two frames: subscribe and user_message.
            assert _total(relay_metrics.text, 'relayd_messages_in_total{kind="client",') == 2
            assert (
                _total(relay_metrics.text, 'relayd_messages_in_total{kind="vm",type="hello"}') == 1
            )
            assert _sample(cp_metrics.text, "controlplane_vms_online") == 1

            running.stop()
            nursery.cancel_scope.cancel()


def _total(body: str, series_prefix: str) -> float:
    """The sum of every series that starts with ``series_prefix``."""
    values = [
        float(line.rpartition(" ")[2])
        for line in body.splitlines()
        if line.startswith(series_prefix)
    ]
    assert values, f"{series_prefix} not in the metrics"
    return sum(values)


def _sample(body: str, series: str) -> float:
    """The value of one series in an exposition text."""
    for line in body.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    raise AssertionError(f"{series} not in the metrics")
