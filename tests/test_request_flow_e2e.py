"""The request flow end to end, with nothing faked: the public form posted over HTTP,
PostgreSQL, a real Redis, a real RQ worker in burst mode, a real SMTP server (aiosmtpd), and
the expert's page opened from the link of the email the SMTP server received."""

from __future__ import annotations

import re
from collections import Counter

from sqlalchemy import select

from app.extensions import db as _db
from app.models import Match, Need, OutboundEmail, Solicitation
from app.services.addressbook.routing import find_experts
from app.services.messaging.outbox import message_id_for
from tests.factories import LYON, covering_expert, subject
from tests.helpers import csrf_token_from

FORM = "/demande/recrutement"
BUSINESS = "marie.dupont@boulangerie.example"
FIELDS = {
    "full_name": "Marie Dupont",
    "email": BUSINESS,
    "phone": "06 12 34 56 78",
    "siret": "123 456 782 00028",
    "postal_code": "69002",  # Lyon: one commune, so no INSEE code to choose
    "insee_code": "",
    "description": "Nous cherchons à recruter deux boulangers en CDI d'ici l'été, sans succès jusqu'ici.",
}


def _address_book() -> set[str]:
    """Three experts of two institutions cover Lyon for recruitment; two others must not be
    emailed (another département, another subject). Returns the routed experts' emails."""
    routed = {
        covering_expert("departement:69", full_name="Alice CCI").email,
        covering_expert("region:84", full_name="Bruno CMA").email,
        covering_expert("national", full_name="Chloé France Travail").email,
    }
    covering_expert("departement:13", full_name="Denis Marseille")
    covering_expert("departement:69", subject_slug="export", full_name="Eve Export")
    return routed


def _post_form(client) -> None:
    page = client.get(FORM).get_data(as_text=True)
    served_at = re.search(r'name="served_at" value="([^"]*)"', page).group(1)
    response = client.post(FORM, data={**FIELDS, "csrf_token": csrf_token_from(page), "served_at": served_at})
    assert response.status_code == 303, response.get_data(as_text=True)
    confirmation = client.get(response.headers["Location"])
    assert confirmation.status_code == 200
    assert "sous 5 jours ouvrés" in confirmation.get_data(as_text=True)


def _text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def test_a_request_from_the_form_reaches_exactly_the_experts_of_the_rule(db, worker_app, smtp_server, run_worker):
    routed_emails = _address_book()
    assert {r.email for r in find_experts(subject("recrutement").id, LYON)} == routed_emails
    client = worker_app.test_client()

    _post_form(client)

    _db.session.expire_all()
    solicitation = _db.session.scalar(select(Solicitation))
    assert solicitation.status == "processed"
    matches = solicitation.need.matches
    assert {m.expert.email for m in matches} == routed_emails
    # Stored and queued, not sent: delivery is the worker's job.
    assert smtp_server.messages == []
    keys = {f"solicitation:{solicitation.id}:confirmation"} | {f"match:{m.id}:new" for m in matches}
    assert {e.key for e in _db.session.scalars(select(OutboundEmail))} == keys

    worker = run_worker(worker_app)
    assert worker.failed == []

    recipients = Counter(a.addr_spec for message in smtp_server.messages for a in message["To"].addresses)
    assert recipients == Counter({solicitation.email: 1} | dict.fromkeys(routed_emails, 1))
    with worker_app.app_context():
        assert {message["Message-ID"] for message in smtp_server.messages} == {message_id_for(key) for key in keys}
    _db.session.expire_all()
    assert {e.state for e in _db.session.scalars(select(OutboundEmail))} == {"sent"}
    # A second burst finds nothing to do: every email was delivered exactly once.
    run_worker(worker_app)
    assert len(smtp_server.messages) == len(keys)

    [confirmation] = smtp_server.to(solicitation.email)
    assert str(confirmation["Subject"]) == "Confirmation de votre demande « Recruter un ou plusieurs salariés »"
    assert "sous 5 jours ouvrés" in _text(confirmation)

    base_url = worker_app.config["BASE_URL"]
    by_expert = {m.expert.email: m for m in matches}
    for address in routed_emails:
        [message] = smtp_server.to(address)
        text = _text(message)
        assert "Recruter un ou plusieurs salariés" in str(message["Subject"])
        assert "Lyon (69002)" in text and FIELDS["description"] in text
        [link] = [url for url in re.findall(r"https?://\S+", text) if url.startswith(f"{base_url}/expert/")]
        page = client.get(link.removeprefix(base_url))
        assert page.status_code == 200
        html = page.get_data(as_text=True)
        assert "Recruter un ou plusieurs salariés" in html and "Marie Dupont" in html

        if address == min(routed_emails):
            # The link works for answering too: this expert takes the need in charge.
            path = link.removeprefix(base_url)
            response = client.post(path, data={"status": "taking_care", "csrf_token": csrf_token_from(html)})
            assert response.status_code == 303
            _db.session.expire_all()
            assert _db.session.get(Match, by_expert[address].id).status == "taking_care"
            assert _db.session.get(Need, solicitation.need.id).status == "taking_care"


def test_a_long_one_paragraph_description_reaches_every_expert_intact(db, worker_app, smtp_server, run_worker):
    """A thousand characters typed without a line break, accents included: every email of the
    request leaves (the relay refused them all when bodies were sent unencoded) and the experts
    read the description as it was typed."""
    routed_emails = _address_book()
    description = (
        "Boulangerie-pâtisserie créée en 2019, nous souhaitons recruter deux salariés qualifiés "
        "(un boulanger et un vendeur) d'ici l'été ; malgré nos annonces, aucune candidature sérieuse. "
    ) * 6
    assert len(description) > 1000 and "\n" not in description
    client = worker_app.test_client()
    page = client.get(FORM).get_data(as_text=True)
    served_at = re.search(r'name="served_at" value="([^"]*)"', page).group(1)
    response = client.post(
        FORM,
        data={**FIELDS, "description": description, "csrf_token": csrf_token_from(page), "served_at": served_at},
    )
    assert response.status_code == 303, response.get_data(as_text=True)

    worker = run_worker(worker_app)

    assert worker.failed == []
    _db.session.expire_all()
    assert {(e.state, e.last_error) for e in _db.session.scalars(select(OutboundEmail))} == {("sent", None)}
    assert smtp_server.refused == 0
    for address in routed_emails:
        [message] = smtp_server.to(address)
        assert description.strip() in _text(message).replace("\r\n", "\n")
