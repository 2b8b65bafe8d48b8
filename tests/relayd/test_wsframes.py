"""relayd's own text-frame encoder matches wsproto's, at every length boundary."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import FrameProtocol

from relayd.wsframes import encode_text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_same_bytes_as_wsproto(size: int) -> None:
    text = ("é" * size)[:size]  # multi-byte characters: the length is in bytes
    expected = FrameProtocol(client=False, extensions=[]).send_data(text, fin=True)
    assert encode_text_frame(text) == expected
