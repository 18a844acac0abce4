"""Finding 1 of the security review: every spreadsheet the service writes, Flask-Admin's own
immediate « Export » included, keeps a cell typed as « =… » (« +… », « -… », « @… », a tab or a
carriage return first) as text, never as a formula: one function (``spreadsheets.safe_text``)."""

from __future__ import annotations

import csv
import io

import openpyxl

from app.services.spreadsheets import _FORMULA_START, _PLAIN_NUMBER
from tests.factories import AntenneFactory, ExpertFactory, InboundMessageFactory, make_need, make_solicitation
from tests.helpers import admin_view

FORMULA = '=HYPERLINK("http://pirate.example","Cliquez")'


def cells(response) -> list[str]:
    """Every cell below the header of Flask-Admin's CSV (comma-separated)."""
    assert response.status_code == 200, response.get_data(as_text=True)[:300]
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    return [cell for row in rows[1:] for cell in row]


def test_every_immediate_export_keeps_formulas_as_text(app, db, admin_client):
    antenne = AntenneFactory(name="@SOMME(A1:A9)")
    ExpertFactory(antenne=antenne, full_name=FORMULA, email="formule@partenaire.example")
    make_solicitation(full_name=FORMULA, description="+33 trop court ? -2+3", mtm_campaign="=1+1")
    make_need(contact=FORMULA, company="-Société")
    InboundMessageFactory(sender="=cmd|' /C calc'!A0", subject="\t=1+1", state="held", reason="inconnu")
    exported = 0
    for view in app.extensions["pde_admin"]._views:
        if not getattr(view, "model", None) or not view.can_export or "csv" not in view.export_types:
            continue
        values = cells(admin_client.get(f"{view.url}/export/csv/"))
        exported += 1
        for value in values:
            assert not (value.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(value)), (
                f"{view.endpoint}: {value!r} would run as a formula"
            )
    assert exported >= 8
    expert_cells = cells(admin_client.get(f"{admin_view('expert').url}/export/csv/"))
    assert "'" + FORMULA in expert_cells  # kept, as typed, behind an apostrophe


def test_every_prepared_export_keeps_formulas_as_text(db, admin_user):
    from sqlalchemy import select

    from app.models import Export
    from app.services.requests.exports import request_export
    from app.services.transactions import transaction

    make_solicitation(full_name=FORMULA, status="processed")
    make_need(contact=FORMULA, company="-Société", statuses=("quo",))
    for kind in ("solicitations", "needs", "matches"):
        for fmt in ("csv", "xlsx"):
            with transaction():
                export = request_export(admin_user, kind, fmt, {})
            db.session.expire_all()
            export = db.session.scalar(select(Export).where(Export.id == export.id))
            assert export.state == "done", export.error
            if fmt == "csv":
                values = [
                    c for row in csv.reader(io.StringIO(export.content.decode("utf-8-sig")), delimiter=";") for c in row
                ]
                assert not [v for v in values if v.startswith(_FORMULA_START) and not _PLAIN_NUMBER.match(v)], kind
            else:
                book = openpyxl.load_workbook(io.BytesIO(export.content))  # not read-only: cell types are read
                formulas = [c.coordinate for row in book.worksheets[0].iter_rows() for c in row if c.data_type == "f"]
                assert formulas == [], kind
