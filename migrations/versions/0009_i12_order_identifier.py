"""the prescriber software's own order identifier, unique per prescriber

Revision ID: 0009_i12
Revises: 0008_i11
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_i12"
down_revision = "0008_i11"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prescriptions") as batch_op:
        batch_op.add_column(sa.Column("order_identifier", sa.String(length=200), nullable=True))
        batch_op.create_unique_constraint(
            "uq_prescriptions_prescriber_order_identifier",
            ["prescriber_id", "order_identifier"],
        )


def downgrade() -> None:
    with op.batch_alter_table("prescriptions") as batch_op:
        batch_op.drop_constraint("uq_prescriptions_prescriber_order_identifier", type_="unique")
        batch_op.drop_column("order_identifier")
