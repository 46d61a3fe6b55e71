from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm

from ..core.deps import SessionDep
from ..users.schemas import User
from .deps import AuthenticatorDep, CurrentUser
from .schemas import AccessToken, PasswordChange, Registration

router = APIRouter(prefix="/api/auth", tags=["auth"])

UNAUTHORIZED = {401: {"description": "Missing, invalid or expired credentials"}}


@router.post(
    "/register",
    status_code=status.HTTP_201_CREATED,
    responses={409: {"description": "E-mail taken"}},
)
async def register(
    session: SessionDep, authenticator: AuthenticatorDep, data: Registration
) -> User:
    """Create a user with a password. The password is stored only as an argon2 hash."""
    return await authenticator.register(session, data)


@router.post("/token", responses=UNAUTHORIZED)
async def log_in(
    authenticator: AuthenticatorDep, form: Annotated[OAuth2PasswordRequestForm, Depends()]
) -> AccessToken:
    """OAuth2 password flow: ``username`` (the e-mail) and ``password`` as a form."""
    return await authenticator.log_in(form.username, form.password)


@router.get("/me", responses=UNAUTHORIZED)
async def me(user: CurrentUser) -> User:
    return user


@router.put("/password", responses={**UNAUTHORIZED, 403: {"description": "Wrong current password"}})
async def change_password(
    user: CurrentUser, authenticator: AuthenticatorDep, data: PasswordChange
) -> AccessToken:
    """Every token issued before stops working; the answer is a fresh one."""
    return await authenticator.change_password(
        user.id, data.current_password.get_secret_value(), data.new_password.get_secret_value()
    )
