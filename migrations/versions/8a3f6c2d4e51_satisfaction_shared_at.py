"""satisfaction_answers.shared_at: staff shared the answer with the need's partners

Revision ID: 8a3f6c2d4e51
Revises: 7d2e4b9c1f30
Create Date: 2026-12-03 14:45:00

"""
import sqlalchemy as sa
from alembic import op

revision = '8a3f6c2d4e51'
down_revision = '7d2e4b9c1f30'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('satisfaction_answers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('shared_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('satisfaction_answers', schema=None) as batch_op:
        batch_op.drop_column('shared_at')
