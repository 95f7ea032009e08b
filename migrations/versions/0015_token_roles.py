"""API tokens have a role (admin, user, reader; every token made before is an admin, as every token
could do anything); jobs and batches record the token that made them, and job events the token
that acted (token_id; NULL: the CLI, a worker, or a job stored before)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-07 04:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None

TABLES = ('jobs', 'batches', 'job_events')


def upgrade() -> None:
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        # Existing rows take the server default 'admin'; new ones are users unless made otherwise.
        batch_op.add_column(sa.Column('role', sa.String(length=20), nullable=False, server_default='admin'))
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.alter_column('role', existing_type=sa.String(length=20), existing_nullable=False,
                              server_default='user')
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('token_id', sa.Integer(), nullable=True))
            batch_op.create_foreign_key(f'fk_{table}_token_id', 'api_tokens', ['token_id'], ['id'])
            if table == 'jobs':  # a token's jobs in flight are counted at each of its submissions
                batch_op.create_index('ix_jobs_token_id', ['token_id'], unique=False)


def downgrade() -> None:
    for table in reversed(TABLES):
        with op.batch_alter_table(table, schema=None) as batch_op:
            if table == 'jobs':
                batch_op.drop_index('ix_jobs_token_id')
            batch_op.drop_constraint(f'fk_{table}_token_id', type_='foreignkey')
            batch_op.drop_column('token_id')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('role')
