"""jobs.input_media_type: the media type of the input as this job uses it (the same stored bytes
can be a video for one job and a sound recording for another)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-30 12:50:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('input_media_type', sa.String(length=100), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('input_media_type')
