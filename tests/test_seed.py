"""``flask seed demo``: the demo address book covers several régions and is idempotent."""

from __future__ import annotations

from sqlalchemy import func, select

from app.models import Antenne, AuditEvent, Expert, Institution, User, Zone
from app.services.seed import DEMO_STAFF_EMAIL


def _count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_seed_demo_twice(app, db):
    runner = app.test_cli_runner()
    first = runner.invoke(args=["seed", "demo"])
    assert first.exit_code == 0, first.output
    counts = {m: _count(db, m) for m in (Institution, Antenne, Expert, Zone, User)}
    assert counts[Institution] >= 8 and counts[Expert] >= 25
    regions = set(db.session.scalars(select(Zone.code).where(Zone.kind == "region")))
    assert {"11", "53", "76", "84"} <= regions
    assert db.session.scalar(select(User).where(User.email == DEMO_STAFF_EMAIL)).is_admin
    events = _count(db, AuditEvent)

    second = runner.invoke(args=["seed", "demo"])
    assert second.exit_code == 0, second.output
    assert {m: _count(db, m) for m in counts} == counts
    assert _count(db, AuditEvent) == events


def test_demo_staff_can_log_in(app, db, client):
    from tests.helpers import login

    assert app.test_cli_runner().invoke(args=["seed", "demo"]).exit_code == 0
    response = login(client, DEMO_STAFF_EMAIL, "demo-support-2026")
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


def test_routing_explain_on_demo_data(app, db):
    """Lyon, recruiting: the CMA (regional zone) and France Travail (Métropole de Lyon EPCI)."""
    import json

    assert app.test_cli_runner().invoke(args=["seed", "demo"]).exit_code == 0
    result = app.test_cli_runner().invoke(args=["routing", "explain", "recrutement", "69123", "--json"])
    assert result.exit_code == 0, result.output
    found = {(m["institution"], m["zone"]) for m in json.loads(result.output)}
    assert found == {("CMA France", "region:84"), ("France Travail", "epci:200046977")}


def test_seed_demo_submits_requests_through_the_real_flow(app, db):
    from app.models import Match, Need, OutboundEmail, Solicitation
    from app.services.seed import DEMO_HISTORY_DOMAIN

    assert app.test_cli_runner().invoke(args=["seed", "demo"]).exit_code == 0
    current = ~Solicitation.email.like(f"%@{DEMO_HISTORY_DOMAIN}")
    solicitations = db.session.scalars(select(Solicitation).where(current).order_by(Solicitation.id)).all()
    assert len(solicitations) == 7
    by_subject = {s.subject.slug: s for s in solicitations}
    assert by_subject["recrutement"].status == "processed"
    assert by_subject["recrutement"].need.status == "done"
    # Nobody offers cybersecurity in Finistère in the demo book: it waits for the support team.
    assert by_subject["cybersecurite"].status == "in_progress"
    assert by_subject["cybersecurite"].qualification_notes
    # A confirmation per request, one email per expert, and the « Prise en charge » of the need
    # the demo answers (services.matches).
    ids = [s.id for s in solicitations]
    matches = db.session.scalars(
        select(Match).join(Match.need).where(Match.need.has(Need.solicitation_id.in_(ids)))
    ).all()
    keys = set(db.session.scalars(select(OutboundEmail.key)))
    assert {f"solicitation:{i}:confirmation" for i in ids} <= keys
    assert {f"match:{m.id}:new" for m in matches} <= keys
    total, emails = _count(db, Solicitation), _count(db, OutboundEmail)
    assert app.test_cli_runner().invoke(args=["seed", "demo"]).exit_code == 0
    assert _count(db, Solicitation) == total and _count(db, OutboundEmail) == emails


def test_the_demo_filters_send_an_artisan_to_the_cma_and_a_trader_to_the_cci(app, db):
    """Issue 14, as a new user tries it: the same subject at Lyon reaches the CMA for an artisan
    and the CCI for a trader; a company whose nature is unknown waits for staff, with the reason;
    and each need records who was excluded and why."""
    from app.models import Solicitation

    assert app.test_cli_runner().invoke(args=["seed", "demo"]).exit_code == 0
    ceding = db.session.scalars(
        select(Solicitation).join(Solicitation.subject).where(Solicitation.subject.has(slug="ceder-entreprise"))
    ).all()
    by_siret = {s.siret[:9]: s for s in ceding}
    artisan, trader, unknown = by_siret["512345612"], by_siret["612345611"], by_siret["712345693"]
    assert {m.expert.antenne.institution.name for m in artisan.need.matches} == {"CMA France"}
    assert {m.expert.antenne.institution.name for m in trader.need.matches} == {"CCI France"}
    excluded = [entry for entry in artisan.need.routing_checks if entry["decision"] == "refuse"]
    assert [entry["institution"] for entry in excluded] == ["CCI France"]
    assert "activité artisanale, non acceptée" in excluded[0]["checks"][0]
    assert unknown.status == "in_progress" and unknown.need is None
    assert any(
        "Filtre non évalué" in note and "nature d'activité inconnue" in note for note in unknown.qualification_notes
    )


def test_the_demo_gives_the_follow_up_and_the_relances_desk_something_to_show(app, db):
    from app.services.requests.followup import run_followup
    from app.services.requests.reminders import need_counts

    assert app.test_cli_runner().invoke(args=["seed", "demo"]).exit_code == 0
    weekly = ("recapitulatif", "experts-en-attente")  # Tuesday to Friday only: not every day the test runs
    steps = sorted(item.step for item in run_followup(dry_run=True) if item.step not in weekly)
    assert steps == ["derniere-chance", "derniere-chance", "satisfaction", "suivi", "suivi"]
    staff = db.session.scalar(select(User).where(User.email == DEMO_STAFF_EMAIL))
    assert need_counts(staff) == {"sans-reponse": 1, "risque-abandon": 1, "refuses": 0}
