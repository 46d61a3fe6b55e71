from datetime import datetime

from sqlalchemy import Index, String, true
from sqlalchemy.orm import Mapped, mapped_column

from ..core.models_base import Base, BigIntId, UtcDateTime, utcnow


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntId, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    name: Mapped[str] = mapped_column(String(100))
    is_active: Mapped[bool] = mapped_column(default=True, server_default=true())
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, default=utcnow)


# The list of users filters on is_active and pages newest first on (created_at, id);
# id is the keyset tie-breaker, so it is part of the index and no sort step remains.
Index(
    "ix_users_is_active_created_at",
    User.is_active,
    User.created_at.desc(),
    User.id.desc(),
)
# The unfiltered list pages on (created_at, id) alone.
Index("ix_users_created_at", User.created_at.desc(), User.id.desc())


def user_tag(user_id: int) -> str:
    """Cache tag of the user's own fields: every cached read that shows them carries it."""
    return f"user:{user_id}"
