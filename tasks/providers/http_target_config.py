"""The targets file of ``http/<name>`` targets: reading and checking it, filling a body template,
and resolving header secrets at call time.

Everything in the file is checked when a run starts (before any call), and every problem names
the file, the target and the field: ``targets.toml: [targets.rag].response.text: ...``. Header
values may name an environment variable (``{env:NAME}``) or a Prefect Secret block
(``{secret:block-name}``); only the names are kept here, the values are looked up by the
process that makes the calls, when it makes them (``resolve_headers``).
"""

from __future__ import annotations

import json
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jsonpath_ng import JSONPath
from jsonpath_ng.ext import parse as parse_jsonpath

from tasks.errors import ConfigError, ProviderConfigError
from tasks.providers.keys import resolve_api_key
from tasks.providers.limits import ProviderLimits
from tasks.providers.target_call import PLACEHOLDERS

DEFAULT_TARGETS_FILE = Path("targets.toml")

# Bounds: the file is read whole, and each target's template is walked on every call.
MAX_FILE_BYTES = 1024 * 1024
MAX_TARGETS = 500
MAX_HEADERS = 64
MAX_HEADER_VALUE = 8192
MAX_URL = 2048
MAX_PATH = 512
MAX_DEPTH = 32
MAX_TIMEOUT_S = 3600.0

TARGET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# RFC 9110 token characters.
_HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]{1,128}")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
# Prefect block names: lowercase letters, digits and dashes.
_BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,127}")
_REFERENCE = re.compile(r"\{(env|secret):([^{}]*)\}")
_PLACEHOLDER = re.compile(r"\{\{\s*([^{}]*?)\s*\}\}")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

_FIELDS = ("url", "method", "headers", "body", "query", "response", "timeout_s", "limits")
_METHODS = ("GET", "POST", "PUT", "PATCH")
_RESPONSE_FIELDS = ("text", "input_tokens", "output_tokens")

# Resolved values shorter than this are not redacted from answers: they would match words.
MIN_REDACT_LEN = 8
REDACTED = "[redacted]"

SecretLoader = Callable[[str], str | None]


@dataclass(frozen=True, eq=False)
class TargetSpec:
    """One ``[targets.<name>]`` table, checked. Header values still hold their references."""

    name: str
    url: str
    method: str
    headers: tuple[tuple[str, str], ...]
    body: Any
    query: dict[str, Any] | None
    response: dict[str, str]
    paths: dict[str, JSONPath] = field(repr=False)
    timeout_s: float | None
    limits: dict[str, Any]
    source: str

    def where(self, field_name: str | None = None) -> str:
        base = f"{self.source}: [targets.{self.name}]"
        return f"{base}.{field_name}" if field_name else base


