"""The starting point: an empty schema, revised by the first resource you add.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 17:00:00
"""

from collections.abc import Sequence

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Nothing to create: ``alembic_version`` records that the database is at the start."""


def downgrade() -> None:
    """Nothing to drop."""
