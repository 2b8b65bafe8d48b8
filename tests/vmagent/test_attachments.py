"""vmagent's attachment check, content blocks and snapshot budget (pure functions)."""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.support.images import CHROMIUM_301X203, b64, png
from vmagent.attachments import (
    AttachmentError,
    AttachmentLimits,
    check_attachments,
    content_blocks,
    echo_attachments,
    image_size,
    restore_attachments,
    sniff,
    strip_for_snapshot,
)
from vmagent.conversation import Conversation
from wire.attachments import IMAGE_MEDIA_TYPES, Attachment, ImageAttachment, TextAttachment
from wire.messages import UserMessage
from wire.protocol import ErrorCode

PNG = png()
JPEG = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + bytes(20)
GIF = b"GIF89a" + bytes(20)
WEBP = b"RIFF\x10\x00\x00\x00WEBPVP8 " + bytes(20)
SAMPLES = {"image/png": PNG, "image/jpeg": JPEG, "image/gif": GIF, "image/webp": WEBP}
LIMITS = AttachmentLimits(max_attachments=3, max_image_bytes=100, max_text_chars=10)


def refusal(attachments: list[Attachment], limits: AttachmentLimits = LIMITS) -> AttachmentError:
    with pytest.raises(AttachmentError) as caught:
        check_attachments(attachments, limits)
    return caught.value


def test_each_image_type_is_known_by_its_first_bytes() -> None:
    for media_type, data in SAMPLES.items():
        assert sniff(data) == media_type
    assert sniff(b"RIFF\x10\x00\x00\x00WAVEfmt ") is None
    assert sniff(b"%PDF-1.7") is None
    assert sniff(b"") is None


def test_good_files_pass_with_their_sizes() -> None:
    files: list[Attachment] = [
        ImageAttachment("image/png", b64(PNG), "a.png"),
        ImageAttachment("image/webp", b64(WEBP)),
        TextAttachment("n.txt", "0123456789"),
    ]
    assert check_attachments(files, LIMITS) == [len(PNG), len(WEBP), 10]
    assert check_attachments([], LIMITS) == []


def test_each_refusal_names_the_file_and_the_reason() -> None:
    png_file = ImageAttachment("image/png", b64(PNG), "a.png")
    err = refusal([png_file] * 4)
    assert (err.code, err.message) == (
        ErrorCode.TOO_LARGE,
        "4 attachments; at most 3 per message",
    )
    err = refusal([TextAttachment("long.md", "x" * 11)])
    assert err.code == ErrorCode.TOO_LARGE
    assert err.message == "'long.md' has 11 characters; at most 10 per text file"
    err = refusal([png_file, ImageAttachment("image/png", b64(b"\x89PNG\r\n\x1a\n" + bytes(93)))])
    assert err.code == ErrorCode.TOO_LARGE
    assert err.message == "attachment 2 is 101 bytes; at most 100 bytes per image"
    err = refusal([ImageAttachment("image/png", b64(bytes(4000)), "big.png")])
    assert err.code == ErrorCode.TOO_LARGE
    assert err.message.startswith("'big.png' is ")
    err = refusal([ImageAttachment("image/png", "not base64!", "x.png")])
    assert err.code == ErrorCode.BAD_REQUEST
    assert "'x.png': data is not valid base64" in err.message
    err = refusal([ImageAttachment("image/png", b64(PNG)[:-1], "cut.png")])
    assert err.code == ErrorCode.BAD_REQUEST
    assert "not valid base64" in err.message
    err = refusal([ImageAttachment("image/png", b64(JPEG), "photo.png")])
    assert err.code == ErrorCode.BAD_REQUEST
    assert err.message == (
        "'photo.png' is not a PNG image as its mediaType says (it looks like JPEG)"
    )
    err = refusal([ImageAttachment("image/gif", b64(b"%PDF-1.7 hello"), "doc.gif")])
    assert err.message == (
        "'doc.gif' is not a GIF image as its mediaType says (it is no image Claude reads)"
    )


