"""indexes that stay small and selective as the base grows (issue 14)

- clients: a partial index on revoked clients, for the revocation count every instance reads
  every few hundred ms (api.auth.ClientCache);
- prescriptions: the expiry command's index holds only active prescriptions (by expires_at),
  the purge's only closed ones (by updated_at), instead of (status, expires_at) over every row;
- prescription_lines: no index on loinc: a LOINC code is not selective (a few exams are on
  most lines), only the duplicate check filtered on it and it now reads the patient's open
  prescriptions first; the index could only mislead the planner and cost every insert.

Revision ID: 0003_i14
Revises: 0002_i09
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0003_i14'
down_revision = '0002_i09'
branch_labels = None
depends_on = None

ACTIVE = sa.text("status = 'active'")
CLOSED = sa.text("status IN ('completed', 'cancelled', 'expired')")
REVOKED = sa.text("revoked_at IS NOT NULL")


def upgrade() -> None:
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.create_index(
            'ix_clients_revoked', ['revoked_at'], postgresql_where=REVOKED, sqlite_where=REVOKED
        )
    with op.batch_alter_table('prescriptions', schema=None) as batch_op:
        batch_op.create_index(
            'ix_prescriptions_active_expires', ['expires_at'],
            postgresql_where=ACTIVE, sqlite_where=ACTIVE,
        )
        batch_op.create_index(
            'ix_prescriptions_closed_updated', ['updated_at'],
            postgresql_where=CLOSED, sqlite_where=CLOSED,
        )
        batch_op.drop_index('ix_prescriptions_status_expires')
    with op.batch_alter_table('prescription_lines', schema=None) as batch_op:
        batch_op.drop_index('ix_prescription_lines_loinc')


def downgrade() -> None:
    with op.batch_alter_table('prescription_lines', schema=None) as batch_op:
        batch_op.create_index('ix_prescription_lines_loinc', ['loinc'], unique=False)
    with op.batch_alter_table('prescriptions', schema=None) as batch_op:
        batch_op.create_index('ix_prescriptions_status_expires', ['status', 'expires_at'])
        batch_op.drop_index('ix_prescriptions_closed_updated')
        batch_op.drop_index('ix_prescriptions_active_expires')
    with op.batch_alter_table('clients', schema=None) as batch_op:
        batch_op.drop_index('ix_clients_revoked')
