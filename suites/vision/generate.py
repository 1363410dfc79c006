"""Generate the vision suite: tiny PNG charts, shapes, dots and text, and the cases that ask
about them. Standard library only (``zlib`` and ``struct`` write the PNGs).

Every answer follows from the drawing code here (the tallest bar is the largest height drawn,
the dot count is the number of dots drawn), never from someone looking at a picture. Run
``python suites/vision/generate.py`` to rewrite ``images/*.png`` and ``cases.jsonl``, and
``--check`` to verify the committed files show what this script draws (pixels are compared, not
compressed bytes, because another zlib may compress the same pixels differently).
"""

from __future__ import annotations

import base64
import json
import struct
import sys
import zlib
from itertools import pairwise
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
CASES_FILE = HERE / "cases.jsonl"
IMAGES = HERE / "images"

Color = tuple[int, int, int]
WHITE: Color = (255, 255, 255)
BLACK: Color = (0, 0, 0)
RED: Color = (220, 30, 30)
GREEN: Color = (30, 160, 60)
BLUE: Color = (30, 80, 220)
ORANGE: Color = (240, 140, 20)


class Canvas:
    """An RGB image in memory with the few drawing operations the cases need."""

    def __init__(self, width: int, height: int, background: Color = WHITE) -> None:
        self.width, self.height = width, height
        self.px = bytearray(bytes(background) * (width * height))

    def dot(self, x: int, y: int, color: Color) -> None:
        if 0 <= x < self.width and 0 <= y < self.height:
            i = (y * self.width + x) * 3
            self.px[i:i + 3] = bytes(color)

    def rect(self, x0: int, y0: int, x1: int, y1: int, color: Color) -> None:
        for y in range(y0, y1):
            for x in range(x0, x1):
                self.dot(x, y, color)

    def circle(self, cx: int, cy: int, r: int, color: Color) -> None:
        for y in range(cy - r, cy + r + 1):
            for x in range(cx - r, cx + r + 1):
                if (x - cx) ** 2 + (y - cy) ** 2 <= r * r:
                    self.dot(x, y, color)

    def triangle(self, a: tuple[int, int], b: tuple[int, int], c: tuple[int, int],
                 color: Color) -> None:
        def side(p: tuple[int, int], q: tuple[int, int], x: int, y: int) -> int:
            return (q[0] - p[0]) * (y - p[1]) - (q[1] - p[1]) * (x - p[0])

        for y in range(self.height):
            for x in range(self.width):
                s = (side(a, b, x, y), side(b, c, x, y), side(c, a, x, y))
                if all(v >= 0 for v in s) or all(v <= 0 for v in s):
                    self.dot(x, y, color)

    def line(self, p: tuple[int, int], q: tuple[int, int], color: Color, width: int = 3) -> None:
        steps = max(abs(q[0] - p[0]), abs(q[1] - p[1]), 1)
        for i in range(steps + 1):
            x = p[0] + (q[0] - p[0]) * i // steps
            y = p[1] + (q[1] - p[1]) * i // steps
            self.rect(x - width // 2, y - width // 2, x + width // 2 + 1, y + width // 2 + 1,
                      color)

    def text(self, x: int, y: int, text: str, color: Color, scale: int) -> None:
        for ch in text:
            for row, bits in enumerate(FONT[ch]):
                for col in range(5):
                    if bits >> (4 - col) & 1:
                        self.rect(x + col * scale, y + row * scale, x + (col + 1) * scale,
                                  y + (row + 1) * scale, color)
            x += 6 * scale

    def rows(self) -> bytes:
        """The PNG scanlines: each row prefixed with filter type 0 (none)."""
        stride = self.width * 3
        return b"".join(b"\x00" + bytes(self.px[y * stride:(y + 1) * stride])
                        for y in range(self.height))


