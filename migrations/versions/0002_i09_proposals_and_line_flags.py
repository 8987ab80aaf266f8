"""proposals, the last laboratory of a prescription, eP-BIO line flags

Revision ID: 0002_i09
Revises: 0001
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_i09"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("prescriptions") as batch_op:
        batch_op.add_column(sa.Column("last_lab_id", sa.Integer(), nullable=True))
        batch_op.create_foreign_key(
            "fk_prescriptions_last_lab_id_clients", "clients", ["last_lab_id"], ["id"]
        )
    # Who took each prescription last, from the audit trail (the holder, or the last taker).
    op.execute(
        "UPDATE prescriptions SET last_lab_id = COALESCE(lab_id, (SELECT e.actor_client_id"
        " FROM events e WHERE e.prescription_id = prescriptions.id AND e.type = 'taken'"
        " ORDER BY e.id DESC LIMIT 1)) WHERE lab_finess IS NOT NULL"
    )
    with op.batch_alter_table("prescription_lines") as batch_op:
        for name in ("work_accident", "not_reimbursable", "off_nomenclature"):
            batch_op.add_column(
                sa.Column(name, sa.Boolean(), nullable=False, server_default=sa.false())
            )
        batch_op.add_column(sa.Column("urgent_reason", sa.Text(), nullable=True))
    op.create_table(
        "proposals",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prescription_id", sa.Integer(), nullable=False),
        sa.Column("proposal_id", sa.String(length=8), nullable=False),
        sa.Column("status", sa.String(length=12), nullable=False),
        sa.Column("mode", sa.String(length=24), nullable=False),
        sa.Column("changes", sa.JSON(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("comment", sa.Text(), nullable=True),
        sa.Column("prescriber_id", sa.Integer(), nullable=False),
        sa.Column("lab_id", sa.Integer(), nullable=False),
        sa.Column("lab_finess", sa.String(length=9), nullable=False),
        sa.Column("lab_name", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("answered_at", sa.DateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["prescription_id"],
            ["prescriptions.id"],
            name="fk_proposals_prescription_id_prescriptions",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["prescriber_id"], ["clients.id"], name="fk_proposals_prescriber_id_clients"
        ),
        sa.ForeignKeyConstraint(["lab_id"], ["clients.id"], name="fk_proposals_lab_id_clients"),
        sa.PrimaryKeyConstraint("id", name="pk_proposals"),
        sa.UniqueConstraint(
            "prescription_id", "proposal_id", name="uq_proposals_prescription_id"
        ),
    )
    op.create_index("ix_proposals_prescription_id", "proposals", ["prescription_id"])
    op.create_index("ix_proposals_prescriber_inbox", "proposals", ["prescriber_id", "status", "id"])
    op.create_index("ix_proposals_lab_inbox", "proposals", ["lab_id", "status", "id"])


def downgrade() -> None:
    op.drop_table("proposals")
    with op.batch_alter_table("prescription_lines") as batch_op:
        for name in ("urgent_reason", "off_nomenclature", "not_reimbursable", "work_accident"):
            batch_op.drop_column(name)
    with op.batch_alter_table("prescriptions") as batch_op:
        batch_op.drop_constraint("fk_prescriptions_last_lab_id_clients", type_="foreignkey")
        batch_op.drop_column("last_lab_id")
