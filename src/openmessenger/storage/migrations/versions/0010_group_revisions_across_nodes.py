"""group revisions across nodes

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A member node's forward to a group's host may be an edit or a deletion of
    # the sender's message ``replaces`` (services/group_federation.py).
    with op.batch_alter_table("group_forwards") as batch:
        batch.add_column(sa.Column("revision", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("replaces", sa.String(length=32), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("group_forwards") as batch:
        batch.drop_column("replaces")
        batch.drop_column("revision")
