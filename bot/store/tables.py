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

# -- auth state of every agent (auth.store "database"), and leases ------------------------------------------
# Columns named "secret", "refresh" and "extra" hold Fernet tokens (bot.auth.secret_box), never plaintext.
# No foreign keys between them: usage stats exist for implicit profiles (``openai:env``) without a credential,
# as in auth-profiles.json.

# One row per agent that has had a whole-document edit: the lock every such edit takes first, and the
# document's top-level ``version`` and unknown keys.
auth_agents = sa.Table(
    "auth_agents",
    metadata,
    sa.Column("agent_id", sa.Text(), primary_key=True),
    sa.Column("version", sa.Integer(), nullable=False),
    sa.Column("extra", sa.JSON(), nullable=False),
)

auth_credentials = sa.Table(
    "auth_credentials",
    metadata,
    sa.Column("agent_id", sa.Text(), primary_key=True),
    sa.Column("profile_id", sa.Text(), primary_key=True),
    sa.Column("provider", sa.Text(), nullable=False),
    sa.Column("type", sa.Text(), nullable=False),
    sa.Column("secret", sa.Text(), nullable=False),  # the key, the token or the OAuth access token, sealed
    sa.Column("refresh", sa.Text(), nullable=True),  # the OAuth refresh token, sealed
    sa.Column("email", sa.Text(), nullable=True),
    sa.Column("expires", sa.BigInteger(), nullable=True),
    sa.Column("extra", sa.Text(), nullable=True),  # the credential's other fields as JSON, sealed
    sa.Column("updated_at", sa.BigInteger(), nullable=False),
    sa.CheckConstraint("type IN ('api_key', 'token', 'oauth')", name="type"),
    sa.CheckConstraint("provider = lower(provider)", name="provider_lower_case"),
)

auth_order = sa.Table(
    "auth_order",
    metadata,
    sa.Column("agent_id", sa.Text(), primary_key=True),
    sa.Column("provider", sa.Text(), primary_key=True),
    sa.Column("profile_ids", sa.JSON(), nullable=False),
    sa.CheckConstraint("provider = lower(provider)", name="provider_lower_case"),
)

auth_last_good = sa.Table(
    "auth_last_good",
    metadata,
    sa.Column("agent_id", sa.Text(), primary_key=True),
    sa.Column("provider", sa.Text(), primary_key=True),
    sa.Column("profile_id", sa.Text(), nullable=False),
    sa.CheckConstraint("provider = lower(provider)", name="provider_lower_case"),
)

# A profile's whole usage stats (profile-level fields, per-model pairs, unknown keys) as the JSON object
# auth-profiles.json holds under usageStats[id]: one row, so a failure's read-modify-write locks one row
# and sees the profile and its pairs together. ``rev`` grows with every write, so a reader holding two
# copies knows the newer one.
auth_usage = sa.Table(
    "auth_usage",
    metadata,
    sa.Column("agent_id", sa.Text(), primary_key=True),
    sa.Column("profile_id", sa.Text(), primary_key=True),
    sa.Column("stats", sa.JSON(), nullable=False),
    sa.Column("rev", sa.BigInteger(), nullable=False),
    sa.Column("updated_at", sa.BigInteger(), nullable=False),
)

# Small named values of the auth state: the key check (a sealed constant that tells a wrong key at start).
auth_meta = sa.Table(
    "auth_meta",
    metadata,
    sa.Column("name", sa.Text(), primary_key=True),
    sa.Column("value", sa.Text(), nullable=False),
)

# Short leases with a holder and an expiry: a session's turn, an OAuth refresh. Taken over once expired.
leases = sa.Table(
    "leases",
    metadata,
    sa.Column("key", sa.Text(), primary_key=True),
    sa.Column("holder", sa.Text(), nullable=False),
    sa.Column("expires_at", sa.BigInteger(), nullable=False),
)
