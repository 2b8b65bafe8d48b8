"""The metrics endpoint, scraped with a real HTTP client."""

from __future__ import annotations

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import ConnectionRejected

from relayd.metrics import route
from tests.relayd.fakevm import FakeVm
from tests.support.relayd import Relayd, recv_json, send_json


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


async def test_metrics_after_some_traffic(relay: Relayd) -> None:
    assert relay.metrics_url is not None
    with trio.fail_after(20):
        await relay.control.assign("w1", "vm1", ["u1"])
        async with relay.connect_vm("vm1") as vm_ws, relay.connect_client("u1") as client:
            vm = FakeVm(vm_ws, "vm1")
            await vm.hello(w1=("e1", 0))
            await relay.control.next_event("vm_online")
            await send_json(client, {"type": "subscribe", "workspaceId": "w1"})
            await recv_json(client)
            request = await vm.expect("snapshot_request")
            await vm.snapshot("w1", request["requestId"])
            await recv_json(client)
            await vm.stream("w1", 3)
            for _ in range(3):
                await recv_json(client)
            with pytest.raises(ConnectionRejected) as refused:
                async with relay.connect_client("u1", token="junk"):
                    pass
            assert refused.value.status_code == 401
            async with httpx.AsyncClient(base_url=relay.metrics_url) as http:
                health = await http.get("/healthz")
                assert (health.status_code, health.text) == (200, "ok")
                response = await http.get("/metrics")
                assert response.status_code == 200
                assert response.headers["content-type"].startswith("text/plain")
                assert (await http.get("/nope")).status_code == 404
        got = samples(response.text)
        assert got[("relayd_connections", (("kind", "client"),))] == 1
        assert got[("relayd_connections", (("kind", "vm"),))] == 1
        assert got[("relayd_vms_online", ())] == 1
        assert got[("relayd_rooms", ())] == 1
        assert got[("relayd_handshakes_refused_total", (("reason", "token_malformed"),))] == 1
        assert got[("relayd_messages_in_total", (("kind", "vm"), ("type", "claude_message")))] == 3
        assert (
            got[("relayd_messages_out_total", (("kind", "client"), ("type", "claude_message")))]
            == 3
        )
        assert (
            got[("relayd_messages_out_total", (("kind", "client"), ("type", "messages_snapshot")))]
            == 1
        )
        assert got[("relayd_bytes_in_total", (("kind", "vm"), ("type", "claude_message")))] > 100
        assert got[("relayd_snapshot_requests_total", ())] == 1
        assert got[("relayd_snapshot_latency_seconds_count", ())] == 1
        assert got[("relayd_snapshot_latency_seconds_bucket", (("le", "+Inf"),))] == 1
        assert got[("relayd_slow_client_closes_total", ())] == 0


async def _raw_exchange(relay: Relayd, request: bytes) -> bytes:
    """Send ``request`` as it is and read the whole answer, until relayd closes."""
    assert relay.metrics_url is not None
    host, port = relay.metrics_url.removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(10):
        stream = await trio.open_tcp_stream(host, int(port))
        async with stream:
            await stream.send_all(request)
            answer = b""
            while chunk := await stream.receive_some(65536):
                answer += chunk
    return answer


def _head_and_body(answer: bytes) -> tuple[list[bytes], dict[bytes, bytes], bytes]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.split(b"\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(b": ")
        headers[name.lower()] = value
    return status_line.split(b" ", 2), headers, body


async def test_head_answers_the_headers_of_get_without_a_body(relay: Relayd) -> None:
    for path in (b"/metrics", b"/healthz"):
        get = await _raw_exchange(relay, b"GET " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await _raw_exchange(relay, b"HEAD " + path + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        (_, get_status, _), get_headers, get_body = _head_and_body(get)
        (_, status, phrase), headers, body = _head_and_body(head)
        assert (status, phrase) == (b"200", b"OK")
        assert get_status == b"200"
        assert body == b""
        assert int(headers[b"content-length"]) > 0
        assert headers[b"content-type"] == get_headers[b"content-type"]
        if path == b"/healthz":
            assert headers[b"content-length"] == get_headers[b"content-length"] == b"2"
            assert get_body == b"ok"


@pytest.mark.parametrize(
    ("request_bytes", "status", "phrase"),
    [
        (b"GET /nope HTTP/1.1\r\nHost: x\r\n\r\n", b"404", b"Not Found"),
        (
            b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
            b"405",
            b"Method Not Allowed",
        ),
        (b"this is not HTTP\r\n\r\n", b"400", b"Bad Request"),
        (
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 40000 + b"\r\n\r\n",
            b"431",
            b"Request Header Fields Too Large",
        ),
    ],
    ids=["404", "405", "400", "431"],
)
async def test_refusals_carry_their_status_and_reason(
    relay: Relayd, request_bytes: bytes, status: bytes, phrase: bytes
) -> None:
    (_, got_status, got_phrase), headers, body = _head_and_body(
        await _raw_exchange(relay, request_bytes)
    )
    assert (got_status, got_phrase) == (status, phrase)
    assert int(headers[b"content-length"]) == len(body) > 0
    assert headers[b"connection"] == b"close"
    if status == b"405":
        assert headers[b"allow"] == b"GET, HEAD"


@pytest.mark.parametrize(
    ("method", "target", "shutting_down", "expected"),
    [
        (b"GET", b"/metrics", False, (200, b"# metrics")),
        (b"HEAD", b"/metrics?x=1", False, (200, b"# metrics")),
        (b"GET", b"/healthz", False, (200, b"ok")),
        (b"GET", b"/healthz", True, (503, b"shutting down")),
        (b"GET", b"/", False, (404, b"not found\n")),
        (b"DELETE", b"/metrics", False, (405, b"only GET and HEAD\n")),
    ],
)
def test_route(
    method: bytes, target: bytes, shutting_down: bool, expected: tuple[int, bytes]
) -> None:
    answer = route(method, target, shutting_down=shutting_down, metrics=lambda: b"# metrics")
    assert (answer.status, answer.body) == expected
