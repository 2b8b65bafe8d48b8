"""One HTTP response written through h11: the handshake's refusals and the metrics share it.

h11 frames the response (a ``HEAD`` request's answer carries the headers of
the ``GET`` one and no body) and refuses to write one that is not valid HTTP.
"""

from __future__ import annotations

from collections.abc import Sequence
from http import HTTPStatus

import h11


def reason_phrase(status: int) -> bytes:
    """The standard reason phrase of ``status`` (empty for a code without one)."""
    try:
        return HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def response_bytes(
    conn: h11.Connection,
    status: int,
    content_type: bytes,
    body: bytes,
    *,
    headers: Sequence[tuple[bytes, bytes]] = (),
    head_only: bool = False,
) -> bytes:
    """A whole response that closes the connection: head, then ``body`` unless ``head_only``.

    ``Content-Length`` is the body's length either way, as for a ``HEAD`` request.
    """
    head = [
        (b"Content-Type", content_type),
        (b"Content-Length", str(len(body)).encode()),
        (b"Connection", b"close"),
        *headers,
    ]
    response = h11.Response(status_code=status, headers=head, reason=reason_phrase(status))
    data = conn.send(response) or b""
    if not head_only:
        data += conn.send(h11.Data(data=body)) or b""
    data += conn.send(h11.EndOfMessage()) or b""
    return data