def load_targets(path: Path) -> dict[str, TargetSpec]:
    """Every target of ``path``; a ``ProviderConfigError`` naming file, target and field."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ProviderConfigError(
            f"targets file {path} does not exist: http/<name> targets are defined there "
            "(set PLUMBLINE_TARGETS_FILE, or see docs/providers.md)") from None
    if size > MAX_FILE_BYTES:
        raise ProviderConfigError(f"targets file {path} is {size} bytes; the limit is "
                                  f"{MAX_FILE_BYTES}")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ProviderConfigError(f"{path}: not a valid targets file ({exc})") from None
    return parse_targets(raw, str(path))


def parse_targets(raw: Mapping[str, Any], source: str) -> dict[str, TargetSpec]:
    unknown = sorted(set(raw) - {"targets"})
    if unknown:
        raise ProviderConfigError(f"{source}: unknown top-level key(s) {', '.join(unknown)} "
                                  "(targets are tables [targets.<name>])")
    tables = raw.get("targets", {})
    if not isinstance(tables, dict):
        raise ProviderConfigError(f"{source}: 'targets' must be a table of [targets.<name>]")
    if len(tables) > MAX_TARGETS:
        raise ProviderConfigError(f"{source}: {len(tables)} targets; the limit is {MAX_TARGETS}")
    specs = {}
    for name, table in tables.items():
        if not TARGET_NAME.fullmatch(name):
            raise ProviderConfigError(
                f"{source}: target name {name[:80]!r} must be 1-64 letters, digits, '.', '_' "
                "or '-', starting with a letter or digit")
        specs[name] = _target(source, name, table)
    return specs


def _target(source: str, name: str, table: Any) -> TargetSpec:
    where = f"{source}: [targets.{name}]"
    if not isinstance(table, dict):
        raise ProviderConfigError(f"{where} must be a table")
    unknown = sorted(set(table) - set(_FIELDS))
    if unknown:
        raise ProviderConfigError(f"{where}: unknown field(s) {', '.join(unknown)} "
                                  f"(allowed: {', '.join(_FIELDS)})")
    method = table.get("method", "POST")
    if not isinstance(method, str) or method.upper() not in _METHODS:
        raise ProviderConfigError(f"{where}.method must be one of {', '.join(_METHODS)}, "
                                  f"got {method!r}")
    method = method.upper()
    body = _body(where, table)
    if method == "GET" and body is not None:
        raise ProviderConfigError(f"{where}.body: a GET request has no body (use query)")
    query = table.get("query")
    if query is not None:
        if not isinstance(query, dict):
            raise ProviderConfigError(f"{where}.query must be a table of parameter = value")
        _check_template(f"{where}.query", query, 0)
    timeout = table.get("timeout_s")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int | float)
                                or not 0 < timeout <= MAX_TIMEOUT_S):
        raise ProviderConfigError(f"{where}.timeout_s must be a number of seconds in "
                                  f"(0, {MAX_TIMEOUT_S:g}], got {timeout!r}")
    limits = table.get("limits", {})
    if not isinstance(limits, dict):
        raise ProviderConfigError(f"{where}.limits must be a table (rpm, tpm, max_in_flight)")
    try:
        ProviderLimits.from_mapping(f"{where}.limits", limits)
    except ConfigError as exc:
        raise ProviderConfigError(str(exc)) from None
    response, paths = _response(where, table.get("response"))
    return TargetSpec(
        name=name, url=_url(where, table.get("url")), method=method,
        headers=_headers(where, table.get("headers", {})), body=body, query=query,
        response=response, paths=paths,
        timeout_s=None if timeout is None else float(timeout), limits=dict(limits),
        source=source,
    )


def _url(where: str, url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise ProviderConfigError(f"{where}.url is required: the http(s) URL to call")
    if len(url) > MAX_URL or _CONTROL.search(url) or " " in url:
        raise ProviderConfigError(f"{where}.url must be at most {MAX_URL} characters, without "
                                  "spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 -- a bad port raises here
    except ValueError as exc:
        raise ProviderConfigError(f"{where}.url is not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ProviderConfigError(f"{where}.url must be an http:// or https:// URL with a host, "
                                  f"got scheme {parts.scheme!r}")
    if parts.username is not None or parts.password is not None:
        # A URL shows up in error messages and logs; credentials belong in headers.
        raise ProviderConfigError(f"{where}.url must not hold credentials (user:password@); put "
                                  "them in a header with {env:NAME} or {secret:block-name}")
    return url


def _headers(where: str, headers: Any) -> tuple[tuple[str, str], ...]:
    if not isinstance(headers, dict):
        raise ProviderConfigError(f"{where}.headers must be a table of Header-Name = \"value\"")
    if len(headers) > MAX_HEADERS:
        raise ProviderConfigError(f"{where}.headers: {len(headers)} headers; the limit is "
                                  f"{MAX_HEADERS}")
    out = []
    for name, value in headers.items():
        at = f"{where}.headers.{name[:128]}"
        if not _HEADER_NAME.fullmatch(name):
            raise ProviderConfigError(f"{at}: not a valid header name")
        if not isinstance(value, str) or len(value) > MAX_HEADER_VALUE or _CONTROL.search(value):
            raise ProviderConfigError(f"{at} must be a string of at most {MAX_HEADER_VALUE} "
                                      "characters without control characters")
        for kind, ref in _REFERENCE.findall(value):
            pattern = _ENV_NAME if kind == "env" else _BLOCK_NAME
            if not pattern.fullmatch(ref):
                what = ("an environment variable name" if kind == "env"
                        else "a Prefect block name (lowercase letters, digits, '-')")
                raise ProviderConfigError(f"{at}: {{{kind}:{ref[:80]}}} must name {what}")
        out.append((name, value))
    return tuple(out)


def _body(where: str, table: Mapping[str, Any]) -> Any:
    """The body template: a TOML table or array, or a string holding JSON."""
    body = table.get("body")
    if body is None:
        return None
    if isinstance(body, str):
        try:
            body = json.loads(body)
        except (ValueError, RecursionError) as exc:
            raise ProviderConfigError(f"{where}.body: a string body must be JSON ({exc})") from None
    if not isinstance(body, dict | list):
        raise ProviderConfigError(f"{where}.body must be a table, an array, or a JSON string")
    _check_template(f"{where}.body", body, 0)
    return body


def _check_template(at: str, node: Any, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise ProviderConfigError(f"{at}: nested deeper than {MAX_DEPTH} levels")
    if isinstance(node, dict):
        for key, value in node.items():
            _check_template(f"{at}.{key}", value, depth + 1)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_template(f"{at}[{i}]", value, depth + 1)
    elif isinstance(node, str):
        for name in _PLACEHOLDER.findall(node):
            if name not in PLACEHOLDERS:
                raise ProviderConfigError(f"{at}: unknown placeholder {{{{{name[:40]}}}}} "
                                          f"(known: {', '.join(PLACEHOLDERS)})")
    elif isinstance(node, float) and not math.isfinite(node):
        raise ProviderConfigError(f"{at}: {node} is not a JSON number")
    elif node is not None and not isinstance(node, bool | int | float):
        raise ProviderConfigError(f"{at}: a {type(node).__name__} is not a JSON value")


def _response(where: str, response: Any) -> tuple[dict[str, str], dict[str, JSONPath]]:
    if not isinstance(response, dict) or "text" not in response:
        raise ProviderConfigError(f"{where}.response must be a table with at least text = "
                                  "\"<JSONPath>\" (for example \"$.answer.text\")")
    unknown = sorted(set(response) - set(_RESPONSE_FIELDS))
    if unknown:
        raise ProviderConfigError(f"{where}.response: unknown field(s) {', '.join(unknown)} "
                                  f"(allowed: {', '.join(_RESPONSE_FIELDS)})")
    paths = {}
    for key, expr in response.items():
        if not isinstance(expr, str) or not expr.strip() or len(expr) > MAX_PATH:
            raise ProviderConfigError(f"{where}.response.{key} must be a JSONPath of at most "
                                      f"{MAX_PATH} characters")
        try:
            paths[key] = parse_jsonpath(expr)
        except Exception as exc:  # jsonpath-ng raises several types for a bad expression
            raise ProviderConfigError(f"{where}.response.{key}: not a JSONPath ({exc})") from None
    return dict(response), paths


# --- at call time ------------------------------------------------------------------------------


def render(template: Any, values: Mapping[str, Any]) -> Any:
    """The template with placeholders filled, as JSON values (never by editing JSON text).

    A string that is only a placeholder becomes the value itself (``"{{messages}}"`` becomes a
    JSON array, ``"{{seed}}"`` a number or null); a placeholder inside a longer string is
    replaced by the value's text. The result is encoded afterwards, so no value can change the
    body's structure.
    """
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return values[whole.group(1)]
        if "{{" not in template:
            return template
        return _PLACEHOLDER.sub(lambda m: _as_text(values[m.group(1)]), template)
    if isinstance(template, dict):
        return {key: render(value, values) for key, value in template.items()}
    if isinstance(template, list):
        return [render(value, values) for value in template]
    return template


def render_query(query: Mapping[str, Any], values: Mapping[str, Any]) -> dict[str, str]:
    """Query parameters; a parameter whose value is null (an unset seed) is left out."""
    out = {}
    for key, template in query.items():
        value = render(template, values)
        if value is not None:
            out[key] = _as_text(value)
    return out


def _as_text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False)


def default_secret_loader(block: str) -> str | None:
    """A Prefect Secret block's value (None when there is no such block or no Prefect API)."""
    return resolve_api_key("http", (), secret_block=block, required=False)


