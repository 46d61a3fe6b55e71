from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from ..users.schemas import User, UserCreate

# Long passphrases are welcome, but not megabytes of them: hashing is paid per byte.
Password = Annotated[SecretStr, Field(min_length=8, max_length=256)]


class Registration(UserCreate):
    """A new user and their password. ``SecretStr`` keeps the password out of reprs and logs."""

    password: Password


class PasswordChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    current_password: SecretStr
    new_password: Password


class AccessToken(BaseModel):
    """The OAuth2 token response (RFC 6749 section 5.1)."""

    access_token: str
    token_type: Literal["bearer"] = "bearer"
    expires_in: int = Field(description="Seconds until the token expires")


class AuthenticatedUser(User):
    """The user a valid access token belongs to. Frozen: one instance is shared by every
    request that presents the same token while it is cached."""

    model_config = ConfigDict(frozen=True)
