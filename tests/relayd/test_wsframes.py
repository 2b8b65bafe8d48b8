"""relayd's own text-frame encoder matches wsproto's, at every length boundary."""

from __future__ import annotations

import pytest
from wsproto.frame_protocol import FrameProtocol

from relayd.outbox import SharedFrames
from relayd.wsframes import FRAME_CACHE_MAX_FRAME, FrameCache, encode_text_frame


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70000])
def test_same_bytes_as_wsproto(size: int) -> None:
    text = ("é" * size)[:size]  # multi-byte characters: the length is in bytes
    expected = FrameProtocol(client=False, extensions=[]).send_data(text, fin=True)
    assert encode_text_frame(text) == expected


def test_frame_cache_encodes_a_batch_and_counts_it_by_type() -> None:
    cache = FrameCache()
    frames = [
        '{"type":"claude_message","seq":1}',
        '{"type":"status","seq":2}',
        '{"type":"claude_message","seq":3,"x":"é"}',
        "not json",
        "y" * (FRAME_CACHE_MAX_FRAME + 1),
    ]
    for _ in range(2):  # the second time from the cache (all but the long frame)
        data, counts = cache.encode(frames)
        assert data == b"".join(encode_text_frame(f) for f in frames)
        assert counts == {
            "claude_message": [2, len(frames[0]) + len(frames[2])],
            "status": [1, len(frames[1])],
            "other": [2, len(frames[3]) + len(frames[4])],
        }
        assert len(cache) == 4


def test_frame_cache_is_emptied_when_full_and_stays_correct() -> None:
    cache = FrameCache(max_entries=3, max_chars=1000)
    frames = [f'{{"type":"t{i}"}}' for i in range(10)]
    for frame in frames:
        data, counts = cache.encode([frame])
        assert data == encode_text_frame(frame)
        assert counts == {frame[9:11]: [1, len(frame)]}
        assert 1 <= len(cache) <= 3
    big = cache.encode(["z" * 600])[0] + cache.encode(["w" * 600])[0]
    assert big == encode_text_frame("z" * 600) + encode_text_frame("w" * 600)
    assert len(cache) == 1  # the second 600 characters did not fit beside the first


def test_shared_frames_are_encoded_once_for_every_writer() -> None:
    cache = FrameCache()
    frames = ['{"type":"claude_message","seq":1}', '{"type":"status","seq":2}']
    shared = SharedFrames(frames, sum(map(len, frames)))
    expected = b"".join(encode_text_frame(f) for f in frames)
    data, counts = cache.encode(["before", shared, "after"])
    assert data == encode_text_frame("before") + expected + encode_text_frame("after")
    assert counts == {
        "other": [2, len("before") + len("after")],
        "claude_message": [1, len(frames[0])],
        "status": [1, len(frames[1])],
    }
    assert shared.encoded == expected
    shared.frames = ["changed"]  # a second writer uses what the first left
    assert cache.encode([shared]) == (expected, {"claude_message": [1, 33], "status": [1, 25]})
