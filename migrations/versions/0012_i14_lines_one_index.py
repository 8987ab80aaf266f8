"""the lines' index on their prescription goes: the unique (prescription, line) index serves it

`uq_prescription_lines_prescription_id` (prescription_id, line_id) leads with the prescription:
every read of a prescription's lines can use it, so `ix_prescription_lines_prescription_id` was
a second copy of the same order, written on every line of every create.

Dropped without blocking writes on PostgreSQL: the lines are the second largest table.

Revision ID: 0012_i14
Revises: 0011_i14
Create Date: 2026-12-07
"""

from alembic import op

revision = "0012_i14"
down_revision = "0011_i14"
branch_labels = None
depends_on = None

REDUNDANT = "ix_prescription_lines_prescription_id"


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.drop_index(
                REDUNDANT,
                table_name="prescription_lines",
                postgresql_concurrently=True,
                if_exists=True,
            )
    else:
        op.drop_index(REDUNDANT, table_name="prescription_lines")


def downgrade() -> None:
    op.create_index(REDUNDANT, "prescription_lines", ["prescription_id"])
