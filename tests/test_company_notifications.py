"""The business's emails when experts answer (one takes the need, or none can help; services.matches):
« Prise en charge » once per need, « Appel manqué » once per match, both written in the
transaction of the status change and never sent twice, whatever the back and forth."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import select

from app.extensions import db as _db
from app.models import Match, Need, OutboundEmail
from app.services.errors import ServiceError
from app.services.messaging import links
from app.services.messaging.outbox import message_id_for
from app.services.requests import matches as matches_service
from app.services.requests.matches import change_match_status, expert_phone
from tests.factories import make_need
from tests.helpers import csrf_token_from

BUSINESS = "julie@durand.example"
SUBJECT = "Recruter un ou plusieurs salariés"


def _name(match: Match, full_name: str, antenne: str, institution: str, phone: str | None = None) -> None:
    """Give the match's expert recognisable names (the factory's are « Expert 12 »…)."""
    expert = match.expert
    expert.full_name = full_name
    expert.phone = phone
    expert.antenne.name = antenne
    expert.antenne.institution.name = institution
    _db.session.commit()


def _outbox(prefix: str = "") -> list[OutboundEmail]:
    _db.session.expire_all()
    query = select(OutboundEmail).order_by(OutboundEmail.id)
    if prefix:
        query = query.where(OutboundEmail.key.startswith(prefix))
    return list(_db.session.scalars(query))


def _business_emails() -> list[OutboundEmail]:
    return [email for email in _outbox() if email.recipient == BUSINESS]


def _walk(match: Match, *statuses: str) -> None:
    for status in statuses:
        change_match_status(match, status)


# ---------------------------------------------------------------- « Prise en charge » (C2)


def test_the_first_taking_care_queues_one_email_naming_the_expert(db):
    need = make_need(2)
    first = need.matches[0]
    _name(first, "Alice Martin", "CCI Lyon Métropole", "Chambre de commerce et d'industrie")

    change_match_status(first, "taking_care")

    [email] = _business_emails()
    assert email.key == f"need:{need.id}:taken_care"
    assert email.recipient == BUSINESS
    assert email.subject == f"Prise en charge de votre demande « {SUBJECT} »"
    for body in (email.body_text, email.body_html):
        for text in ("Julie Durand", "Alice Martin", "CCI Lyon Métropole", "Boulangerie Durand"):
            assert text in body, text
    assert "Chambre de commerce et d'industrie" in email.body_text
    assert "Chambre de commerce et d&#39;industrie" in email.body_html  # escaped, as every value
    assert "Alice Martin va vous contacter au 06 12 34 56 78 ou par email à julie@durand.example." in email.body_text
    assert "messagerie vocale" in email.body_text and "spams" in email.body_text
    assert email.reply_to is None


def test_business_emails_carry_no_expert_link(db, app):
    need = make_need(1)
    match = need.matches[0]
    _walk(match, "taking_care", "done_not_reachable")
    base_url = app.config["BASE_URL"]
    emails = _business_emails()
    assert len(emails) == 2
    for email in emails:
        assert f"{base_url}/expert/" not in email.body_text + email.body_html
        assert "/expert/" not in email.body_text + email.body_html


@pytest.mark.parametrize(
    "story",
    [
        ("taking_care", "quo", "taking_care"),
        ("taking_care", "done", "taking_care", "done"),
        ("taking_care", "done_no_help", "quo", "taking_care", "done"),
    ],
)
def test_back_and_forth_never_sends_it_twice(db, story):
    need = make_need(1)
    _walk(need.matches[0], *story)
    assert [e.key for e in _outbox(f"need:{need.id}:")] == [f"need:{need.id}:taken_care"]


def test_a_second_expert_taking_care_sends_nothing_more(db):
    """Documented rule (services.matches): one « Prise en charge » per need, naming the first
    expert; the business knows someone is on it, and every advisor calls anyway."""
    need = make_need(2)
    first, second = need.matches
    _name(first, "Alice Martin", "CCI Lyon", "CCI")
    _name(second, "Bruno Petit", "CMA Rhône", "CMA")

    change_match_status(first, "taking_care")
    change_match_status(second, "taking_care")
    # Even when the first one gave up in between, the need was taken care of once already.
    change_match_status(first, "quo")
    change_match_status(second, "quo")
    change_match_status(second, "taking_care")

    [email] = _business_emails()
    assert "Alice Martin" in email.body_text and "Bruno Petit" not in email.body_text


@pytest.mark.parametrize("story", [("not_for_me",), ("not_for_me", "quo"), ("not_for_me", "quo", "not_for_me")])
def test_no_business_email_for_a_refusal_or_a_wait(db, story):
    need = make_need(1)
    _walk(need.matches[0], *story)
    assert _business_emails() == []


def test_going_back_to_waiting_adds_no_email(db):
    need = make_need(1)
    change_match_status(need.matches[0], "taking_care")
    before = [e.key for e in _business_emails()]
    change_match_status(need.matches[0], "quo")
    assert [e.key for e in _business_emails()] == before == [f"need:{need.id}:taken_care"]


def test_a_refusal_of_one_expert_sends_nothing_while_another_waits(db):
    need = make_need(2)
    change_match_status(need.matches[0], "not_for_me")
    change_match_status(need.matches[0], "quo")
    change_match_status(need.matches[1], "not_for_me")
    assert _business_emails() == []


def test_a_refused_transition_leaves_no_email(db):
    need = make_need(1)
    match = need.matches[0]
    with pytest.raises(ServiceError):
        change_match_status(match, "done")  # quo → done is not in the table
    with pytest.raises(ServiceError):
        change_match_status(match, "done_not_reachable")
    assert _business_emails() == []
    assert db.session.get(Match, match.id).status == "quo"


def test_a_change_rolled_back_after_the_email_was_written_leaves_no_email(db, monkeypatch):
    """The email is a row of the status change's own transaction: no change, no email."""
    need = make_need(1)
    match = need.matches[0]
    original = matches_service._notify_taken_care

    def then_fail(*args):
        original(*args)
        assert _db.session.scalar(select(OutboundEmail).where(OutboundEmail.recipient == BUSINESS)) is not None
        raise RuntimeError("panne après l'écriture du courriel")

    monkeypatch.setattr(matches_service, "_notify_taken_care", then_fail)
    with pytest.raises(RuntimeError):
        change_match_status(match, "taking_care")
    db.session.rollback()
    monkeypatch.undo()

    assert _business_emails() == []
    assert db.session.get(Match, match.id).status == "quo"
    # The next real taking care sends it, once.
    change_match_status(db.session.get(Match, match.id), "taking_care")
    assert [e.key for e in _business_emails()] == [f"need:{need.id}:taken_care"]


