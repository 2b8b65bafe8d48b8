"""The real stack (``controlplane dev``) and a real headless Chromium, for the browser tests.

One stack and one browser serve the whole module: starting them is most of
the cost. ``FFCLOUD_SCREENSHOTS=1`` also writes the README's screenshots into
``docs/screenshots/``.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Generator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

REPO = Path(__file__).resolve().parents[2]
#: The terminals' shell: bash without the machine's dotfiles.
PLAIN_SHELL = REPO / "tests" / "support" / "plain-shell"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
USER = "e2e-user"
PASSWORD = "e2e-password-123"
#: How long the stack may take to print its URL.
START_TIMEOUT = 90.0
STOP_TIMEOUT = 20.0
#: Seconds between the demo engine's streamed words: slow enough to see parts, fast enough.
DEMO_DELAY = "0.02"
#: Seconds an access token lives in the test stack (renewed a fifth of that early).
ACCESS_TOKEN_TTL = 25
ISSUES = {
    ("acme", "widgets", 7): {
        "title": "Widgets render twice on reload",
        "body": "Steps: open the page, reload, see every widget twice.",
    },
    ("acme", "widgets", 8): {"title": "Dark mode for the settings page", "body": "Please."},
    ("acme", "widgets", 9): {"title": "Queue messages while Claude works", "body": "Stop too."},
    ("acme", "widgets", 14): {"title": "Show what changed", "body": "Beside the chat."},
}


def free_port() -> int:
    """A loopback port that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _GitHubHandler(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        m = re.fullmatch(r"/repos/([^/]+)/([^/]+)/issues/(\d+)", self.path.split("?")[0])
        issue = ISSUES.get((m[1], m[2], int(m[3]))) if m else None
        if issue is None:
            self.send_response(404)
            body = b'{"message": "Not Found"}'
        else:
            self.send_response(200)
            number = int(m[3]) if m else 0
            body = json.dumps({"number": number, "state": "open", **issue}).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def fake_github() -> Iterator[str]:
    """A tiny GitHub issues API on loopback, so workspaces get real-looking titles."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _GitHubHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class Stack:
    """``controlplane dev`` as a subprocess: its URL, output and process tree."""

    def __init__(self, process: subprocess.Popen[str], url: str, lines: list[str]) -> None:
        self.process = process
        self.url = url
        self.lines = lines

    def pids(self, name: str) -> list[int]:
        """Live descendants of the stack's process whose command line mentions ``name``."""
        parents: dict[int, int] = {}
        commands: dict[int, str] = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] == "Z":
                continue
            parents[int(entry.name)] = int(fields[1])
            commands[int(entry.name)] = cmdline
        found = []
        for pid, cmdline in commands.items():
            ancestor = parents.get(pid)
            while ancestor is not None and ancestor != self.process.pid:
                ancestor = parents.get(ancestor)
            if ancestor == self.process.pid and name in cmdline:
                found.append(pid)
        return found

    def output(self) -> str:
        return "".join(self.lines[-200:])


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with run_stack(tmp_path_factory.mktemp("stack")) as running:
        yield running


@contextlib.contextmanager
def run_stack(state: Path, extra_env: dict[str, str] | None = None) -> Iterator[Stack]:
    """``controlplane dev`` in ``state``, with ``extra_env`` added to its environment
    (``RELAYD_*`` and ``VMAGENT_*`` reach relayd and the VM, e.g. a small log)."""
    dist = REPO / "webui" / "dist" / "index.html"
    assert dist.exists(), "the web UI is not built: run `make webui`"
    http_port, relay_port = free_port(), free_port()
    with fake_github() as github:
        env = {
            **os.environ,
            "FFCLOUD_DEV_USER": USER,
            "FFCLOUD_DEV_PASSWORD": PASSWORD,
            "VMAGENT_DEMO_DELAY": DEMO_DELAY,
            "PYTHONUNBUFFERED": "1",
            "VMAGENT_TERMINAL_SHELL": str(PLAIN_SHELL),
            **(extra_env or {}),
        }
        argv = [
            str(REPO / ".venv" / "bin" / "controlplane"),
            "dev",
            "--state-dir",
            str(state),
            "--listen",
            f"127.0.0.1:{http_port}",
            "--relay-listen",
            f"127.0.0.1:{relay_port}",
            "--github-api-url",
            github,
            "--github-timeout",
            "3",
            # Short-lived access tokens: the page renews its token (and sends `auth` on
            # the live socket) several times during the run.
            "--access-token-ttl",
            str(ACCESS_TOKEN_TTL),
        ]
        process = subprocess.Popen(
            argv,
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        lines: list[str] = []
        found = threading.Event()
        url: list[str] = []

        def pump() -> None:
            assert process.stdout is not None
            for line in process.stdout:
                lines.append(line)
                m = re.search(r"https?://(?:127\.0\.0\.1|localhost):\d+/?", line)
                if m and not url and "ws://" not in line:
                    url.append(m[0].rstrip("/"))
                    found.set()
            found.set()

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        try:
            if not found.wait(START_TIMEOUT) or not url:
                raise AssertionError("controlplane dev printed no URL:\n" + "".join(lines[-100:]))
            stack = Stack(process, url[0], lines)
            _wait_healthy(stack)
            yield stack
        finally:
            _stop(process)
            reader.join(5)


def _wait_healthy(stack: Stack) -> None:
    """Wait until the control plane answers and relayd is reachable through it."""
    import httpx

    deadline = time.monotonic() + START_TIMEOUT
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(stack.url + "/healthz", timeout=2)
            if r.status_code == 200:
                return
            last = r.text
        except httpx.HTTPError as e:
            last = str(e)
        if stack.process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"the stack never became healthy ({last}):\n{stack.output()}")


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            # Only our own process group: the stack was started in a new session.
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)"
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def context(browser: Browser, stack: Stack) -> Iterator[BrowserContext]:
    ctx = browser.new_context(base_url=stack.url, viewport={"width": 1280, "height": 860})
    ctx.set_default_timeout(15_000)
    try:
        yield ctx
    finally:
        ctx.close()


#: The last frames of every page's relay socket, shown when a test fails.
FRAMES: list[str] = []


def record_frames(page: Page, label: str) -> None:
    """Keep the page's WebSocket frames (cut short) for the failure report."""

    def on_socket(ws: Any) -> None:
        ws.on("framesent", lambda f: FRAMES.append(f"{label} > {str(f)[:200]}"))
        ws.on("framereceived", lambda f: FRAMES.append(f"{label} < {str(f)[:200]}"))
        ws.on("close", lambda _: FRAMES.append(f"{label} closed"))

    page.on("websocket", on_socket)


@pytest.fixture
def relay_frames() -> list[str]:
    """The frames recorded so far (this conftest's list, however the test module imports it)."""
    return FRAMES


@pytest.fixture(scope="module")
def page(context: BrowserContext) -> Page:
    p = context.new_page()
    record_frames(p, "main")
    return p


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" and report.failed and FRAMES:
        report.sections.append(("relay frames (last 25)", "\n".join(FRAMES[-25:])))
    return report


SCREENSHOTS = REPO / "docs" / "screenshots"


def screenshot(page: Page, name: str, **kwargs: Any) -> None:
    """Save a screenshot for the README when FFCLOUD_SCREENSHOTS is set."""
    if os.environ.get("FFCLOUD_SCREENSHOTS"):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), **kwargs)
