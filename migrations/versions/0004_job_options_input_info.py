"""jobs.options (task options) and jobs.input_info (what the input is)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 03:40:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0004'
down_revision = '0003'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('input_info', sa.JSON(), server_default='{}', nullable=False))
        batch_op.add_column(sa.Column('options', sa.JSON(), server_default='{}', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('options')
        batch_op.drop_column('input_info')
