"""candidates.details (the parts of a score) and candidates.artifact_sha256 (what it rendered)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-27 03:55:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('candidates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('details', sa.JSON(), nullable=True))
        batch_op.add_column(sa.Column('artifact_sha256', sa.String(length=64), nullable=True))
        batch_op.create_foreign_key('fk_candidates_artifact', 'artifacts', ['artifact_sha256'], ['sha256'])


def downgrade() -> None:
    with op.batch_alter_table('candidates', schema=None) as batch_op:
        batch_op.drop_constraint('fk_candidates_artifact', type_='foreignkey')
        batch_op.drop_column('artifact_sha256')
        batch_op.drop_column('details')