_images = st.builds(
    ImageAttachment,
    st.sampled_from(IMAGE_MEDIA_TYPES),
    st.one_of(
        st.sampled_from(list(SAMPLES.values())).map(b64),
        st.binary(max_size=150).map(b64),
        st.tuples(st.sampled_from(list(SAMPLES.values())), st.binary(max_size=120)).map(
            lambda parts: b64(parts[0] + parts[1])
        ),
        st.text(max_size=40),
    ),
    st.none() | st.text(min_size=1, max_size=10).filter(str.isprintable),
)
_texts = st.builds(
    TextAttachment, st.text(min_size=1, max_size=10).filter(str.isprintable), st.text(max_size=14)
)


def checked(files: list[Attachment]) -> tuple[list[int], AttachmentError | None]:
    """The sizes, or the refusal."""
    try:
        return check_attachments(files, LIMITS), None
    except AttachmentError as exc:
        return [], exc


@given(st.lists(_images | _texts, max_size=5))
def test_a_check_accepts_exactly_what_keeps_every_rule(files: list[Attachment]) -> None:
    sizes, refused = checked(files)
    if refused is not None:
        assert refused.code in (ErrorCode.BAD_REQUEST, ErrorCode.TOO_LARGE)
        assert refused.message
        return
    assert len(files) <= LIMITS.max_attachments
    for attachment, size in zip(files, sizes, strict=True):
        if isinstance(attachment, TextAttachment):
            assert size == len(attachment.text) <= LIMITS.max_text_chars
            continue
        raw = base64.b64decode(attachment.data, validate=True)
        assert b64(raw) == attachment.data
        assert size == len(raw) <= LIMITS.max_image_bytes
        assert sniff(raw) == attachment.media_type
    # What passed becomes one block each, plus the words, and comes back from the log.
    blocks = content_blocks("what is this?", files)
    assert len(blocks) == len(files) + 1
    assert blocks[-1] == {"type": "text", "text": "what is this?"}
    echoed = echo_attachments(files, sizes)
    assert restore_attachments(json.loads(json.dumps(echoed))) == tuple(files)


def test_content_blocks_put_the_files_first_and_name_text_files() -> None:
    image = ImageAttachment("image/png", b64(PNG), "a.png")
    blocks = content_blocks("compare them", [image, TextAttachment("notes.md", "# Hi")])
    assert blocks == [
        {
            "type": "image",
            "source": {"type": "base64", "media_type": "image/png", "data": b64(PNG)},
        },
        {"type": "text", "text": 'Attached file "notes.md":\n\n# Hi'},
        {"type": "text", "text": "compare them"},
    ]
    # Files alone: no empty text block (the API refuses those).
    assert content_blocks("  ", [image]) == blocks[:1]
    assert content_blocks("", []) == [{"type": "text", "text": ""}]


def test_limits_are_offered_to_the_web_app() -> None:
    assert LIMITS.offered() == {
        "maxAttachments": 3,
        "maxImageBytes": 100,
        "maxImageEdge": 8000,
        "maxTextAttachmentChars": 10,
    }


def accept(conv: Conversation, cid: str, files: Sequence[Attachment]) -> None:
    sizes = check_attachments(files, AttachmentLimits())
    accepted, _ = conv.accept_user_message(
        UserMessage("w", cid, f"text {cid}", "u1", tuple(files)), echo_attachments(files, sizes)
    )
    assert accepted


def test_snapshots_keep_the_newest_attachments_within_the_budget() -> None:
    conv = Conversation("w")
    one = [ImageAttachment("image/png", b64(PNG), "one.png")]
    two = [TextAttachment("two.txt", "t" * 50)]
    three = [ImageAttachment("image/gif", b64(GIF))]
    accept(conv, "c1", one)
    accept(conv, "c2", [])
    accept(conv, "c3", two)
    accept(conv, "c4", three)
    budget = len(b64(GIF)) + 50

    def files_of(snapshot: str) -> list[list[dict[str, object]]]:
        messages = json.loads(snapshot)["messages"]
        return [m.get("attachments", []) for m in messages if m["type"] == "user_message"]

    whole = files_of(conv.snapshot("s"))
    assert whole[0][0]["data"] == b64(PNG)
    kept = files_of(conv.snapshot("s", budget))
    assert kept[1:] == whole[1:]  # c3 and c4 fit: untouched
    first_without_data = {
        "type": "image",
        "mediaType": "image/png",
        "name": "one.png",
        "size": len(PNG),
        "omitted": True,
    }
    assert kept[0] == [first_without_data]
    # Once one is over, every older one goes without its data too.
    tight = files_of(conv.snapshot("s", budget - 1))
    assert tight == [
        [first_without_data],
        [],
        [{"type": "text", "name": "two.txt", "size": 50, "omitted": True}],
        whole[3],
    ]


