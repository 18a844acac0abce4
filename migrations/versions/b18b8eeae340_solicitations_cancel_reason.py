"""solicitations: cancel reason

Revision ID: b18b8eeae340
Revises: 2a46543482d7
Create Date: 2026-12-03 09:36:34.338100

The reason a request was canceled used to live only in a French note of its JSON notes
(« Abandonnée : spam », « Abandonnée : Hors du champ du service »…), parsed back by the desk's
« Spam » tab and by the block of spam addresses. It becomes a column, filled here from those
notes: the last cancellation note of each canceled request gives its code; a reason typed by
hand (or none) is ``other``. The notes stay as they are, for the request's history.
"""
import json

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = 'b18b8eeae340'
down_revision = '2a46543482d7'
branch_labels = None
depends_on = None

NOTE_PREFIX = "abandonnée : "
CODES = {
    "spam": "spam",
    "hors du champ du service": "out_of_scope",
    "pas une entreprise": "not_a_company",
    "demande incomplète": "incomplete",
}
BATCH = 5000


def _reason(notes) -> str:
    if isinstance(notes, str):
        try:
            notes = json.loads(notes)
        except ValueError:
            notes = []
    for note in reversed(notes or []):
        text = str(note).strip().casefold()
        if text.startswith(NOTE_PREFIX):
            return CODES.get(text[len(NOTE_PREFIX):].strip(), "other")
    return "other"


def upgrade():
    with op.batch_alter_table('solicitations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('cancel_reason', sa.String(length=20), nullable=True))
        batch_op.create_index(batch_op.f('ix_solicitations_cancel_reason'), ['cancel_reason'], unique=False)

    connection = op.get_bind()
    solicitations = sa.table(
        'solicitations', sa.column('id', sa.Integer), sa.column('status', sa.String), sa.column('qualification_notes', sa.JSON),
        sa.column('cancel_reason', sa.String),
    )
    last_id = 0
    while True:
        rows = connection.execute(
            sa.select(solicitations.c.id, solicitations.c.qualification_notes)
            .where(solicitations.c.status == 'canceled', solicitations.c.id > last_id)
            .order_by(solicitations.c.id)
            .limit(BATCH)
        ).all()
        if not rows:
            break
        connection.execute(
            solicitations.update().where(solicitations.c.id == sa.bindparam('row_id')).values(cancel_reason=sa.bindparam('reason')),
            [{'row_id': row_id, 'reason': _reason(notes)} for row_id, notes in rows],
        )
        last_id = rows[-1][0]

    with op.batch_alter_table('solicitations', schema=None) as batch_op:
        batch_op.create_check_constraint(
            'cancel_reason',
            "cancel_reason IS NULL OR (status = 'canceled' AND cancel_reason IN "
            "('out_of_scope', 'not_a_company', 'incomplete', 'spam', 'other'))",
        )


def downgrade():
    with op.batch_alter_table('solicitations', schema=None) as batch_op:
        batch_op.drop_constraint('cancel_reason', type_='check')
        batch_op.drop_index(batch_op.f('ix_solicitations_cancel_reason'))
        batch_op.drop_column('cancel_reason')
