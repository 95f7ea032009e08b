"""jobs.generator_name, scorer_name and batches.generator_name, scorer_name: the model registry's
names (MILS_MODELS) the specs were chosen by; NULL for a raw spec and for every job stored before

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 04:10:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0016'
down_revision = '0015'
branch_labels = None
depends_on = None

NAMES = ('generator_name', 'scorer_name')


def upgrade() -> None:
    for table in ('jobs', 'batches'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in NAMES:
                batch_op.add_column(sa.Column(name, sa.String(length=64), nullable=True))


def downgrade() -> None:
    for table in ('batches', 'jobs'):
        with op.batch_alter_table(table, schema=None) as batch_op:
            for name in reversed(NAMES):
                batch_op.drop_column(name)