def test_unstarted_messages_keep_their_attachments_through_a_restore() -> None:
    conv = Conversation("w")
    files: list[Attachment] = [
        ImageAttachment("image/png", b64(PNG), "one.png"),
        TextAttachment("n.txt", "x"),
    ]
    lines = [conv.header().frame]
    sizes = check_attachments(files, AttachmentLimits())
    _, outs = conv.accept_user_message(
        UserMessage("w", "c1", "look", "u1", tuple(files)), echo_attachments(files, sizes)
    )
    lines += [o.frame for o in outs]
    again = Conversation.restore("w", [line + "\n" for line in lines])
    assert again.unstarted() == [("c1", "look", tuple(files))]


def test_strip_for_snapshot_leaves_the_rest_of_the_frame() -> None:
    frame = json.dumps(
        {
            "type": "user_message",
            "seq": 1,
            "text": "hi",
            "attachments": [{"type": "text", "name": "a", "size": 1, "text": "x"}],
        }
    )
    assert json.loads(strip_for_snapshot(frame)) == {
        "type": "user_message",
        "seq": 1,
        "text": "hi",
        "attachments": [{"type": "text", "name": "a", "size": 1, "omitted": True}],
    }


def test_pixels_are_read_from_real_headers() -> None:
    for name, data in CHROMIUM_301X203.items():
        raw = base64.b64decode(data)
        found = sniff(raw)
        assert found is not None, name
        assert image_size(raw, found) == (301, 203), name
    assert image_size(png(9000, 3), "image/png") == (9000, 3)
    assert image_size(b"GIF89a\x10\x27\x02\x00", "image/gif") == (10000, 2)
    # WebP's simple formats, as the container specification lays them out.
    vp8 = b"RIFF\0\0\0\0WEBPVP8 \0\0\0\0" + b"\0\0\0\x9d\x01\x2a" + (640).to_bytes(2, "little")
    assert image_size(vp8 + (480).to_bytes(2, "little"), "image/webp") == (640, 480)
    bits = (1000 - 1) | (9000 - 1) << 14
    vp8l = b"RIFF\0\0\0\0WEBPVP8L\0\0\0\0\x2f" + bits.to_bytes(4, "little")
    assert image_size(vp8l, "image/webp") == (1000, 9000)
    # A JPEG whose scan starts before any frame header, or cut short: unknown.
    assert image_size(b"\xff\xd8\xff\xda\x00\x08" + bytes(20), "image/jpeg") is None
    assert image_size(base64.b64decode(CHROMIUM_301X203["jpeg"])[:100], "image/jpeg") is None


def test_an_image_too_many_pixels_wide_is_refused() -> None:
    wide = ImageAttachment("image/png", b64(png(9000, 1)), "strip.png")
    edge = AttachmentLimits(max_image_edge=8000)
    with pytest.raises(AttachmentError) as caught:
        check_attachments([wide], edge)
    assert caught.value.code == ErrorCode.TOO_LARGE
    assert caught.value.message == (
        "'strip.png' is 9000\u00d71 pixels; at most 8000 on a side (shrink it first)"
    )
    assert check_attachments([wide], AttachmentLimits(max_image_edge=9000)) == [len(png(9000, 1))]


@given(st.sampled_from(IMAGE_MEDIA_TYPES), st.binary(max_size=64))
def test_reading_pixels_never_fails_on_any_bytes(media_type: str, tail: bytes) -> None:
    head = {"image/png": PNG[:16], "image/jpeg": b"\xff\xd8", "image/gif": b"GIF89a"}
    data = head.get(media_type, b"RIFF\0\0\0\0WEBP") + tail
    size = image_size(data, media_type)
    assert size is None or min(size) >= 0
