"""Every way a token can be refused, on the endpoint that needs one and on submit."""

from __future__ import annotations

import base64
import json

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi.testclient import TestClient

from api.auth import bearer_token, verify_token
from tasks.errors import AuthError
from tests.api.conftest import SECRET, USER_A, USER_B, auth, flush, make_token, pramana_payload

STATS = "/api/user/me/stats"


def _b64(data: dict[str, object]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()


def _rsa_pair() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo)
    return private, public


def _alg_none_token() -> str:
    header = _b64({"alg": "none", "typ": "JWT"})
    return f"{header}.{_b64({'userId': USER_A, 'exp': 9999999999})}."


def _bad_tokens() -> dict[str, str]:
    private, public = _rsa_pair()
    return {
        "wrong key": make_token(secret="another-secret-of-enough-length!"),
        "alg none": _alg_none_token(),
        "RS256 signed with a private key": jwt.encode(
            {"userId": USER_A, "exp": 9999999999}, private, algorithm="RS256"),
        # HS/RS confusion: the public key used as an HMAC secret must not verify either.
        "HS256 with the public key as secret": _hmac_with(public),
        "expired": make_token(exp_in=-10),
        "no exp": make_token(exp_in=None),
        "uppercase user id": make_token("0123456789ABCDEF"),
        "short user id": make_token("0123abcd"),
        "path user id": make_token("../../etc/passwd"),
        "anonymous as user id": make_token("anonymous"),
        "numeric user id": make_token(12345678),
        "no userId claim": make_token(None, sub=USER_A),
        # Issue 16 item 8: "$" matched before a trailing newline and this token was accepted.
        "user id with a trailing newline": make_token(USER_B + "\n"),
        "user id with a trailing carriage return": make_token(USER_B + "\r"),
        "user id with a trailing NUL": make_token(USER_B + "\x00"),
        "garbage": "not.a.jwt",
    }


def _hmac_with(public_pem: bytes) -> str:
    import hashlib
    import hmac

    header = _b64({"alg": "HS256", "typ": "JWT"})
    signing_input = f"{header}.{_b64({'userId': USER_A, 'exp': 9999999999})}"
    sig = hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"


BAD = _bad_tokens()


def test_user_endpoints_need_a_token(client: TestClient) -> None:
    for method, path in (("GET", STATS), ("DELETE", "/api/user/me")):
        r = client.request(method, path)
        assert r.status_code == 401, (method, path)
        assert "Bearer" in r.json()["detail"]
        assert r.headers["www-authenticate"].startswith("Bearer")


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_tokens_are_refused_everywhere(client: TestClient, case: str) -> None:
    token = BAD[case]
    r = client.get(STATS, headers=auth(token))
    assert r.status_code == 401, case
    # A token that is sent must be valid even where none is needed: never silently anonymous.
    r = client.post("/api/submit", json=pramana_payload(), headers=auth(token))
    assert r.status_code == 401, case
    assert client.app.state.spool.pending_count() == 0


def test_reasons_are_specific() -> None:
    with pytest.raises(AuthError, match="expired"):
        verify_token(BAD["expired"], SECRET)
    with pytest.raises(AuthError, match="'exp'"):
        verify_token(BAD["no exp"], SECRET)
    with pytest.raises(AuthError, match="algorithm"):
        verify_token(BAD["RS256 signed with a private key"], SECRET)
    with pytest.raises(AuthError, match="16 lowercase hex"):
        verify_token(BAD["uppercase user id"], SECRET)
    with pytest.raises(AuthError, match="NEXTAUTH_SECRET"):
        verify_token(make_token(), None)


def test_malformed_authorization_header(client: TestClient) -> None:
    for header in ("Basic dXNlcjpwdw==", "Bearer", "Bearer    ", "Token abc"):
        r = client.get(STATS, headers={"Authorization": header})
        assert r.status_code == 401, header
    assert bearer_token(None, max_bytes=4096) is None
    assert bearer_token("bearer abc", max_bytes=4096) == "abc"


def test_valid_token_identifies_the_user(client: TestClient) -> None:
    r = client.get(STATS, headers=auth(make_token()))
    assert r.status_code == 200
    assert r.json()["user_id"] == USER_A


def test_server_without_secret_refuses_tokens(app_factory) -> None:  # type: ignore[no-untyped-def]
    app = app_factory(nextauth_secret=None)
    with TestClient(app) as c:
        assert c.get(STATS, headers=auth(make_token())).status_code == 401
        # ...but anonymous submissions still work.
        assert c.post("/api/submit", json=pramana_payload()).json()["status"] == "accepted"


def test_user_id_with_a_trailing_newline_never_becomes_a_folder(client: TestClient) -> None:
    """Issue 16 item 8: a signed token with ``userId`` "fedcba9876543210\\n" was accepted and
    created ``user=fedcba9876543210\\n/``, which the real user's stats and delete never see."""
    forged = make_token(USER_B + "\n")
    for path in ("/api/submit", "/api/submit/batch"):
        body = pramana_payload() if path == "/api/submit" else {"results": [pramana_payload()]}
        r = client.post(path, json=body, headers=auth(forged))
        assert r.status_code == 401, r.text
        assert "16 lowercase hex" in r.json()["detail"]
    assert client.get(STATS, headers=auth(forged)).status_code == 401
    assert client.delete("/api/user/me", headers=auth(forged)).status_code == 401
    # The real user is untouched and still works.
    assert client.post("/api/submit", json=pramana_payload(),
                       headers=auth(make_token(USER_B))).status_code == 200
    flush(client.app)
    keys = [o.key for o in client.app.state.store.list("")]
    assert keys and all(f"user={USER_B}/" in k for k in keys if k.startswith("raw/")), keys
    assert not any(ch in k for k in keys for ch in "\n\r\x00"), keys


def test_oversized_token_is_refused_before_decoding(app_factory) -> None:  # type: ignore[no-untyped-def]
    """Issue 16 item 9: a 1 MB token was accepted. Here the header limit is raised far enough to
    let the token reach the app: it is still refused, by its size, although its signature and
    claims are valid (so it was never decoded)."""
    app = app_factory(max_header_bytes=2 * 1024 * 1024)
    huge = make_token(padding="x" * (1024 * 1024))
    with TestClient(app) as c:
        for method, path, body in (("POST", "/api/submit", pramana_payload()),
                                   ("GET", STATS, None)):
            r = c.request(method, path, json=body, headers=auth(huge))
            assert r.status_code == 401, r.text
            assert "over the limit of 4096" in r.json()["detail"]
        assert c.app.state.spool.pending_count() == 0
        # Just under the limit: decoded and accepted as usual.
        fits = make_token(padding="x" * 2800)
        assert len(fits) <= 4096
        assert c.get(STATS, headers=auth(fits)).status_code == 200
    with pytest.raises(AuthError, match="over the limit of 100"):
        bearer_token("Bearer " + "a" * 101, max_bytes=100)
