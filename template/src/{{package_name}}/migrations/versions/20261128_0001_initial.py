"""Users, posts and comments with the indexes their list queries need.

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

# (table, index name, columns): each list query's filter columns, then its keyset order.
INDEXES = [
    (
        "users",
        "ix_users_is_active_created_at",
        ["is_active", sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    ),
    (
        "users",
        "ix_users_created_at",
        [sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    ),
    (
        "posts",
        "ix_posts_author_id_published_created_at",
        [
            "author_id",
            "published",
            sa.literal_column("created_at DESC"),
            sa.literal_column("id DESC"),
        ],
    ),
    (
        "posts",
        "ix_posts_created_at",
        [sa.literal_column("created_at DESC"), sa.literal_column("id DESC")],
    ),
    (
        "comments",
        "ix_comments_post_id_is_approved_created_at",
        [
            "post_id",
            "is_approved",
            sa.literal_column("created_at DESC"),
            sa.literal_column("id DESC"),
        ],
    ),
    ("comments", "ix_comments_author_id", ["author_id"]),
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
    op.create_table(
        "posts",
        sa.Column("id", BigIntId, nullable=False),
        sa.Column("author_id", BigIntId, nullable=False),
        sa.Column("title", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("published", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"], ["users.id"], name=op.f("fk_posts_author_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_posts")),
    )
    op.create_table(
        "comments",
        sa.Column("id", BigIntId, nullable=False),
        sa.Column("post_id", BigIntId, nullable=False),
        sa.Column("author_id", BigIntId, nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("is_approved", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_id"],
            ["users.id"],
            name=op.f("fk_comments_author_id_users"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["post_id"], ["posts.id"], name=op.f("fk_comments_post_id_posts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_comments")),
    )
    # CREATE INDEX CONCURRENTLY does not lock writers out of a live table, but PostgreSQL
    # refuses it inside a transaction: the autocommit block commits the tables first.
    # New indexes on existing tables should follow this pattern. SQLite ignores the flag.
    with op.get_context().autocommit_block():
        for table, name, columns in INDEXES:
            op.create_index(name, table, columns, postgresql_concurrently=True)


def downgrade() -> None:
    with op.get_context().autocommit_block():
        for table, name, _ in reversed(INDEXES):
            op.drop_index(name, table_name=table, postgresql_concurrently=True)
    op.drop_table("comments")
    op.drop_table("posts")
    op.drop_table("users")