# A 5x7 bitmap font: one int per row, the high bit of five is the leftmost pixel.
FONT: dict[str, tuple[int, ...]] = {
    "A": (0b01110, 0b10001, 0b10001, 0b11111, 0b10001, 0b10001, 0b10001),
    "C": (0b01110, 0b10001, 0b10000, 0b10000, 0b10000, 0b10001, 0b01110),
    "T": (0b11111, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100, 0b00100),
    "5": (0b11111, 0b10000, 0b11110, 0b00001, 0b00001, 0b10001, 0b01110),
    "7": (0b11111, 0b00001, 0b00010, 0b00100, 0b01000, 0b01000, 0b01000),
    "+": (0b00000, 0b00100, 0b00100, 0b11111, 0b00100, 0b00100, 0b00000),
    " ": (0, 0, 0, 0, 0, 0, 0),
}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def _stored_zlib(data: bytes) -> bytes:
    """A zlib stream of uncompressed (stored) deflate blocks: the same bytes from any zlib,
    so an image inlined as a data URL in ``cases.jsonl`` is reproducible byte for byte."""
    out = bytearray(b"\x78\x01")
    for start in range(0, max(len(data), 1), 65535):
        block = data[start:start + 65535]
        final = 1 if start + 65535 >= len(data) else 0
        out += struct.pack("<BHH", final, len(block), len(block) ^ 0xFFFF) + block
    return bytes(out + struct.pack(">I", zlib.adler32(data) & 0xFFFFFFFF))


def png(canvas: Canvas, *, stored: bool = False) -> bytes:
    """An 8-bit RGB PNG of the canvas."""
    raw = canvas.rows()
    ihdr = struct.pack(">IIBBBBB", canvas.width, canvas.height, 8, 2, 0, 0, 0)
    idat = _stored_zlib(raw) if stored else zlib.compress(raw, 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat)
            + _chunk(b"IEND", b""))


