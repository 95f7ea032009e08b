"""pools, pool_scores: the bootstrap pool stored once by version, each job's step 0 as arrays

Existing jobs are not converted: their step 0 stays as rows of `candidates`, and every reader
reads both layouts (worker.store.pools). Downgrading writes each compact step 0 back as rows
(ids after the job's later rows: sorts that break ties by id may order them differently).

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-30 21:00:00
"""
import json
import sys
import zlib
from array import array

from alembic import op
import sqlalchemy as sa


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pools',
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('texts', sa.LargeBinary(), nullable=False),
    sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_table('pool_scores',
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('pool_sha256', sa.String(length=64), nullable=False),
    sa.Column('scores', sa.LargeBinary(), nullable=False),
    sa.Column('detail_names', sa.JSON(), nullable=False),
    sa.Column('details', sa.LargeBinary(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['pool_sha256'], ['pools.sha256'], ),
    sa.PrimaryKeyConstraint('job_id')
    )
    with op.batch_alter_table('pool_scores', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pool_scores_pool_sha256'), ['pool_sha256'], unique=False)


def _floats(data):
    values = array('d')
    values.frombytes(data or b'')
    if sys.byteorder == 'big':
        values.byteswap()
    return values


def downgrade() -> None:
    from worker.core import normalize

    bind = op.get_bind()
    candidates = sa.table('candidates', sa.column('job_id'), sa.column('step'), sa.column('text'),
                          sa.column('text_key'), sa.column('score'), sa.column('rank'),
                          sa.column('details', sa.JSON()))
    pools = {}
    for job_id, sha256, scores, names, details in bind.execute(sa.text(
            'SELECT job_id, pool_sha256, scores, detail_names, details FROM pool_scores ORDER BY job_id')).all():
        if sha256 not in pools:
            data = bind.execute(sa.text('SELECT texts FROM pools WHERE sha256 = :s'), {'s': sha256}).scalar_one()
            pools[sha256] = json.loads(zlib.decompress(data))
        texts, scores, parts = pools[sha256], _floats(scores), _floats(details)
        names = json.loads(names) if isinstance(names, str) else names
        anchored = set(bind.execute(sa.text('SELECT text FROM candidates WHERE job_id = :j AND step = 0'),
                                    {'j': job_id}).scalars())
        rows = [{'job_id': job_id, 'step': 0, 'text': text, 'text_key': normalize(text), 'score': score, 'rank': None,
                 'details': {name: parts[p * len(texts) + i] for p, name in enumerate(names)} or None}
                for i, (text, score) in enumerate(zip(texts, scores)) if text not in anchored]
        for start in range(0, len(rows), 5000):
            bind.execute(candidates.insert(), rows[start:start + 5000])
    with op.batch_alter_table('pool_scores', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pool_scores_pool_sha256'))
    op.drop_table('pool_scores')
    op.drop_table('pools')
