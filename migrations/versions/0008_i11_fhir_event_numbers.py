"""FHIR subscriptions: event numbers (i11)

Revision ID: 0008_i11
Revises: 0007_i13
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0008_i11'
down_revision = '0007_i13'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('webhook_subscriptions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('events_count', sa.Integer(), server_default='0', nullable=False))
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.add_column(sa.Column('number', sa.Integer(), nullable=True))
        batch_op.create_index('ix_webhook_deliveries_number', ['subscription_id', 'number'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('webhook_deliveries', schema=None) as batch_op:
        batch_op.drop_index('ix_webhook_deliveries_number')
        batch_op.drop_column('number')
    with op.batch_alter_table('webhook_subscriptions', schema=None) as batch_op:
        batch_op.drop_column('events_count')
