"""Auth state in the database (auth.store "database"): credentials, order, lastGood, usage stats; leases.

Revision ID: 0002
Revises: 0001
Create Date: 2025-02-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Spelled out rather than imported from bot.store.tables: a migration is a frozen snapshot, and a test
# checks that the two still agree.


def upgrade() -> None:
    op.create_table(
        "auth_agents",
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("extra", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", name=op.f("pk_auth_agents")),
    )
    op.create_table(
        "auth_credentials",
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("profile_id", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("secret", sa.Text(), nullable=False),
        sa.Column("refresh", sa.Text(), nullable=True),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("expires", sa.BigInteger(), nullable=True),
        sa.Column("extra", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("type IN ('api_key', 'token', 'oauth')", name=op.f("ck_auth_credentials_type")),
        sa.CheckConstraint(
            "provider = lower(provider)", name=op.f("ck_auth_credentials_provider_lower_case")
        ),
        sa.PrimaryKeyConstraint("agent_id", "profile_id", name=op.f("pk_auth_credentials")),
    )
    op.create_table(
        "auth_order",
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("profile_ids", sa.JSON(), nullable=False),
        sa.CheckConstraint("provider = lower(provider)", name=op.f("ck_auth_order_provider_lower_case")),
        sa.PrimaryKeyConstraint("agent_id", "provider", name=op.f("pk_auth_order")),
    )
    op.create_table(
        "auth_last_good",
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("profile_id", sa.Text(), nullable=False),
        sa.CheckConstraint("provider = lower(provider)", name=op.f("ck_auth_last_good_provider_lower_case")),
        sa.PrimaryKeyConstraint("agent_id", "provider", name=op.f("pk_auth_last_good")),
    )
    op.create_table(
        "auth_usage",
        sa.Column("agent_id", sa.Text(), nullable=False),
        sa.Column("profile_id", sa.Text(), nullable=False),
        sa.Column("stats", sa.JSON(), nullable=False),
        sa.Column("rev", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("agent_id", "profile_id", name=op.f("pk_auth_usage")),
    )
    op.create_table(
        "auth_meta",
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_auth_meta")),
    )
    op.create_table(
        "leases",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("holder", sa.Text(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_leases")),
    )


def downgrade() -> None:
    for table in (
        "leases",
        "auth_meta",
        "auth_usage",
        "auth_last_good",
        "auth_order",
        "auth_credentials",
        "auth_agents",
    ):
        op.drop_table(table)