def png_rows(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and decoded scanlines of a PNG this script wrote (for ``--check``)."""
    pos, width, height, idat = 8, 0, 0, b""
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos:pos + 4])
        kind, body = data[pos + 4:pos + 8], data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    return width, height, zlib.decompress(idat)


# --- the pictures: each returns the canvas and the facts a case asks about -------------------

BAR_COLORS = (("red", RED), ("green", GREEN), ("blue", BLUE), ("orange", ORANGE))
BAR_HEIGHTS = (45, 70, 95, 30)
DOTS = (5, 3, 8)


def bars() -> Canvas:
    c = Canvas(160, 120)
    c.rect(10, 110, 150, 112, BLACK)  # the axis
    for i, ((_, color), h) in enumerate(zip(BAR_COLORS, BAR_HEIGHTS, strict=True)):
        c.rect(20 + i * 33, 110 - h, 20 + i * 33 + 24, 110, color)
    return c


def tallest_bar() -> str:
    return BAR_COLORS[BAR_HEIGHTS.index(max(BAR_HEIGHTS))][0]


def rising_line() -> Canvas:
    c = Canvas(160, 120)
    c.rect(10, 10, 12, 110, BLACK)
    c.rect(10, 108, 150, 110, BLACK)
    points = [(15, 100), (50, 80), (85, 65), (120, 40), (150, 15)]
    for p, q in pairwise(points):
        c.line(p, q, BLUE)
    return c


def circle() -> Canvas:
    c = Canvas(96, 96)
    c.circle(48, 48, 34, BLUE)
    return c


def triangle() -> Canvas:
    c = Canvas(96, 96)
    c.triangle((48, 10), (86, 84), (10, 84), GREEN)
    return c


def square() -> Canvas:
    c = Canvas(96, 96)
    c.rect(20, 20, 76, 76, RED)
    return c


def dots(n: int) -> Canvas:
    c = Canvas(160, 48)
    for i in range(n):
        c.circle(12 + i * 19, 24, 7, BLACK)
    return c


def word() -> Canvas:
    c = Canvas(120, 56)
    c.text(16, 14, "CAT", BLACK, 5)
    return c


def sum_text() -> Canvas:
    c = Canvas(160, 48)
    c.text(12, 10, "7 + 5", BLACK, 4)
    return c


def swatch() -> Canvas:
    return Canvas(8, 8, GREEN)


PICTURES = {
    "bars.png": bars, "line.png": rising_line, "circle.png": circle,
    "triangle.png": triangle, "square.png": square, "word.png": word, "sum.png": sum_text,
    **{f"dots-{n}.png": (lambda n=n: dots(n)) for n in DOTS},
}


def _case(cid: str, category: str, parts: list[dict[str, Any]], ideal: list[str],
          assertion: dict[str, Any], example: str) -> dict[str, Any]:
    return {"id": cid, "category": category, "input": [{"role": "user", "content": parts}],
            "ideal": ideal, "assertion": assertion,
            "metadata": {"difficulty": "easy", "tags": ["vision", category],
                         "example_pass": example}}


def _text(text: str) -> dict[str, str]:
    return {"type": "text", "text": text}


def _image(name: str) -> dict[str, str]:
    return {"type": "image", "path": f"images/{name}"}


def cases() -> list[dict[str, Any]]:
    word_ = {"type": "contains", "whole_word": True}
    swatch_url = "data:image/png;base64," + base64.b64encode(png(swatch(), stored=True)).decode()
    most = max(range(len(DOTS)), key=lambda i: DOTS[i])
    return [
        _case("vision-001", "chart", [
            _text("This bar chart has four bars. What is the colour of the tallest bar? Answer "
                  "with one colour word."), _image("bars.png")],
            [tallest_bar()], word_, f"The tallest bar is {tallest_bar()}."),
        _case("vision-002", "chart", [
            _text("Does the line in this chart go up or down from left to right? Answer up or "
                  "down."), _image("line.png")],
            ["up"], word_, "It goes up."),
        _case("vision-003", "shape", [
            _text("What shape is drawn in the image? Answer with one word."),
            _image("circle.png")], ["circle"], word_, "A circle."),
        _case("vision-004", "shape", [
            _text("What shape is drawn in the image? Answer with one word."),
            _image("triangle.png")], ["triangle"], word_, "Triangle"),
        _case("vision-005", "shape", [
            _image("square.png"), _text("What colour is the square? Answer with one word.")],
            ["red"], word_, "Red."),
        _case("vision-006", "text", [
            _text("What word is written in the image? Answer with the word only."),
            _image("word.png")], ["CAT"], word_, "CAT"),
        _case("vision-007", "text", [
            _text("The image shows a sum. What is its result? Answer with the number."),
            _image("sum.png")], ["12"], {"type": "numeric", "pick": "last"}, "7 + 5 = 12"),
        _case("vision-008", "counting", [
            _text("How many black dots are in the image? Answer with a number."),
            _image(f"dots-{DOTS[0]}.png")], [str(DOTS[0])], {"type": "numeric", "pick": "last"},
            f"There are {DOTS[0]} dots."),
        _case("vision-009", "counting", [
            _text("Here are three images."), _image(f"dots-{DOTS[0]}.png"),
            _image(f"dots-{DOTS[1]}.png"), _image(f"dots-{DOTS[2]}.png"),
            _text("Which one shows the most dots: the first, the second or the third? Answer "
                  "with one word.")],
            [("first", "second", "third")[most]], word_,
            f"The {('first', 'second', 'third')[most]} one."),
        _case("vision-010", "shape", [
            _text("What colour fills this image? Answer with one word."),
            {"type": "image", "url": swatch_url}], ["green"], word_, "Green"),
    ]


def render() -> str:
    return "".join(json.dumps(c, ensure_ascii=False) + "\n" for c in cases())


def check() -> list[str]:
    """What differs between the committed files and what this script draws."""
    stale = []
    for name, draw in PICTURES.items():
        path = IMAGES / name
        canvas = draw()
        if not path.is_file() or png_rows(path.read_bytes()) != (
                canvas.width, canvas.height, canvas.rows()):
            stale.append(str(path))
    if not CASES_FILE.is_file() or CASES_FILE.read_text(encoding="utf-8") != render():
        stale.append(str(CASES_FILE))
    return stale


def main(argv: list[str]) -> int:
    if "--check" in argv:
        stale = check()
        for path in stale:
            print(f"{path} is out of date: run {Path(__file__).name}", file=sys.stderr)
        if not stale:
            print(f"{HERE}: up to date")
        return 1 if stale else 0
    IMAGES.mkdir(exist_ok=True)
    for name, draw in PICTURES.items():
        (IMAGES / name).write_bytes(png(draw()))
    CASES_FILE.write_text(render(), encoding="utf-8")
    print(f"wrote {len(PICTURES)} images and {len(cases())} cases to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