# ---------------------------------------------------------------- « Appel manqué » (C3)


def test_not_reachable_gives_the_business_the_experts_phone_and_email(db):
    need = make_need(1)
    match = need.matches[0]
    _name(match, "Alice Martin", "CCI Lyon Métropole", "CCI", phone="+33472000000")
    expert_email = match.expert.email

    _walk(match, "taking_care", "done_not_reachable")

    [email] = _outbox(f"match:{match.id}:not_reachable")
    assert email.recipient == BUSINESS
    assert email.subject == f"Appel manqué pour votre demande « {SUBJECT} »"
    assert email.reply_to == expert_email  # answering the email reaches the expert
    for body in (email.body_text, email.body_html):
        for text in ("Julie Durand", "Alice Martin", "CCI Lyon Métropole", "a essayé de vous appeler"):
            assert text in body, text
        assert "04 72 00 00 00" in body
        assert expert_email in body
    assert "+33472000000" not in email.body_text


def test_not_reachable_is_sent_once_per_match_whatever_the_back_and_forth(db):
    need = make_need(2)
    first, second = need.matches
    _walk(first, "taking_care", "done_not_reachable", "taking_care", "done_not_reachable", "quo")
    _walk(first, "taking_care", "done_not_reachable")
    assert [e.key for e in _outbox("match:")] == [f"match:{first.id}:not_reachable"]

    # Another expert who cannot reach the business either: their own number, their own email.
    _walk(second, "taking_care", "done_not_reachable")
    keys = [e.key for e in _outbox("match:")]
    assert keys == [f"match:{first.id}:not_reachable", f"match:{second.id}:not_reachable"]
    # And still one « Prise en charge » for the need.
    assert len(_outbox(f"need:{need.id}:taken_care")) == 1


