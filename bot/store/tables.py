"""The SQL schema as SQLAlchemy Core tables; migrations/versions must produce exactly this (a test compares)."""

from __future__ import annotations

import sqlalchemy as sa

# Deterministic constraint names, identical on SQLite and PostgreSQL, so that later migrations can
# refer to them by name.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

# 64-bit ids on PostgreSQL; on SQLite only INTEGER PRIMARY KEY is the auto-numbered rowid.
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("key", sa.Text(), primary_key=True),
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
    sa.Column("compaction_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("last_model", sa.Text(), nullable=True),
    sa.Column("last_profile", sa.Text(), nullable=True),
    sa.Column("last_fallback", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("message_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
    sa.Column("created_at", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", sa.BigInteger(), nullable=False),
    sa.CheckConstraint("model_source IN ('user', 'command')", name="model_source"),
    sa.CheckConstraint("pin_source IN ('auto', 'user')", name="pin_source"),
    sa.Index(None, "updated_at"),
    sa.Index(None, "platform", "chat_id"),
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column(
        "session_key",
        sa.Text(),
        sa.ForeignKey("sessions.key", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("role", sa.Text(), nullable=False),
    sa.Column("content", sa.Text(), nullable=False),
    sa.Column("attachments", sa.JSON(), nullable=False),  # [{media_type, size, name?}], never the bytes
    sa.Column("token_estimate", sa.Integer(), nullable=False),
    sa.Column("created_at", sa.BigInteger(), nullable=False),
    sa.CheckConstraint("role IN ('user', 'assistant', 'system', 'summary')", name="role"),
    sa.Index(None, "session_key", "id"),
    # AUTOINCREMENT: SQLite must never hand a deleted message's id to a new one (see through_id).
    sqlite_autoincrement=True,
)

# No foreign key to sessions: the failover log outlives the sessions it mentions.
events = sa.Table(
    "events",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=True),
    sa.Column("at", sa.BigInteger(), nullable=False),
    sa.Column("session_key", sa.Text(), nullable=True),
    sa.Column("ref", sa.Text(), nullable=False),
    sa.Column("profile_id", sa.Text(), nullable=True),
    sa.Column("reason", sa.Text(), nullable=False),
    sa.Column("cooldown_until", sa.BigInteger(), nullable=True),
    sa.Index(None, "at"),
    sa.Index(None, "profile_id", "at"),
)
