"""satisfaction_answers: the business's answer to the survey of one need

Revision ID: 7d2e4b9c1f30
Revises: 5c1f0e7d2a9b
Create Date: 2026-12-03 14:30:00

"""
import sqlalchemy as sa
from alembic import op

revision = '7d2e4b9c1f30'
down_revision = '5c1f0e7d2a9b'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'satisfaction_answers',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('need_id', sa.Integer(), nullable=False),
        sa.Column('contacted', sa.Boolean(), nullable=True),
        sa.Column('useful', sa.Boolean(), nullable=True),
        sa.Column('outcomes', sa.JSON(), nullable=False),
        sa.Column('comment', sa.Text(), nullable=True),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(['need_id'], ['needs.id'], name=op.f('fk_satisfaction_answers_need_id_needs')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_satisfaction_answers')),
        sa.UniqueConstraint('need_id', name=op.f('uq_satisfaction_answers_need_id')),
    )


def downgrade():
    op.drop_table('satisfaction_answers')
