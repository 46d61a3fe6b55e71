"""What the rest of the application uses: ``CurrentUser``, the write guard, and the client
identity the rate limiter keys on.

Handlers that need the caller declare ``user: CurrentUser``; tests replace ``current_user``
(or ``require_user_for_writes``) with ``app.dependency_overrides``.
"""

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from starlette.types import Scope

from ..core.errors import Unauthorized
from ..core.http import request_header
from .schemas import AuthenticatedUser
from .service import Authenticator

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Reads "Authorization: Bearer <token>" and tells the OpenAPI docs where tokens come from,
# so the "Authorize" button of /docs logs in. auto_error=False: the 401 is ours, below.
bearer_token = OAuth2PasswordBearer(tokenUrl="/api/auth/token", auto_error=False)

BearerToken = Annotated[str | None, Depends(bearer_token)]


async def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]


async def current_user(authenticator: AuthenticatorDep, token: BearerToken) -> AuthenticatedUser:
    """The user of a valid bearer token; 401 when the token is missing, malformed, tampered
    with, expired, for another audience, or when its user is deleted or deactivated."""
    if token is None:
        raise Unauthorized("Not authenticated: send an access token (Authorization: Bearer).")
    user = await authenticator.authenticate(token)
    if user is None:
        raise Unauthorized("The access token is invalid or has expired.")
    return user


CurrentUser = Annotated[AuthenticatedUser, Depends(current_user)]


# What `require_user_for_writes` adds to the OpenAPI schema of the routes it guards.
WRITE_GUARD_RESPONSES: dict[int | str, dict[str, object]] = {
    401: {"description": "A write without a valid access token"}
}


async def require_user_for_writes(
    request: Request, authenticator: AuthenticatorDep, token: BearerToken
) -> None:
    """Router-wide guard: writes need a valid token, reads stay public.

    Public reads keep the edge cache and the per-address rate limit working for anonymous
    clients. This guard only authenticates: who may change what (only a post's author edits
    it, say) is for each handler to decide with ``user: CurrentUser``.
    """
    if request.method not in SAFE_METHODS:
        await current_user(authenticator, token)


async def user_or_address(scope: Scope) -> str | None:
    """The rate limiter's client identity: ``user:<id>`` for a valid bearer token, else None
    (the limiter then uses the address). Users behind one NAT get a budget each, and a user
    cannot dodge their budget by changing address.

    The token is verified (the same cached verification as ``CurrentUser``): an unverified
    ``sub`` would let anyone spend someone else's budget, or mint a fresh one per request.
    """
    authorization = request_header(scope["headers"], b"authorization")
    if authorization is None:
        return None
    scheme, _, token = authorization.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer" or not token:
        return None
    authenticator: Authenticator = scope["app"].state.authenticator
    user = await authenticator.authenticate(token.strip())
    return f"user:{user.id}" if user is not None else None
