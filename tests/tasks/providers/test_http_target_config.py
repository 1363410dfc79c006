"""The targets file of ``http/<name>`` targets: every problem names the file, the target and
the field, before any call."""

from __future__ import annotations

from pathlib import Path

import pytest

from tasks.errors import ProviderConfigError
from tasks.providers.http_target import HTTPTargetProvider


def write_targets(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "targets.toml"
    path.write_text(text)
    return path


BAD_TARGETS = [
    ('[targets."bad name"]\nurl = "https://x"\nresponse = { text = "$.a" }',
     "target name 'bad name' must be"),
    ('[targets.rag]\nurl = "ftp://x.example/a"\nresponse = { text = "$.a" }',
     "[targets.rag].url must be an http:// or https:// URL"),
    ('[targets.rag]\nurl = "https://u:p@x.example/a"\nresponse = { text = "$.a" }',
     "[targets.rag].url must not hold credentials"),
    ('[targets.rag]\nresponse = { text = "$.a" }', "[targets.rag].url is required"),
    ('[targets.rag]\nurl = "https://x.example"', "[targets.rag].response must be a table"),
    ('[targets.rag]\nurl = "https://x.example"\nresponse = { text = "$.[" }',
     "[targets.rag].response.text: not a JSONPath"),
    ('[targets.rag]\nurl = "https://x.example"\nresponse = { text = "$.a", cost = "$.c" }',
     "[targets.rag].response: unknown field(s) cost"),
    ('[targets.rag]\nurl = "https://x.example"\nresponse = { text = "$.a" }\n'
     'body = { q = "{{question}}" }', "[targets.rag].body.q: unknown placeholder {{question}}"),
    ('[targets.rag]\nurl = "https://x.example"\nresponse = { text = "$.a" }\n'
     "body = '{\"q\": '", "[targets.rag].body: a string body must be JSON"),
    ('[targets.rag]\nurl = "https://x.example"\nresponse = { text = "$.a" }\nmethod = "GET"\n'
     'body = { q = "{{input}}" }', "[targets.rag].body: a GET request has no body"),
    ('[targets.rag]\nurl = "https://x.example"\nresponse = { text = "$.a" }\n'
     'headers = { Authorization = "{env:bad-name}" }',
     "[targets.rag].headers.Authorization: {env:bad-name} must name an environment variable"),
    ('[targets.rag]\nurl = "https://x.example"\nresponse = { text = "$.a" }\n'
     'headers = { "Bad Header" = "x" }', "[targets.rag].headers.Bad Header: not a valid header"),
    ('[targets.rag]\nurl = "https://x.example"\nresponse = { text = "$.a" }\ntimeout_s = 0',
     "[targets.rag].timeout_s must be a number of seconds"),
    ('[targets.rag]\nurl = "https://x.example"\nresponse = { text = "$.a" }\n'
     'limits = { rps = 3 }', "[targets.rag].limits: unknown limit(s) rps"),
    ('[targets.rag]\nurl = "https://x.example"\nresponse = { text = "$.a" }\nretries = 3',
     "[targets.rag]: unknown field(s) retries"),
    ('[target.rag]\nurl = "https://x.example"', "unknown top-level key(s) target"),
    ('[targets.rag\n', "not a valid targets file (Expected ']' at the end of a table "
     "declaration (at line 1, column 13))"),
]


@pytest.mark.parametrize(("text", "expected"), BAD_TARGETS)
def test_a_bad_targets_file_names_the_file_target_and_field(tmp_path: Path, text: str,
                                                            expected: str) -> None:
    path = write_targets(tmp_path, text)
    with pytest.raises(ProviderConfigError) as info:
        HTTPTargetProvider(targets_file=path)
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)


def test_a_missing_or_huge_targets_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ProviderConfigError, match="targets file .*nope.toml does not exist: "
                       r"http/<name> targets are defined there \(set PLUMBLINE_TARGETS_FILE"):
        HTTPTargetProvider(targets_file=tmp_path / "nope.toml")
    big = write_targets(tmp_path, "# " + "x" * (1024 * 1024) + "\n")
    with pytest.raises(ProviderConfigError, match="bytes; the limit is 1048576"):
        HTTPTargetProvider(targets_file=big)
