"""Dependency aliases shared by the routers (``Annotated`` types, one per thing a route needs).

The providers are ``async def`` although they never await: FastAPI runs a sync dependency in its
thread pool, and two thread hops per request would cost more than the whole summary read.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from api.auth import bearer_token, verify_token
from api.flusher import SpoolFlusher
from api.spool import Spool
from api.summaries import SummaryCache
from tasks.errors import AuthError
from tasks.identity import USER_ANONYMOUS
from tasks.settings import Settings
from tasks.storage.base import ObjectStore


async def get_store(request: Request) -> ObjectStore:
    return request.app.state.store


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


async def get_spool(request: Request) -> Spool:
    return request.app.state.spool


async def get_flusher(request: Request) -> SpoolFlusher:
    return request.app.state.flusher


async def get_summaries(request: Request) -> SummaryCache:
    return request.app.state.summaries


# Declared so /docs shows the scheme and offers a token field; the header is parsed by api.auth,
# which (unlike HTTPBearer) refuses a malformed header instead of treating it as absent.
_bearer_scheme = HTTPBearer(
    auto_error=False, description="A NextAuth JWT (HS256, signed with NEXTAUTH_SECRET)."
)
BearerDoc = Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer_scheme)]


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status_code=401, detail=message,
        headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
    )


def _token(request: Request) -> str | None:
    settings: Settings = request.app.state.settings
    return bearer_token(request.headers.get("authorization"),
                        max_bytes=settings.max_token_bytes)


async def optional_user(request: Request, _doc: BearerDoc) -> str:
    """The token's user id, ``anonymous`` without a token; a token that is sent must be valid."""
    try:
        token = _token(request)
        if token is None:
            return USER_ANONYMOUS
        return verify_token(token, request.app.state.settings.nextauth_secret)
    except AuthError as exc:
        raise _unauthorized(str(exc)) from None


async def required_user(request: Request, _doc: BearerDoc) -> str:
    """The token's user id; 401 without a valid token."""
    try:
        token = _token(request)
        if token is None:
            raise AuthError("this endpoint needs 'Authorization: Bearer <token>'")
        return verify_token(token, request.app.state.settings.nextauth_secret)
    except AuthError as exc:
        raise _unauthorized(str(exc)) from None


StoreDep = Annotated[ObjectStore, Depends(get_store)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
SpoolDep = Annotated[Spool, Depends(get_spool)]
FlusherDep = Annotated[SpoolFlusher, Depends(get_flusher)]
SummariesDep = Annotated[SummaryCache, Depends(get_summaries)]
OptionalUserDep = Annotated[str, Depends(optional_user)]
UserDep = Annotated[str, Depends(required_user)]
IfNoneMatch = Annotated[str | None, Header(include_in_schema=False)]
