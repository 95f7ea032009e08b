"""jobs.priority, jobs.queued_at, jobs.worker; batches.priority, batches.max_in_flight; an index of steps by finish time: liveness that
tells a step waiting in the queue from a worker that died, priorities, and a limit on a batch's
jobs in flight

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30 20:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs') as batch:
        batch.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='0'))
        batch.add_column(sa.Column('queued_at', sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column('worker', sa.String(length=255), nullable=True))
        batch.create_index('ix_jobs_status_queued_at', ['status', 'queued_at'], unique=False)
    with op.batch_alter_table('batches') as batch:
        batch.add_column(sa.Column('priority', sa.Integer(), nullable=False, server_default='-1'))
        batch.add_column(sa.Column('max_in_flight', sa.Integer(), nullable=True))
    # Steps per minute for operators (worker.ops) without a scan of every step.
    op.create_index('ix_steps_finished_at', 'steps', ['finished_at'], unique=False)
    # Jobs queued before this migration were put on the queue when they were made.
    op.execute("UPDATE jobs SET queued_at = created_at WHERE status = 'queued'")


def downgrade() -> None:
    op.drop_index('ix_steps_finished_at', table_name='steps')
    with op.batch_alter_table('batches') as batch:
        batch.drop_column('max_in_flight')
        batch.drop_column('priority')
    with op.batch_alter_table('jobs') as batch:
        batch.drop_index('ix_jobs_status_queued_at')
        batch.drop_column('worker')
        batch.drop_column('queued_at')
        batch.drop_column('priority')
