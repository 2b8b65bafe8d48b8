"""The metrics endpoint, scraped with a real HTTP client."""

from __future__ import annotations

import httpx
import pytest
import trio
from prometheus_client.parser import text_string_to_metric_families
from trio_websocket import ConnectionRejected

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
