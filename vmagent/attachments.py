"""What a ``user_message``'s attachments may hold, and what they become (pure, no I/O).

:func:`check_attachments` is the VM's entry check (count, valid base64, the
decoded size, the bytes really being the claimed image type, its pixels, the
text's length), against :class:`AttachmentLimits` (vmagent's settings). A refusal is
an :class:`AttachmentError` naming the file and the reason; the message is
then not logged at all. :func:`echo_attachments` is what the VM's echo (and so
every viewer and snapshot) shows; :func:`content_blocks` is the user turn as
Messages API content blocks, as the claude engine sends it;
:func:`strip_for_snapshot` keeps snapshots within a budget.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Sequence
from typing import Any, Final

import attrs

from wire.attachments import IMAGE, TEXT, Attachment, ImageAttachment, TextAttachment
from wire.codec import dumps
from wire.protocol import ErrorCode

#: Attachments one message may carry.
DEFAULT_MAX_ATTACHMENTS: Final = 8
#: Largest image, decoded: 1 MiB of base64, so relayd's default 1 MiB client frame
#: (which holds the message's other fields too) is the tighter bound.
DEFAULT_MAX_IMAGE_BYTES: Final = 768 * 1024
#: Longest side of an image, in pixels: the Messages API refuses larger ones.
DEFAULT_MAX_IMAGE_EDGE: Final = 8000
#: Longest text file, in characters.
DEFAULT_MAX_TEXT_ATTACHMENT_CHARS: Final = 200_000
#: Attachment data (base64 and text characters) a snapshot carries at most,
#: newest first; half of relayd's default 16 MiB VM frame, the rest is for words.
DEFAULT_MAX_SNAPSHOT_ATTACHMENT_CHARS: Final = 8 * 1024 * 1024

#: The first bytes of each image type (WebP: ``RIFF``, a length, ``WEBP``).
_MAGIC: Final = (
    ("image/png", 0, b"\x89PNG\r\n\x1a\n"),
    ("image/jpeg", 0, b"\xff\xd8\xff"),
    ("image/gif", 0, b"GIF87a"),
    ("image/gif", 0, b"GIF89a"),
    ("image/webp", 8, b"WEBP"),
)
_NAMES: Final = {
    "image/png": "PNG",
    "image/jpeg": "JPEG",
    "image/gif": "GIF",
    "image/webp": "WebP",
}


@attrs.frozen
class AttachmentLimits:
    """vmagent's bounds on attachments (``--max-attachments`` and friends)."""

    max_attachments: int = DEFAULT_MAX_ATTACHMENTS
    max_image_bytes: int = DEFAULT_MAX_IMAGE_BYTES
    max_image_edge: int = DEFAULT_MAX_IMAGE_EDGE
    max_text_chars: int = DEFAULT_MAX_TEXT_ATTACHMENT_CHARS
    max_snapshot_chars: int = DEFAULT_MAX_SNAPSHOT_ATTACHMENT_CHARS

    def offered(self) -> dict[str, int]:
        """The limits as the ``session_models`` op tells the web app."""
        return {
            "maxAttachments": self.max_attachments,
            "maxImageBytes": self.max_image_bytes,
            "maxImageEdge": self.max_image_edge,
            "maxTextAttachmentChars": self.max_text_chars,
        }


