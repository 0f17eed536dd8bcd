"""retention: messages by conversation and time, for the sweep that deletes
expired history (without it each sweep reads the whole messages table)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_messages_conversation_sent_at", "messages", ["conversation_id", "sent_at"])


def downgrade() -> None:
    op.drop_index("ix_messages_conversation_sent_at", table_name="messages")