def test_not_reachable_without_a_phone_gives_the_email_only(db):
    match = make_need(1).matches[0]
    _name(match, "Alice Martin", "CCI Lyon", "CCI", phone=None)
    _walk(match, "taking_care", "done_not_reachable")
    [email] = _outbox("match:")
    assert "par téléphone" not in email.body_text and "par téléphone" not in email.body_html
    assert f"par email : {match.expert.email}" in email.body_text


@pytest.mark.parametrize(
    ("typed", "shown"),
    [
        ("+33472000000", "04 72 00 00 00"),
        ("04.72.00.00.00", "04 72 00 00 00"),
        ("+590 590 12 34 56", "+590 590 12 34 56"),
        ("04 72 00 00 00 poste 12", "04 72 00 00 00 poste 12"),
        ("Standard :  04 72 00 00 00", "Standard : 04 72 00 00 00"),
        (None, ""),
        ("", ""),
    ],
)
def test_experts_phones_are_free_text_reformatted_only_when_bare(typed, shown, app_ctx):
    assert expert_phone(typed) == shown


# ---------------------------------------------------------------- end to end


def _text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


def test_the_business_receives_prise_en_charge_once_through_the_worker(db, worker_app, smtp_server, run_worker):
    """Real Redis, real RQ worker, real SMTP server; the expert answers through the page of
    their link, and the worker runs after every click."""
    client = worker_app.test_client()
    with worker_app.app_context():
        need = make_need(1)
        match = need.matches[0]
        _name(match, "Alice Martin", "CCI Lyon Métropole", "CCI", phone="04 72 00 00 00")
        need_id, match_id, expert_email = need.id, match.id, match.expert.email
        path = links.expert_url(match).removeprefix(worker_app.config["BASE_URL"])

    def click(status: str) -> None:
        page = client.get(path).get_data(as_text=True)
        response = client.post(path, data={"status": status, "csrf_token": csrf_token_from(page)})
        assert response.status_code == 303, response.get_data(as_text=True)
        worker = run_worker(worker_app)
        assert worker.failed == []

    for status in ("taking_care", "quo", "taking_care", "done", "taking_care", "done"):
        click(status)

    [received] = smtp_server.to(BUSINESS)
    assert str(received["Subject"]) == f"Prise en charge de votre demande « {SUBJECT} »"
    with worker_app.app_context():
        assert received["Message-ID"] == message_id_for(f"need:{need_id}:taken_care")
    text = _text(received)
    assert "Alice Martin va vous contacter au 06 12 34 56 78 ou par email à julie@durand.example." in text
    assert "CCI Lyon Métropole" in text
    assert not re.search(r"/expert/", text)

    # Back to the expert, who then cannot reach the business: one « Appel manqué », with the
    # expert's number, even after another back and forth.
    for status in ("taking_care", "done_not_reachable", "taking_care", "done_not_reachable"):
        click(status)
    missed = [m for m in smtp_server.to(BUSINESS) if str(m["Subject"]).startswith("Appel manqué")]
    assert len(missed) == 1
    assert "04 72 00 00 00" in _text(missed[0]) and expert_email in _text(missed[0])
    assert missed[0]["Reply-To"] == expert_email
    assert len(smtp_server.to(BUSINESS)) == 2
    with worker_app.app_context():
        _db.session.expire_all()
        assert _db.session.get(Need, need_id).status == "done_not_reachable"
        assert _db.session.get(Match, match_id).status == "done_not_reachable"
        states = {e.key: e.state for e in _db.session.scalars(select(OutboundEmail))}
    assert states == {f"need:{need_id}:taken_care": "sent", f"match:{match_id}:not_reachable": "sent"}
