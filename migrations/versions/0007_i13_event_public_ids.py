"""history events get an opaque public id (the integer id told how busy the whole base was)

`events.id` stays the integer primary key (the webhook dispatcher reads the table by it); the
API shows `public_id`, random, and pages the history by it.

Revision ID: 0007_i13
Revises: 0006_i09
Create Date: 2026-12-01
"""
from alembic import op
import sqlalchemy as sa


revision = '0007_i13'
down_revision = '0006_i09'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.add_column(sa.Column('public_id', sa.String(length=24), nullable=True))
    if op.get_bind().dialect.name == 'postgresql':
        op.execute("UPDATE events SET public_id = substr(md5(random()::text || id::text), 1, 22)")
    else:
        op.execute("UPDATE events SET public_id = lower(hex(randomblob(11)))")
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.create_index(
            'ix_events_prescription_id_public_id', ['prescription_id', 'public_id'], unique=True
        )


def downgrade() -> None:
    with op.batch_alter_table('events', schema=None) as batch_op:
        batch_op.drop_index('ix_events_prescription_id_public_id')
        batch_op.drop_column('public_id')
