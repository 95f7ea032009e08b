"""jobs and batches name the user's prompt template and initial pool: prompt_sha256 (an artifact)
and pool_sha256 (a stored pool); NULL, as for every job stored before, is the task's own

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 01:00:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

TABLES = ('jobs', 'batches')


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column('prompt_sha256', sa.String(length=64), nullable=True))
            batch_op.add_column(sa.Column('pool_sha256', sa.String(length=64), nullable=True))
            batch_op.create_foreign_key(f'fk_{table}_prompt_sha256', 'artifacts', ['prompt_sha256'], ['sha256'])
            batch_op.create_foreign_key(f'fk_{table}_pool_sha256', 'pools', ['pool_sha256'], ['sha256'])


def downgrade() -> None:
    # The code of 0012 runs every job with the task's own prompt and pool: a job or batch that had
    # the user's would silently run as another experiment, so refuse rather than drop them.
    connection = op.get_bind()
    for table in TABLES:
        t = sa.table(table, sa.column('prompt_sha256'), sa.column('pool_sha256'))
        found = connection.execute(sa.select(sa.func.count()).select_from(t).where(
            sa.or_(t.c.prompt_sha256.is_not(None), t.c.pool_sha256.is_not(None)))).scalar()
        if found:
            raise RuntimeError(f"{found} {table} have the user's prompt or pool, which the older code cannot run; "
                               "purge them first")
    for table in TABLES:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f'fk_{table}_pool_sha256', type_='foreignkey')
            batch_op.drop_constraint(f'fk_{table}_prompt_sha256', type_='foreignkey')
            batch_op.drop_column('pool_sha256')
            batch_op.drop_column('prompt_sha256')
