from datetime import datetime

from sqlalchemy import ForeignKey, String, text
from sqlalchemy.orm import Mapped, mapped_column

from ..core.models_base import Base, BigIntId, UtcDateTime, utcnow


class Credential(Base):
    """A user's password hash, in a table of its own.

    Kept out of ``users`` so that no query of the users domain can ever select a hash into
    a response, and so the users table is the same with authentication on or off.
    """

    __tablename__ = "credentials"

    user_id: Mapped[int] = mapped_column(
        BigIntId, ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, autoincrement=False
    )
    # An argon2 PHC string ("$argon2id$v=19$m=65536,t=3,p=4$salt$hash"): ~100 characters.
    password_hash: Mapped[str] = mapped_column(String(255))
    # Every access token carries the version current when it was issued (the "ver" claim);
    # a password change bumps it, and every token issued before stops verifying.
    token_version: Mapped[int] = mapped_column(default=0, server_default=text("0"))
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


def credentials_tag(user_id: int) -> str:
    """Cache tag of the user's password: a change revokes their cached token verifications."""
    return f"user:{user_id}:credentials"
