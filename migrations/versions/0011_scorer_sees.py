"""jobs.scorer_sees: what the job's scorer saw in its input (labels, faces, text, colours)

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 23:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scorer_sees', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('scorer_sees')
