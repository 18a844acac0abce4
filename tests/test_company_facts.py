"""Issue 14, company facts: what the registry says of a company (headcount bracket, creation date,
NAF, legal form, nature of activity) is stored with its établissement when a request is sent,
and shown to staff, to the experts and in the needs export."""

from __future__ import annotations

from datetime import date

from app.services.reference.registry import FakeRegistry, company_facts, headcount_text
from app.services.requests.solicitations import submit_solicitation
from app.services.transactions import transaction
from tests.factories import solicitation_input
from tests.helpers import text


def _routed(book):
    with transaction():
        solicitation = submit_solicitation(solicitation_input())
    assert solicitation.need is not None, solicitation.qualification_notes
    return solicitation.need


def test_the_registrys_facts_are_stored_with_the_establishment(db, book):
    need = _routed(book)
    facility = need.facility
    expected = FakeRegistry().lookup(facility.siret)
    assert facility.naf_code == expected.naf_code
    assert facility.headcount_code == expected.headcount_code
    assert facility.created_on == date.fromisoformat(expected.created_on)
    assert facility.activity_nature == expected.activity_nature
    assert facility.company.legal_form == expected.legal_form


def test_staff_and_experts_read_the_facts_and_the_export_has_them(app, db, book, admin_client):
    need = _routed(book)
    facts = dict(company_facts(need.facility))
    assert facts["Effectif"] == headcount_text(need.facility.headcount_code)
    page = text(admin_client.get(f"/admin/need/details/?id={need.id}"))
    assert "Registre des entreprises" in page and f"Effectif : {facts['Effectif']}" in page

    from app.services.messaging.links import expert_token

    with app.test_request_context():
        token = expert_token(need.matches[0])
    expert_page = text(admin_client.get(f"/expert/{token}"))
    assert f"Effectif : {facts['Effectif']}" in expert_page
    assert f"Activité principale (NAF) : {need.facility.naf_code}" in expert_page

    exported = admin_client.get("/admin/need/export/csv/").get_data(as_text=True)
    header = exported.splitlines()[0]
    assert "Effectif" in header and "Nature d'activité" in header and "Forme juridique" in header
    assert facts["Effectif"] in exported


def test_a_fact_the_registry_did_not_give_says_so():
    assert headcount_text("NN") == "effectif inconnu"
    assert headcount_text(None) == "non renseigné"
    assert headcount_text("11") == "10 à 19 salariés"
