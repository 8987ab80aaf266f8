"""event types up to 40 characters (applied_prescriber_unavailable is 30)

Revision ID: 0006_i09
Revises: 0005_i11
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_i09"
down_revision = "0005_i11"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.alter_column(
            "type", existing_type=sa.String(length=24), type_=sa.String(length=40)
        )


def downgrade() -> None:
    with op.batch_alter_table("events") as batch_op:
        batch_op.alter_column(
            "type", existing_type=sa.String(length=40), type_=sa.String(length=24)
        )
