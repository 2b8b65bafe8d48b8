"""Files a ``user_message`` carries: images and small text files (docs/protocol.md).

This module is the shape of an attachment on the wire and its strict
decoding, which relayd and the VM share: ``{"type": "image", "mediaType",
"data", "name"?}`` or ``{"type": "text", "name", "text"}``. What an
attachment may *hold* (how many, how large, whether ``data`` really is
base64 of an image of the claimed type) is the VM's to check, against
settings of its own (:mod:`vmagent.attachments`).
"""

from __future__ import annotations

import re
from typing import Any, Final, TypeAlias

import attrs

#: The image types Claude reads (the Messages API's own list).
IMAGE_MEDIA_TYPES: Final = ("image/png", "image/jpeg", "image/gif", "image/webp")
#: Longest file name an attachment may give.
MAX_ATTACHMENT_NAME: Final = 255

IMAGE: Final = "image"
TEXT: Final = "text"

#: Control characters have no place in a file name shown to people and to Claude.
_CONTROL: Final = re.compile(r"[\x00-\x1f\x7f]")


class AttachmentShapeError(ValueError):
    """An ``attachments`` value of the wrong shape; its message says where and why."""


def _check_name(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_ATTACHMENT_NAME
        or _CONTROL.search(value)
    ):
        raise ValueError(
            f"name must be a non-empty string of at most {MAX_ATTACHMENT_NAME} characters"
            " without control characters"
        )


def _check_media_type(_instance: object, _attribute: attrs.Attribute[Any], value: object) -> None:
    if value not in IMAGE_MEDIA_TYPES:
        raise ValueError(f"mediaType must be one of {', '.join(IMAGE_MEDIA_TYPES)}")


@attrs.frozen
class ImageAttachment:
    """An image, base64 in ``data`` (standard alphabet, padded, no line breaks)."""

    media_type: str = attrs.field(validator=_check_media_type)
    data: str
    name: str | None = attrs.field(default=None, validator=attrs.validators.optional(_check_name))


@attrs.frozen
class TextAttachment:
    """A small text file: its name and its whole text."""

    name: str = attrs.field(validator=_check_name)
    text: str


Attachment: TypeAlias = ImageAttachment | TextAttachment
Attachments: TypeAlias = tuple[Attachment, ...]

#: type -> (class, wire name -> attribute, the wire names it must have).
_FIELDS: Final[dict[str, tuple[type[Any], dict[str, str], tuple[str, ...]]]] = {
    IMAGE: (
        ImageAttachment,
        {"mediaType": "media_type", "data": "data", "name": "name"},
        ("mediaType", "data"),
    ),
    TEXT: (TextAttachment, {"name": "name", "text": "text"}, ("name", "text")),
}


def structure_attachment(value: object, index: int) -> Attachment:
    """One attachment from parsed JSON, or :class:`AttachmentShapeError` saying why."""
    where = f"attachments[{index}]"
    if not isinstance(value, dict):
        raise AttachmentShapeError(f"{where} must be a JSON object")
    kind = value.get("type")
    if kind not in _FIELDS:
        raise AttachmentShapeError(f"{where}.type must be 'image' or 'text'")
    cls, names, required = _FIELDS[kind]
    missing = [w for w in required if w not in value]
    if missing:
        raise AttachmentShapeError(f"{where} needs {', '.join(missing)}")
    args: dict[str, Any] = {}
    for wire_name, attr in names.items():
        if wire_name not in value:
            continue
        field = value[wire_name]
        if not isinstance(field, str) and not (attr == "name" and field is None):
            raise AttachmentShapeError(f"{where}.{wire_name} must be a string")
        args[attr] = field
    try:
        attachment: Attachment = cls(**args)
    except ValueError as exc:
        raise AttachmentShapeError(f"{where}: {exc}") from None
    return attachment


def structure_attachments(value: object, _type: object = None) -> Attachments:
    """The ``attachments`` list of a ``user_message`` (a JSON array), strictly."""
    if not isinstance(value, list):
        raise AttachmentShapeError("attachments must be a JSON array")
    return tuple(structure_attachment(item, i) for i, item in enumerate(value))


def unstructure_attachment(attachment: Attachment) -> dict[str, Any]:
    """An attachment as its JSON object (``type`` first, no ``name`` when it has none)."""
    if isinstance(attachment, TextAttachment):
        return {"type": TEXT, "name": attachment.name, "text": attachment.text}
    body: dict[str, Any] = {"type": IMAGE, "mediaType": attachment.media_type}
    if attachment.name is not None:
        body["name"] = attachment.name
    body["data"] = attachment.data
    return body


def unstructure_attachments(attachments: Attachments) -> list[dict[str, Any]]:
    """The ``attachments`` array for a frame."""
    return [unstructure_attachment(a) for a in attachments]
