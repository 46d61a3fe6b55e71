"""Access tokens: JWTs signed with HS256 and ``SECRET_KEY`` (PyJWT).

The claims are the standard ones: ``sub`` (the user id, a string as RFC 7519 requires),
``iat``, ``exp``, and ``iss``/``aud`` naming this service, so a token another service
signed with a shared key is not accepted here; plus ``ver``, the user's token version when
the token was issued (a password change bumps it: see ``Credential.token_version``).
Decoding pins the algorithm list to HS256: a token claiming ``alg: none`` or another
algorithm is refused, never "verified".
"""

import time
from dataclasses import dataclass
from typing import Any

import jwt

from ..settings import Settings

ALGORITHM = "HS256"
REQUIRED_CLAIMS = ["sub", "iat", "exp", "iss", "aud", "ver"]

InvalidToken = jwt.InvalidTokenError


@dataclass(frozen=True, slots=True)
class Claims:
    user_id: int
    version: int
    expires_at: float
    """Unix time."""


class TokenCodec:
    def __init__(self, *, secret: str, issuer: str, audience: str, lifetime_seconds: int) -> None:
        self._secret = secret
        self.issuer = issuer
        self.audience = audience
        self.lifetime_seconds = lifetime_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> "TokenCodec":
        # The settings validator has filled or checked SECRET_KEY already.
        assert settings.secret_key is not None
        return cls(
            secret=settings.secret_key.get_secret_value(),
            issuer=settings.auth_token_issuer,
            audience=settings.auth_token_audience,
            lifetime_seconds=settings.auth_access_token_minutes * 60,
        )

    def issue(self, user_id: int, version: int) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "sub": str(user_id),
            "iat": now,
            "exp": now + self.lifetime_seconds,
            "iss": self.issuer,
            "aud": self.audience,
            "ver": version,
        }
        return jwt.encode(claims, self._secret, algorithm=ALGORITHM)

    def decode(self, token: str) -> Claims:
        """The verified claims; raises ``InvalidToken`` for a bad signature, a wrong issuer or
        audience, an expired token, or anything that is not a token of ours."""
        claims = jwt.decode(
            token,
            self._secret,
            algorithms=[ALGORITHM],
            audience=self.audience,
            issuer=self.issuer,
            options={"require": REQUIRED_CLAIMS},
        )
        try:
            user_id, version = int(claims["sub"]), int(claims["ver"])
        except (TypeError, ValueError) as exc:
            raise InvalidToken("the subject or version is not an integer") from exc
        return Claims(user_id=user_id, version=version, expires_at=float(claims["exp"]))
