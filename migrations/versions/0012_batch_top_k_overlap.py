"""batches stored before get top_k_overlap 1 (off) in their settings

Settings gained top_k_overlap (a top K of different wordings; 0.5 with the embedded LLM). A
batch's later items are resolved from the batch's stored settings; without the key they would get
the embedded LLM's 0.5 while its earlier items ran without it. Jobs need nothing: a job's
settings without the key load as 1 (off).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 02:30:00
"""
from alembic import op
import sqlalchemy as sa

batches = sa.table('batches', sa.column('id', sa.Integer), sa.column('settings', sa.JSON))
jobs = sa.table('jobs', sa.column('id', sa.Integer), sa.column('settings', sa.JSON))


revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    connection = op.get_bind()
    for batch_id, settings in connection.execute(sa.select(batches.c.id, batches.c.settings)).all():
        if 'top_k_overlap' not in settings:
            connection.execute(batches.update().where(batches.c.id == batch_id)
                               .values(settings={**settings, 'top_k_overlap': 1.0}))


def downgrade() -> None:
    # The code of 0011 refuses settings it does not know: take the key out of every stored
    # setting (jobs resumed by that code then run with a plain top K).
    connection = op.get_bind()
    for table in (batches, jobs):
        for row_id, settings in connection.execute(sa.select(table.c.id, table.c.settings)).all():
            if 'top_k_overlap' in settings:
                rest = {k: v for k, v in settings.items() if k != 'top_k_overlap'}
                connection.execute(table.update().where(table.c.id == row_id).values(settings=rest))
