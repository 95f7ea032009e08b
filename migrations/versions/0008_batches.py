"""batches, batch_items, batch_evaluations: jobs over a dataset, their items' keys and reference
captions, and the batch's caption metrics

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-30 18:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'batches',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=100), nullable=False),
        sa.Column('task', sa.String(length=40), nullable=False),
        sa.Column('settings', sa.JSON(), nullable=False),
        sa.Column('options', sa.JSON(), nullable=False),
        sa.Column('generator', sa.String(length=500), nullable=False),
        sa.Column('scorer', sa.String(length=500), nullable=False),
        sa.Column('sources', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_batches')),
        sa.UniqueConstraint('name', name=op.f('uq_batches_name')),
    )
    op.create_table(
        'batch_items',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('batch_id', sa.Integer(), nullable=False),
        sa.Column('item_key', sa.String(length=255), nullable=False),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('references', sa.JSON(), nullable=True),
        sa.Column('job_id', sa.Integer(), nullable=True),
        sa.Column('queued', sa.Boolean(), nullable=False),
        sa.Column('error', sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_batch_items_batch_id_batches'),
                                ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_batch_items_job_id_jobs'),
                                ondelete='SET NULL'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_items')),
        sa.UniqueConstraint('batch_id', 'item_key', name='uq_batch_items_key'),
        sa.UniqueConstraint('job_id', name=op.f('uq_batch_items_job_id')),
    )
    op.create_index('ix_batch_items_batch_position', 'batch_items', ['batch_id', 'position'], unique=False)
    op.create_table(
        'batch_evaluations',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('batch_id', sa.Integer(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('references', sa.String(length=500), nullable=False),
        sa.Column('items', sa.Integer(), nullable=False),
        sa.Column('metrics', sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(['batch_id'], ['batches.id'], name=op.f('fk_batch_evaluations_batch_id_batches'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_batch_evaluations')),
    )
    op.create_index(op.f('ix_batch_evaluations_batch_id'), 'batch_evaluations', ['batch_id'], unique=False)


def downgrade() -> None:
    op.drop_index(op.f('ix_batch_evaluations_batch_id'), table_name='batch_evaluations')
    op.drop_table('batch_evaluations')
    op.drop_index('ix_batch_items_batch_position', table_name='batch_items')
    op.drop_table('batch_items')
    op.drop_table('batches')
