"""jobs.scorer_sees: what the job's scorer saw in its input (labels, faces, text, colours);
batches stored before get fluency_weight 0 in their settings

Settings gained fluency_weight (the fluency guard). A batch's later items are resolved from the
batch's stored settings; without the key they would get the guard's default while its earlier
items ran without it. Jobs need nothing: a job's settings without the key load as 0 (off).

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30 23:00:00
"""
from alembic import op
import sqlalchemy as sa

batches = sa.table('batches', sa.column('id', sa.Integer), sa.column('settings', sa.JSON))
jobs = sa.table('jobs', sa.column('id', sa.Integer), sa.column('settings', sa.JSON))


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scorer_sees', sa.JSON(), nullable=True))
    connection = op.get_bind()
    for batch_id, settings in connection.execute(sa.select(batches.c.id, batches.c.settings)).all():
        if 'fluency_weight' not in settings:
            connection.execute(batches.update().where(batches.c.id == batch_id)
                               .values(settings={**settings, 'fluency_weight': 0.0}))


def downgrade() -> None:
    # The code of 0010 refuses settings it does not know: take the key out of every stored
    # setting (jobs resumed by that code then run without the guard, as that code can only).
    connection = op.get_bind()
    for table in (batches, jobs):
        for row_id, settings in connection.execute(sa.select(table.c.id, table.c.settings)).all():
            if 'fluency_weight' in settings:
                rest = {k: v for k, v in settings.items() if k != 'fluency_weight'}
                connection.execute(table.update().where(table.c.id == row_id).values(settings=rest))
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_column('scorer_sees')
