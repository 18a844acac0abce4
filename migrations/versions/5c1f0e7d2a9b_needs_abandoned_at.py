"""needs.abandoned_at: when the business was told its need failed (follow-up, day 45)

Revision ID: 5c1f0e7d2a9b
Revises: b18b8eeae340
Create Date: 2026-12-03 14:00:00

"""
import sqlalchemy as sa
from alembic import op

revision = '5c1f0e7d2a9b'
down_revision = 'b18b8eeae340'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('needs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('abandoned_at', sa.DateTime(timezone=True), nullable=True))


def downgrade():
    with op.batch_alter_table('needs', schema=None) as batch_op:
        batch_op.drop_column('abandoned_at')
