"""What a user_message with images costs the services that handle it (no sockets).

For a message of one image as large as relayd's default 1 MiB frame allows
(768 KiB decoded) and one of 8 images of 90 KiB: relayd's strict decode and
re-encode of the frame it forwards (``decode_client_message`` +
``encode_message``), and vmagent's entry check (``check_attachments``: base64
decode, size, magic numbers) and echo into the log. Then a snapshot of a
conversation holding 40 such large messages (30 MiB of base64), built
within the default ``--max-snapshot-attachment-chars`` (8 MiB): its size and
time. R repetitions (default 50); the median and the slowest are printed.

Run: .venv/bin/python bench/attachments.py [R]
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from collections.abc import Callable

from tests.support.images import b64
from vmagent.attachments import (
    DEFAULT_MAX_IMAGE_BYTES,
    AttachmentLimits,
    check_attachments,
    echo_attachments,
)
from vmagent.conversation import Conversation
from wire.messages import UserMessage, decode_client_message, encode_message


def image_bytes(size: int) -> bytes:
    """A PNG signature and random bytes (incompressible, like a real photo's base64)."""
    return b"\x89PNG\r\n\x1a\n" + os.urandom(size - 8)


def frame(sizes: list[int]) -> str:
    files = [
        {"type": "image", "mediaType": "image/png", "name": f"{i}.png", "data": b64(image_bytes(n))}
        for i, n in enumerate(sizes)
    ]
    body = {"type": "user_message", "workspaceId": "w", "clientMessageId": "c", "text": "look"}
    return json.dumps({**body, "attachments": files})


def timed(repeat: int, work: Callable[[], object]) -> tuple[float, float]:
    """Median and slowest, in milliseconds."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        work()
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def main(repeat: int) -> None:
    limits = AttachmentLimits()
    for label, sizes in (
        ("1 image of 768 KiB", [DEFAULT_MAX_IMAGE_BYTES - 64]),
        ("8 images of 90 KiB", [90 * 1024] * 8),
    ):
        text = frame(sizes)
        message = decode_client_message(text, trust_user_id=True)
        assert isinstance(message, UserMessage)

        def forward(t: str = text) -> None:
            encode_message(decode_client_message(t))

        def check_only(m: UserMessage = message) -> None:
            check_attachments(m.attachments, limits)

        relay = timed(repeat, forward)
        check = timed(repeat, check_only)

        def accept(m: UserMessage = message) -> None:
            conv = Conversation("w")
            sizes = check_attachments(m.attachments, limits)
            conv.accept_user_message(m, echo_attachments(m.attachments, sizes))

        vm = timed(repeat, accept)
        print(
            f"{label}: frame {len(text) / 1024:,.0f} KiB; relayd decode+encode "
            f"{relay[0]:.2f} ms (max {relay[1]:.2f}); vmagent check {check[0]:.2f} ms "
            f"(max {check[1]:.2f}); check+echo {vm[0]:.2f} ms (max {vm[1]:.2f})"
        )

    conv = Conversation("w")
    big = decode_client_message(frame([DEFAULT_MAX_IMAGE_BYTES - 64]), trust_user_id=True)
    assert isinstance(big, UserMessage)
    for i in range(40):
        m = UserMessage("w", f"c{i}", "look", "u1", big.attachments)
        conv.accept_user_message(m, echo_attachments(m.attachments, [DEFAULT_MAX_IMAGE_BYTES]))
    snap = conv.snapshot("s", limits.max_snapshot_chars)
    whole = conv.snapshot("s")
    kept = sum(1 for m in json.loads(snap)["messages"] if "data" in m["attachments"][0])
    took = timed(max(5, repeat // 10), lambda: conv.snapshot("s", limits.max_snapshot_chars))
    print(
        f"snapshot of 40 such messages: {len(snap) / 2**20:.1f} MiB with the budget "
        f"({kept} keep their data), {len(whole) / 2**20:.1f} MiB without; "
        f"built in {took[0]:.1f} ms (max {took[1]:.1f})"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 50)