class AttachmentError(Exception):
    """A refused attachment: ``code`` (``bad_request``/``too_large``) and words for the user."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def label(attachment: Attachment, index: int) -> str:
    """How an error names a file: its name, else its place in the message."""
    name = attachment.name
    return repr(name) if name else f"attachment {index + 1}"


def sniff(data: bytes) -> str | None:
    """The image type ``data`` starts like, or None."""
    for media_type, offset, magic in _MAGIC:
        if data[offset : offset + len(magic)] == magic and (
            media_type != "image/webp" or data[:4] == b"RIFF"
        ):
            return media_type
    return None


def _u16be(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 2], "big")


def _u24le(data: bytes, at: int) -> int:
    return int.from_bytes(data[at : at + 3], "little")


#: JPEG frame headers (SOF0-SOF15 but DHT, JPG and DAC), which give the size.
_SOF: Final = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int] | None:
    at = 2
    while at + 9 <= len(data):
        if data[at] != 0xFF:
            return None  # not a marker where one must be: give up, the API decides
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # no length
            at += 2
            continue
        if marker in _SOF:
            return _u16be(data, at + 7), _u16be(data, at + 5)
        if marker == 0xDA:  # scan data begins: no frame header before it
            return None
        at += 2 + _u16be(data, at + 2)
    return None


def _webp_size(data: bytes) -> tuple[int, int] | None:
    chunk = data[12:16]
    if chunk == b"VP8X" and len(data) >= 30:
        return 1 + _u24le(data, 24), 1 + _u24le(data, 27)
    if chunk == b"VP8 " and len(data) >= 30 and data[23:26] == b"\x9d\x01\x2a":
        return (
            int.from_bytes(data[26:28], "little") & 0x3FFF,
            int.from_bytes(data[28:30], "little") & 0x3FFF,
        )
    if chunk == b"VP8L" and len(data) >= 25 and data[20] == 0x2F:
        bits = int.from_bytes(data[21:25], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    return None


def image_size(data: bytes, media_type: str) -> tuple[int, int] | None:
    """An image's width and height in pixels from its header; None when not found.

    ``data`` already starts like ``media_type`` (:func:`sniff`).
    """
    if media_type == "image/png" and len(data) >= 24 and data[12:16] == b"IHDR":
        return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if media_type == "image/gif" and len(data) >= 10:
        return int.from_bytes(data[6:8], "little"), int.from_bytes(data[8:10], "little")
    if media_type == "image/jpeg":
        return _jpeg_size(data)
    if media_type == "image/webp":
        return _webp_size(data)
    return None


def _decoded_size_bound(data: str) -> int:
    """The decoded size of base64 text of this length (without decoding it)."""
    return len(data) // 4 * 3


def check_attachments(attachments: Sequence[Attachment], limits: AttachmentLimits) -> list[int]:
    """Check a message's attachments; the size of each (decoded bytes, or characters).

    Raises :class:`AttachmentError` for the first one that breaks a rule.
    """
    if len(attachments) > limits.max_attachments:
        raise AttachmentError(
            ErrorCode.TOO_LARGE,
            f"{len(attachments)} attachments; at most {limits.max_attachments} per message",
        )
    sizes: list[int] = []
    for index, attachment in enumerate(attachments):
        who = label(attachment, index)
        if isinstance(attachment, TextAttachment):
            if len(attachment.text) > limits.max_text_chars:
                raise AttachmentError(
                    ErrorCode.TOO_LARGE,
                    f"{who} has {len(attachment.text)} characters;"
                    f" at most {limits.max_text_chars} per text file",
                )
            sizes.append(len(attachment.text))
            continue
        sizes.append(_check_image(attachment, who, limits))
    return sizes


def _check_image(image: ImageAttachment, who: str, limits: AttachmentLimits) -> int:
    # Cheap bound first: no decoding of what is too large anyway.
    if _decoded_size_bound(image.data) - 2 > limits.max_image_bytes:
        raise _too_large(who, _decoded_size_bound(image.data), limits)
    try:
        raw = base64.b64decode(image.data, validate=True)
    except (binascii.Error, ValueError):
        raise AttachmentError(
            ErrorCode.BAD_REQUEST,
            f"{who}: data is not valid base64 (standard alphabet, padded, no line breaks)",
        ) from None
    if len(raw) > limits.max_image_bytes:
        raise _too_large(who, len(raw), limits)
    found = sniff(raw)
    if found != image.media_type:
        seen = f"it looks like {_NAMES[found]}" if found else "it is no image Claude reads"
        raise AttachmentError(
            ErrorCode.BAD_REQUEST,
            f"{who} is not a {_NAMES[image.media_type]} image as its mediaType says ({seen})",
        )
    size = image_size(raw, found)
    if size is not None and max(size) > limits.max_image_edge:
        raise AttachmentError(
            ErrorCode.TOO_LARGE,
            f"{who} is {size[0]}\u00d7{size[1]} pixels; at most {limits.max_image_edge}"
            " on a side (shrink it first)",
        )
    return len(raw)


def _too_large(who: str, size: int, limits: AttachmentLimits) -> AttachmentError:
    return AttachmentError(
        ErrorCode.TOO_LARGE,
        f"{who} is {size} bytes; at most {limits.max_image_bytes} bytes per image",
    )


def echo_attachments(
    attachments: Sequence[Attachment], sizes: Sequence[int]
) -> list[dict[str, Any]]:
    """The ``attachments`` of the VM's ``user_message`` echo (with each ``size``)."""
    echoed: list[dict[str, Any]] = []
    for attachment, size in zip(attachments, sizes, strict=True):
        if isinstance(attachment, TextAttachment):
            echoed.append(
                {"type": TEXT, "name": attachment.name, "size": size, "text": attachment.text}
            )
            continue
        body: dict[str, Any] = {"type": IMAGE, "mediaType": attachment.media_type}
        if attachment.name is not None:
            body["name"] = attachment.name
        body["size"] = size
        body["data"] = attachment.data
        echoed.append(body)
    return echoed


