"""Initial schema: sessions, their messages, and the failover event log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from bot.store.tables: a migration is a frozen snapshot, and a test
# checks that the two still agree.
_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "sessions",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("platform", sa.Text(), nullable=False),
        sa.Column("chat_id", sa.Text(), nullable=False),
        sa.Column("user_id", sa.Text(), nullable=True),
        sa.Column("thread_id", sa.Text(), nullable=True),
        sa.Column("model_override", sa.Text(), nullable=True),
        sa.Column("model_source", sa.Text(), nullable=True),
        sa.Column("pin_profile", sa.Text(), nullable=True),
        sa.Column("pin_source", sa.Text(), nullable=True),
        sa.Column("pin_compaction", sa.Integer(), nullable=True),
        sa.Column("compaction_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("last_model", sa.Text(), nullable=True),
        sa.Column("last_profile", sa.Text(), nullable=True),
        sa.Column("last_fallback", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("message_count", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("model_source IN ('user', 'command')", name=op.f("ck_sessions_model_source")),
        sa.CheckConstraint("pin_source IN ('auto', 'user')", name=op.f("ck_sessions_pin_source")),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_sessions")),
    )
    op.create_index(op.f("ix_sessions_updated_at"), "sessions", ["updated_at"])
    op.create_index(op.f("ix_sessions_platform_chat_id"), "sessions", ["platform", "chat_id"])

    op.create_table(
        "messages",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("session_key", sa.Text(), nullable=False),
        sa.Column("role", sa.Text(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("token_estimate", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint(
            "role IN ('user', 'assistant', 'system', 'summary')", name=op.f("ck_messages_role")
        ),
        sa.ForeignKeyConstraint(
            ["session_key"],
            ["sessions.key"],
            name=op.f("fk_messages_session_key_sessions"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_messages")),
        sqlite_autoincrement=True,
    )
    op.create_index(op.f("ix_messages_session_key_id"), "messages", ["session_key", "id"])

    op.create_table(
        "events",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("session_key", sa.Text(), nullable=True),
        sa.Column("ref", sa.Text(), nullable=False),
        sa.Column("profile_id", sa.Text(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("cooldown_until", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_events")),
    )
    op.create_index(op.f("ix_events_at"), "events", ["at"])
    op.create_index(op.f("ix_events_profile_id_at"), "events", ["profile_id", "at"])


def downgrade() -> None:
    op.drop_table("events")
    op.drop_table("messages")
    op.drop_table("sessions")
