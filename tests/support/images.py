"""Tiny images for tests: a real PNG of one colour, and files that only start like an image."""

from __future__ import annotations

import struct
import zlib


def png_bytes(width: int = 4, height: int = 3, rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A valid 8-bit RGB PNG filled with ``rgb``."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    rows = b"".join(b"\x00" + bytes(rgb) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


# The first bytes of each other supported format (enough for a type check, not a decoder).
JPEG_HEAD = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00" + b"\x00" * 32
GIF_HEAD = b"GIF89a" + struct.pack("<HH", 7, 5) + b"\x00" * 32
WEBP_HEAD = b"RIFF" + struct.pack("<I", 40) + b"WEBPVP8 " + b"\x00" * 32
