"""conversations: groups and their participants, account plans and conversation
policies, preferences, contact requests and blocks

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # --- groups ---------------------------------------------------------------
    # --- plans and policies -----------------------------------------------------
    # --- preferences, contact requests and blocks ---------------------------------
    pass


def downgrade() -> None:
    # --- preferences, contact requests and blocks ---------------------------------
    # --- plans and policies -----------------------------------------------------
    # --- groups ---------------------------------------------------------------
    pass
