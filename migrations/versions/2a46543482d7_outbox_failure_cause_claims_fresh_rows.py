"""outbox: failure cause, delivery claims, index of fresh rows

Revision ID: 2a46543482d7
Revises: 73a0fa551ae1
Create Date: 2026-12-03 08:01:15.367820

"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '2a46543482d7'
down_revision = '73a0fa551ae1'
branch_labels = None
depends_on = None

FRESH = sa.text("state = 'queued' AND next_attempt_at IS NULL")

# The rows that failed before causes were recorded, classified from the error text the outbox
# stored (« Refus du serveur SMTP (500 Line too long …) » and the like), so that staff find the
# emails refused for a defect of the message itself and re-send them.
BACKFILL = [
    (
        "message",
        "state = 'failed' AND ("
        "lower(last_error) LIKE '%line too long%' OR lower(last_error) LIKE '%too much mail data%'"
        " OR lower(last_error) LIKE '%too big%' OR lower(last_error) LIKE '%too large%'"
        " OR lower(last_error) LIKE '%size%' OR last_error LIKE '%(552 %' OR last_error LIKE '%5.3.4%')",
    ),
    ("recipient", "state = 'failed' AND (last_error LIKE 'Destinataire refusé%' OR last_error LIKE 'Refus du serveur SMTP (5%')"),
    ("internal", "state = 'failed' AND last_error LIKE 'Erreur inattendue%'"),
    ("relay", "state = 'failed' AND last_error IS NOT NULL"),
]


def upgrade():
    with op.batch_alter_table('outbound_emails', schema=None) as batch_op:
        batch_op.add_column(sa.Column('failure_cause', sa.String(length=12), nullable=True))
        batch_op.add_column(sa.Column('claimed_by', sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column('claimed_until', sa.DateTime(timezone=True), nullable=True))
        batch_op.create_check_constraint(
            'failure_cause', "failure_cause IS NULL OR failure_cause IN ('recipient', 'message', 'relay', 'internal')"
        )
        batch_op.create_index('ix_outbound_emails_fresh', ['id'], unique=False, postgresql_where=FRESH, sqlite_where=FRESH)
    for cause, condition in BACKFILL:
        op.execute(
            sa.text(f"UPDATE outbound_emails SET failure_cause = :cause WHERE failure_cause IS NULL AND {condition}").bindparams(
                cause=cause
            )
        )


def downgrade():
    with op.batch_alter_table('outbound_emails', schema=None) as batch_op:
        batch_op.drop_index('ix_outbound_emails_fresh', postgresql_where=FRESH, sqlite_where=FRESH)
        batch_op.drop_constraint('failure_cause', type_='check')
        batch_op.drop_column('claimed_until')
        batch_op.drop_column('claimed_by')
        batch_op.drop_column('failure_cause')
