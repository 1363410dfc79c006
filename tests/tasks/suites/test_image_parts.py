"""Image parts in cases: what loads, what each kind of bad image is told as (file, line, field),
and how the suite hash follows the image bytes."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from flows.cli.app import main
from tasks.catalog import load_suite
from tasks.errors import SuiteError
from tasks.suites.images import MAX_IMAGE_BYTES, ImageProblem, read_data_url
from tasks.suites.model import Case, suite_hash
from tests.support.helpers import write_suite
from tests.support.images import GIF_HEAD, JPEG_HEAD, WEBP_HEAD, png_bytes

TEXT = {"type": "text", "text": "What colour is this?"}


def image_case(cid: str, *parts: dict[str, Any], role: str = "user") -> dict[str, Any]:
    return {"id": cid, "input": [{"role": role, "content": [TEXT, *parts]}], "ideal": "red",
            "assertion": {"type": "contains"}}


def suite_with(folder: Path, cases: list[dict[str, Any]],
               images: dict[str, bytes] | None = None) -> Path:
    for name, data in (images or {}).items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return write_suite(folder, cases)


def data_url(data: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode()


def problems_of(folder: Path) -> list[tuple[int | None, str | None, str]]:
    with pytest.raises(SuiteError) as err:
        load_suite(folder)
    for p in err.value.problems:
        assert p.file == str(folder / "cases.jsonl")  # every image problem names the case file
    return [(p.line, p.field, p.message) for p in err.value.problems]


def test_file_and_data_url_images_load_as_typed_base64_parts(tmp_path: Path) -> None:
    red = png_bytes(rgb=(255, 0, 0))
    folder = suite_with(tmp_path / "s", [
        image_case("c-1", {"type": "image", "path": "images/red.png"}),
        image_case("c-2", {"type": "image", "url": data_url(red)}),
        # The type comes from the bytes: a GIF named .png is a GIF, a JPEG named .bin a JPEG.
        image_case("c-3", {"type": "image", "path": "images/really-a-gif.png"},
                   {"type": "image", "path": "images/photo.bin"},
                   {"type": "image", "path": "images/pic.webp"}),
    ], {"images/red.png": red, "images/really-a-gif.png": GIF_HEAD,
        "images/photo.bin": JPEG_HEAD, "images/pic.webp": WEBP_HEAD})
    suite = load_suite(folder)
    first = suite.cases[0].messages()[0]["content"]
    assert first[0] == TEXT
    assert first[1]["type"] == "image" and first[1]["media_type"] == "image/png"
    assert base64.b64decode(first[1]["data"]) == red
    assert first[1]["sha256"] == hashlib.sha256(red).hexdigest()
    assert suite.cases[1].messages()[0]["content"][1]["data"] == first[1]["data"]
    assert [p["media_type"] for p in suite.cases[2].messages()[0]["content"][1:]] == [
        "image/gif", "image/jpeg", "image/webp"]
    assert suite.cases[0].has_images and not Case("t", "text", {"type": "x"}).has_images
    # What a judge or a person reads: the file's name, never the bytes.
    assert suite.cases[0].input_text() == ("user: What colour is this? "
                                          "[image: images/red.png (image/png)]")


def test_every_bad_image_is_named_with_file_line_and_field(tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(png_bytes())
    folder = tmp_path / "s"
    folder.mkdir()
    os.symlink(outside, folder / "link.png")
    jpeg_as_png = data_url(JPEG_HEAD, "image/png")
    cases = [
        image_case("c-01", {"type": "image", "path": "images/missing.png"}),           # 1
        image_case("c-02", {"type": "image", "path": "../outside.png"}),               # 2
        image_case("c-03", {"type": "image", "path": str(outside)}),                   # 3
        image_case("c-04", {"type": "image", "path": "link.png"}),                     # 4
        image_case("c-05", {"type": "image", "path": "notes.png"}),                    # 5
        image_case("c-06", {"type": "image", "path": "huge.png"}),                     # 6
        image_case("c-07", {"type": "image", "url": "data:image/png;base64,@@@"}),     # 7
        image_case("c-08", {"type": "image", "url": "data:image/png;base64,abcde"}),   # 8
        image_case("c-09", {"type": "image", "url": "https://example.com/a.png"}),     # 9
        image_case("c-10", {"type": "image", "url": jpeg_as_png}),                     # 10
        image_case("c-11", {"type": "image", "url": data_url(b"hello", "text/plain")}),
        image_case("c-12", {"type": "image", "path": "ok.png"}, role="system"),        # 12
        image_case("c-13", {"type": "image", "path": "ok.png", "url": "data:x"}),      # 13
        image_case("c-14", {"type": "audio", "path": "ok.png"}),                       # 14
        image_case("c-15", {"type": "image", "url": data_url(b"BM" + b"\0" * 40, "image/png")}),
        image_case("c-16", {"type": "image", "path": "ok.png"}),                       # 16: fine
        {**image_case("c-17"), "input": [{"role": "user", "content": []}]},            # 17
        image_case("c-18", {"type": "text", "text": "  "}),                            # 18
        image_case("c-19", *[{"type": "image", "path": "ok.png"}] * 21),               # 19
    ]
    huge = png_bytes() + b"\0" * (MAX_IMAGE_BYTES + 1 - len(png_bytes()))
    suite_with(folder, cases, {"notes.png": b"just some text\n", "huge.png": huge,
                               "ok.png": png_bytes()})
    found = problems_of(folder)
    by_line = {line: (field, message) for line, field, message in found}
    assert len(found) == len(by_line) == 18
    path_field, url_field = "input[0].content[1].path", "input[0].content[1].url"
    expect = {
        1: (path_field, "image file not found: " + str(folder / "images/missing.png")),
        2: (path_field, "leaves the suite folder"),
        3: (path_field, "is absolute"),
        4: (path_field, "outside the suite folder"),
        5: (path_field, "is not a PNG, JPEG, GIF or WEBP image"),
        6: (path_field, f"{MAX_IMAGE_BYTES + 1:,} bytes, over the 5,242,880-byte image limit"),
        7: (url_field, "malformed data URL"),
        8: (url_field, "invalid base64"),
        9: (url_field, "only data: URLs"),
        10: (url_field, "says image/png but its bytes are image/jpeg"),
        11: (url_field, "unsupported media type 'text/plain'"),
        12: ("input[0].content", "allowed in user messages only"),
        13: ("input[0].content[1]", 'must be {"type": "image", "path"'),
        14: ("input[0].content[1]", '"type": "text" or "image"'),
        15: (url_field, "bytes are not a PNG, JPEG, GIF or WEBP image"),
        17: ("input[0].content", "must not be an empty list of parts"),
        18: ("input[0].content[1]", 'must be {"type": "text", "text"'),
        19: ("input[0].content", "21 images; at most 20 per message"),
    }
    for line, (field, fragment) in expect.items():
        assert by_line[line][0] == field, (line, by_line[line])
        assert fragment in by_line[line][1], (line, by_line[line])


def test_an_image_at_the_limit_loads(tmp_path: Path) -> None:
    exact = png_bytes() + b"\0" * (MAX_IMAGE_BYTES - len(png_bytes()))
    folder = suite_with(tmp_path / "s", [image_case("c-1", {"type": "image", "path": "a.png"})],
                        {"a.png": exact})
    assert len(load_suite(folder).cases) == 1


def test_cli_validate_names_the_image_problems(tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    folder = suite_with(tmp_path / "s", [
        image_case("c-1", {"type": "image", "path": "a.png"}),
        image_case("c-2", {"type": "image", "path": "gone.png"}),
    ], {"a.png": png_bytes()})
    assert main(["suites", "validate", str(folder)]) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'cases.jsonl'}:2: [input[0].content[1].path] image file not found" in err


def test_hash_follows_the_image_bytes_not_the_file_name(tmp_path: Path) -> None:
    red, redder = png_bytes(rgb=(255, 0, 0)), png_bytes(rgb=(254, 0, 0))
    base = load_suite(suite_with(tmp_path / "a", [image_case(
        "c-1", {"type": "image", "path": "img/x.png"})], {"img/x.png": red}))
    one_pixel = load_suite(suite_with(tmp_path / "b", [image_case(
        "c-1", {"type": "image", "path": "img/x.png"})], {"img/x.png": redder}))
    renamed = load_suite(suite_with(tmp_path / "c", [image_case(
        "c-1", {"type": "image", "path": "pictures/red.png"})], {"pictures/red.png": red}))
    inline = load_suite(suite_with(tmp_path / "d", [image_case(
        "c-1", {"type": "image", "url": data_url(red)})]))
    assert one_pixel.hash != base.hash
    # The same bytes are the same prompt, however the case points at them.
    assert renamed.hash == base.hash == inline.hash
    # Editing the image file in place changes the hash the next time the suite loads.
    (tmp_path / "a" / "img" / "x.png").write_bytes(redder)
    assert load_suite(tmp_path / "a").hash == one_pixel.hash
    # The canonical form carries the digest, never the bytes.
    assert base64.b64encode(red).decode() not in json.dumps(base.cases[0].canonical())


def test_text_only_hashes_are_unchanged_by_image_support() -> None:
    """Results compare only under equal suite hashes: existing suites must keep theirs. The
    value is what the code before image support computed for these two cases."""
    a = Case(id="c-1", input="2 + 2 * 2?", assertion={"type": "numeric"}, ideal=["6"],
             category="reasoning", metadata={"difficulty": "easy"})
    b = Case(id="c-2", input=[{"role": "system", "content": "Be terse."},
                              {"role": "user", "content": "Capital of France?"}],
             assertion={"type": "contains"}, ideal="Paris")
    assert suite_hash([a, b]) == (
        "sha256:8c0c117ee116db3659e8ab40a5ea69ec38b72250188e920092dac998972d7150")


def test_image_paths_are_relative_to_the_suite_folder_not_the_cases_file(tmp_path: Path
                                                                        ) -> None:
    folder = suite_with(tmp_path / "s", [], {"a.png": png_bytes()})
    (folder / "data").mkdir()
    (folder / "data" / "cases.jsonl").write_text(
        json.dumps(image_case("c-1", {"type": "image", "path": "a.png"})) + "\n")
    (folder / "suite.toml").write_text('name = "s"\nversion = "1"\ncases = "data/cases.jsonl"\n')
    assert load_suite(folder).cases[0].has_images


def test_a_pramana_tier_may_use_images_beside_its_manifest(tmp_path: Path) -> None:
    folder = tmp_path / "v1.0"
    (folder / "tiers").mkdir(parents=True)
    (folder / "img.png").write_bytes(png_bytes())
    (folder / "manifest.toml").write_text(
        '[suite]\nversion = "1.0"\n\n[tiers.cheap]\nfile = "tiers/cheap.jsonl"\n')
    (folder / "tiers" / "cheap.jsonl").write_text(
        json.dumps(image_case("p-1", {"type": "image", "path": "img.png"})) + "\n"
        + json.dumps(image_case("p-2", {"type": "image", "path": "tiers/none.png"})) + "\n")
    with pytest.raises(SuiteError) as err:
        load_suite(folder)
    (problem,) = err.value.problems
    assert (problem.file, problem.line) == (str(folder / "tiers" / "cheap.jsonl"), 2)
    assert "image file not found" in problem.message


def test_a_data_url_over_the_limit_is_refused_before_and_after_decoding() -> None:
    image = png_bytes(width=20, height=20)
    assert read_data_url(data_url(image), max_bytes=len(image))["media_type"] == "image/png"
    with pytest.raises(ImageProblem, match=f"{len(image):,} bytes, over the {len(image) - 1:,}"):
        read_data_url(data_url(image), max_bytes=len(image) - 1)
    with pytest.raises(ImageProblem, match="over the 10-byte image limit"):
        read_data_url(data_url(image), max_bytes=10)
