"""the open prescriptions' patient index; the events' duplicate prescription index (issue 14)

The laboratory's lookup and the create's duplicate check only ever want open prescriptions:
they read a partial index of those, whose size follows a year of prescriptions instead of every
year kept (at 10 million prescriptions the full index no longer stayed in memory and the lookup
grew 1.47x). `ix_events_prescription_id` repeated the leading column of
`ix_events_prescription_id_public_id`: one index less to write per event.

On PostgreSQL both are done without blocking writes: these are the two large tables.

Revision ID: 0011_i14
Revises: 0010_i14
Create Date: 2026-12-07
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_i14"
down_revision = "0010_i14"
branch_labels = None
depends_on = None

OPEN_ROWS = sa.text("status IN ('active', 'in_progress')")
COLUMNS = ["ins_pseudonym", "patient_birth_date"]


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        with op.get_context().autocommit_block():
            op.create_index(
                "ix_prescriptions_open_patient",
                "prescriptions",
                COLUMNS,
                postgresql_where=OPEN_ROWS,
                postgresql_concurrently=True,
                if_not_exists=True,
            )
            op.drop_index(
                "ix_events_prescription_id",
                table_name="events",
                postgresql_concurrently=True,
                if_exists=True,
            )
    else:
        op.create_index(
            "ix_prescriptions_open_patient", "prescriptions", COLUMNS, sqlite_where=OPEN_ROWS
        )
        op.drop_index("ix_events_prescription_id", table_name="events")


def downgrade() -> None:
    op.create_index("ix_events_prescription_id", "events", ["prescription_id"])
    op.drop_index("ix_prescriptions_open_patient", table_name="prescriptions")
