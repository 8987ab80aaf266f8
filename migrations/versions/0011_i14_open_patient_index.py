"""the open prescriptions' patient index; no unique index on the events' public ids (issue 14)

The laboratory's lookup and the create's duplicate check only ever want open prescriptions:
they read a partial index of those, whose size follows a year of prescriptions instead of every
year kept (at 10 million prescriptions: 170 MB instead of 613 MB).

`ix_events_prescription_id_public_id` (unique) was the largest index of the base: 4.4 GB at 10
million prescriptions, 16 % of the whole, for a lookup of an event among its prescription's
few, which `ix_events_prescription_id` serves, and a uniqueness that 88 random bits give.

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
EVENT_IDS = "ix_events_prescription_id_public_id"


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
                EVENT_IDS, table_name="events", postgresql_concurrently=True, if_exists=True
            )
    else:
        op.create_index(
            "ix_prescriptions_open_patient", "prescriptions", COLUMNS, sqlite_where=OPEN_ROWS
        )
        op.drop_index(EVENT_IDS, table_name="events")


def downgrade() -> None:
    op.create_index(EVENT_IDS, "events", ["prescription_id", "public_id"], unique=True)
    op.drop_index("ix_prescriptions_open_patient", table_name="prescriptions")
