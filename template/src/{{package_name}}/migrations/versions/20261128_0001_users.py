"""Users, the accounts authentication logs in, with the indexes of their list query.

Revision ID: 0001
Revises:
Create Date: 2026-11-28 17:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BigIntId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

# (index name, columns): the list query's filter column, then its keyset order.
INDEXES = [
    (
        "ix_users_is_active_created_at",
        ["is_active", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    ),
    ("ix_users_created_at", [sa.literal_column("created_at DESC"), sa.literal_column("id DESC")]),
]


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", BigIntId, nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("is_active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_users")),
        sa.UniqueConstraint("email", name=op.f("uq_users_email")),
    )
    # CREATE INDEX CONCURRENTLY does not lock writers out of a live table, but PostgreSQL
    # refuses it inside a transaction: the autocommit block commits the table first.
    # New indexes on existing tables should follow this pattern. SQLite ignores the flag.
    with op.get_context().autocommit_block():
        for name, columns in INDEXES:
            op.create_index(name, "users", columns, postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for name, _ in reversed(INDEXES):
            op.drop_index(name, table_name="users", postgresql_concurrently=True)
    op.drop_table("users")
