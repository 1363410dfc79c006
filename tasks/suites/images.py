"""Image parts of a case: read from a file inside the suite folder or from a data URL, checked,
and held as base64 with their media type and sha256, so a provider sends them without disk I/O.

A resolved part is a plain dict (``tasks/providers`` cannot import this package, and the run
engine's cache key hashes messages as JSON)::

    {"type": "image", "media_type": "image/png", "data": "<base64>", "sha256": "<hex>",
     "source": "images/chart.png"}

The type is decided by the file's first bytes, never by its name: a renamed text file is refused
here rather than by the provider in the middle of a run.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Any

# Anthropic refuses an image over 5 MB and OpenAI's per-request cap is larger, so one limit that
# every provider accepts; a suite image this big is almost always a mistake (a photo, not a test).
MAX_IMAGE_BYTES = 5 * 1024 * 1024
# Far more than a test case needs; keeps one line from holding a request no API accepts.
MAX_IMAGES_PER_MESSAGE = 20

MEDIA_TYPES = ("image/png", "image/jpeg", "image/gif", "image/webp")
_SUPPORTED = "PNG, JPEG, GIF or WEBP"
# data:<media type>;base64,<payload>; only base64 data URLs (a percent-encoded image is not one
# anybody writes), no parameters, no whitespace in the payload.
_DATA_URL = re.compile(r"data:([a-z]+/[a-z0-9.+-]+);base64,([A-Za-z0-9+/]*={0,2})")


class ImageProblem(ValueError):
    """One bad image part; the parser adds the file, line and field."""


def sniff_media_type(data: bytes) -> str | None:
    """The image type from its magic bytes, or None when it is none of the four supported."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


def image_part(data: bytes, source: str) -> dict[str, Any]:
    """A resolved image part from checked bytes (their type sniffed again, never trusted)."""
    media_type = sniff_media_type(data)
    if media_type is None:
        raise ImageProblem(f"not a {_SUPPORTED} image")
    return {"type": "image", "media_type": media_type,
            "data": base64.b64encode(data).decode("ascii"),
            "sha256": hashlib.sha256(data).hexdigest(), "source": source}


def read_image_file(root: Path, rel: Any, max_bytes: int = MAX_IMAGE_BYTES) -> dict[str, Any]:
    """The image at ``rel`` inside the suite folder ``root``, checked; ``ImageProblem`` if not."""
    if not isinstance(rel, str) or not rel.strip() or "\x00" in rel:
        raise ImageProblem("must be a non-empty file path relative to the suite folder")
    if (PurePosixPath(rel).is_absolute() or PureWindowsPath(rel).is_absolute()
            or PureWindowsPath(rel).drive):
        raise ImageProblem(f"{rel!r} is absolute; give a path relative to the suite folder")
    if ".." in PurePosixPath(rel.replace("\\", "/")).parts:
        raise ImageProblem(f"{rel!r} leaves the suite folder ('..' is not allowed)")
    base = root.resolve()
    target = (base / rel).resolve()
    # A symlink inside the folder may still point outside it; the resolved path decides.
    if not target.is_relative_to(base):
        raise ImageProblem(f"{rel!r} resolves to {target}, outside the suite folder {base}")
    if not target.is_file():
        raise ImageProblem(f"image file not found: {target}")
    try:
        with target.open("rb") as fh:
            # One byte past the limit is enough to know it is over, even if the file grows.
            data = fh.read(max_bytes + 1)
            size = max(len(data), target.stat().st_size)
    except OSError as exc:
        raise ImageProblem(f"cannot read {target}: {exc.strerror or exc}") from None
    if size > max_bytes:
        raise ImageProblem(f"{rel!r} is {size:,} bytes, over the {max_bytes:,}-byte image limit")
    if sniff_media_type(data) is None:
        raise ImageProblem(f"{rel!r} is not a {_SUPPORTED} image (judged by its content, "
                           "not its name)")
    return image_part(data, rel)


def read_data_url(url: Any, max_bytes: int = MAX_IMAGE_BYTES) -> dict[str, Any]:
    """The image in a ``data:image/...;base64,...`` URL, checked; ``ImageProblem`` if not."""
    if not isinstance(url, str):
        raise ImageProblem("must be a string: a data:image/...;base64,... URL")
    if not url.startswith("data:"):
        # Fetching a remote image at run time would make the suite's hash meaningless.
        raise ImageProblem("only data: URLs are accepted (put the file in the suite folder and "
                           "use \"path\" instead)")
    m = _DATA_URL.fullmatch(url)
    if m is None:
        raise ImageProblem("malformed data URL: expected data:<media type>;base64,<base64>")
    declared, payload = m[1], m[2]
    if declared not in MEDIA_TYPES:
        raise ImageProblem(f"unsupported media type {declared!r} (supported: "
                           f"{', '.join(MEDIA_TYPES)})")
    # Checked before decoding, so an oversized line never costs its decoded copy.
    if len(payload) // 4 * 3 > max_bytes + 2:
        raise ImageProblem(f"the data URL's image is over the {max_bytes:,}-byte image limit")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageProblem(f"malformed data URL: invalid base64 ({exc})") from None
    if len(data) > max_bytes:
        raise ImageProblem(f"the data URL's image is {len(data):,} bytes, over the "
                           f"{max_bytes:,}-byte image limit")
    actual = sniff_media_type(data)
    if actual is None:
        raise ImageProblem(f"the data URL's bytes are not a {_SUPPORTED} image")
    if actual != declared:
        raise ImageProblem(f"the data URL says {declared} but its bytes are {actual}")
    return image_part(data, "data URL")


def resolve_content(
    content: list[Any], root: Path, where: str, max_bytes: int = MAX_IMAGE_BYTES
) -> tuple[list[dict[str, Any]], list[tuple[str, str]]]:
    """A user message's content parts, images read and checked.

    Returns the resolved parts and (field, message) problems; ``where`` is the field of the
    content list (``input[1].content``).
    """
    parts: list[dict[str, Any]] = []
    problems: list[tuple[str, str]] = []
    for i, part in enumerate(content):
        field = f"{where}[{i}]"
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            if set(part) != {"type", "text"} or not isinstance(part["text"], str) \
                    or not part["text"].strip():
                problems.append((field, 'must be {"type": "text", "text": "<non-empty text>"}'))
                continue
            parts.append({"type": "text", "text": part["text"]})
        elif kind == "image":
            keys = set(part) - {"type"}
            if keys not in ({"path"}, {"url"}):
                problems.append((field, 'must be {"type": "image", "path": "<file>"} or '
                                 '{"type": "image", "url": "data:image/...;base64,..."}'))
                continue
            key = keys.pop()
            try:
                parts.append(read_image_file(root, part["path"], max_bytes) if key == "path"
                             else read_data_url(part["url"], max_bytes))
            except ImageProblem as exc:
                problems.append((f"{field}.{key}", str(exc)))
        else:
            problems.append((field, 'must be an object with "type": "text" or "image"'))
    images = sum(p["type"] == "image" for p in parts)
    if images > MAX_IMAGES_PER_MESSAGE:
        problems.append((where, f"{images} images; at most {MAX_IMAGES_PER_MESSAGE} per message"))
    return parts, problems
