"""steps.llm_requests, prompt_tokens, completion_tokens, renders, rejected_lines, worker: what each
step cost and where it ran; NULL, as for every step stored before, reads as "not recorded"

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 01:30:00
"""
from alembic import op
import sqlalchemy as sa


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None

COUNTS = ('llm_requests', 'prompt_tokens', 'completion_tokens', 'renders', 'rejected_lines')


def upgrade() -> None:
    with op.batch_alter_table('steps', schema=None) as batch_op:
        for name in COUNTS:
            batch_op.add_column(sa.Column(name, sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('worker', sa.String(length=255), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('steps', schema=None) as batch_op:
        batch_op.drop_column('worker')
        for name in reversed(COUNTS):
            batch_op.drop_column(name)
