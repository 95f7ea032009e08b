"""job_links: a job built on other jobs' results (cross-modal arithmetic)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 04:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('job_links',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('parent_id', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['parent_id'], ['jobs.id'], ),
    sa.PrimaryKeyConstraint('job_id', 'position')
    )
    with op.batch_alter_table('job_links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_links_parent_id'), ['parent_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('job_links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_links_parent_id'))
    op.drop_table('job_links')