def restore_attachments(echoed: object) -> tuple[Attachment, ...]:
    """The attachments of a logged echo (a restarted vmagent feeds unstarted turns again)."""
    found: list[Attachment] = []
    for item in echoed if isinstance(echoed, list) else []:
        if not isinstance(item, dict):
            continue
        name, media_type = item.get("name"), item.get("mediaType")
        try:
            if item.get("type") == TEXT and isinstance(item.get("text"), str):
                found.append(TextAttachment(str(name), item["text"]))
            elif item.get("type") == IMAGE and isinstance(item.get("data"), str):
                found.append(
                    ImageAttachment(
                        str(media_type), item["data"], name if isinstance(name, str) else None
                    )
                )
        except ValueError:
            continue  # the log holds what the check let through; a damaged item is left out
    return tuple(found)


def file_block_text(attachment: TextAttachment) -> str:
    """The text block that carries a text file to Claude, naming it.

    The block's own boundary ends the file, so no text inside it can pose as
    the end of the file and go on as the user's words.
    """
    return f"Attached file {json.dumps(attachment.name)}:\n\n{attachment.text}"


def content_blocks(text: str, attachments: Sequence[Attachment]) -> list[dict[str, Any]]:
    """The user turn as Messages API content blocks: the files first, then the words.

    Files come first as Claude's guidance for images says; an empty text
    (a message of files only) gets no block, as the API refuses empty ones.
    """
    blocks: list[dict[str, Any]] = []
    for attachment in attachments:
        if isinstance(attachment, TextAttachment):
            blocks.append({"type": "text", "text": file_block_text(attachment)})
        else:
            blocks.append(
                {
                    "type": "image",
                    "source": {
                        "type": "base64",
                        "media_type": attachment.media_type,
                        "data": attachment.data,
                    },
                }
            )
    if text.strip() or not blocks:
        blocks.append({"type": "text", "text": text})
    return blocks


def attachment_chars(body: dict[str, Any]) -> int:
    """Characters of attachment data (base64 and text) in a logged ``user_message``."""
    total = 0
    items = body.get("attachments")
    for item in items if isinstance(items, list) else []:
        if isinstance(item, dict):
            for key in ("data", "text"):
                value = item.get(key)
                if isinstance(value, str):
                    total += len(value)
    return total


def strip_for_snapshot(frame: str) -> str:
    """A ``user_message`` frame with its attachments' data left out (``omitted``)."""
    body = json.loads(frame)
    for item in body.get("attachments", []):
        if isinstance(item, dict):
            for key in ("data", "text"):
                if key in item:
                    del item[key]
                    item["omitted"] = True
    return dumps(body)