def resolve_headers(spec: TargetSpec, load_secret: SecretLoader
                    ) -> tuple[dict[str, str], tuple[str, ...]]:
    """The headers to send, and the resolved secret values (to redact from what is stored).

    Raises ``ProviderConfigError`` naming the target, the header and the variable or block, never
    a value.
    """
    headers: dict[str, str] = {}
    secrets: list[str] = []

    def lookup(match: re.Match[str], header: str) -> str:
        kind, ref = match.group(1), match.group(2)
        value = (os.environ.get(ref) if kind == "env" else load_secret(ref)) or ""
        if not value:
            what = (f"environment variable {ref} is not set" if kind == "env"
                    else f"Prefect Secret block {ref!r} was not found (or is empty)")
            raise ProviderConfigError(f"{spec.where('headers.' + header)}: {what}")
        if _CONTROL.search(value):
            raise ProviderConfigError(f"{spec.where('headers.' + header)}: the value of "
                                      f"{{{kind}:{ref}}} holds a control character")
        secrets.append(value)
        return value

    for name, template in spec.headers:
        headers[name] = _REFERENCE.sub(lambda m, h=name: lookup(m, h), template)
    return headers, tuple(sorted({s for s in secrets if len(s) >= MIN_REDACT_LEN},
                                 key=len, reverse=True))


def redact(text: str, secrets: tuple[str, ...]) -> str:
    """``text`` with every resolved secret value replaced (a service that echoes a header)."""
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text
