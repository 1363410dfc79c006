"""Bearer-token authentication: NextAuth-issued JWTs, HS256 with ``NEXTAUTH_SECRET``.

The algorithm is pinned (a token saying ``alg: none`` or ``RS256`` is refused before any key is
used, so HS/RS confusion cannot happen), ``exp`` is required, and the user id comes only from the
token's ``userId`` claim, which must be 16 lowercase hex (the seed's NextAuth callback) because it
becomes a storage partition name.
"""

from __future__ import annotations

import re

import jwt

from tasks.errors import AuthError

ALGORITHM = "HS256"
USER_CLAIM = "userId"
# Matched with fullmatch: "$" would also match before a trailing newline, and a user id
# "0123456789abcdef\n" would become a partition of its own that the real user never sees.
_USER_ID_RE = re.compile(r"[0-9a-f]{16}")


def bearer_token(authorization: str | None, *, max_bytes: int) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None when there is no header.

    A token over ``max_bytes`` is refused here, before any base64 or JSON decoding of it.
    """
    if authorization is None or not authorization.strip():
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise AuthError("Authorization header must be 'Bearer <token>'")
    token = token.strip()
    if len(token) > max_bytes:
        raise AuthError(f"token is {len(token)} bytes, over the limit of {max_bytes}")
    return token


def verify_token(token: str, secret: str | None) -> str:
    """The user id of a valid token; raises ``AuthError`` saying why a token is refused."""
    if not secret:
        raise AuthError("this server has no NEXTAUTH_SECRET configured and accepts no tokens")
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM],
            options={"require": ["exp"], "verify_exp": True, "verify_signature": True},
        )
    except jwt.ExpiredSignatureError:
        raise AuthError("token has expired") from None
    except jwt.MissingRequiredClaimError as exc:
        raise AuthError(f"token is missing the required '{exc.claim}' claim") from None
    except jwt.InvalidAlgorithmError:
        raise AuthError(f"token algorithm is not allowed (only {ALGORITHM})") from None
    except jwt.InvalidSignatureError:
        raise AuthError("token signature is invalid") from None
    except jwt.PyJWTError as exc:
        raise AuthError(f"token is invalid: {exc}") from None
    user_id = claims.get(USER_CLAIM)
    if not isinstance(user_id, str) or not _USER_ID_RE.fullmatch(user_id):
        raise AuthError(f"token claim '{USER_CLAIM}' must be 16 lowercase hex characters")
    return user_id
