"""Follow-up steps travelling in time: each fires once on its day and not before, never for a
need that moved on, never to an absent expert, and a late run catches up only with what is
still relevant. Time travels through ``run_followup(now=…)`` and ``flask followup run --now``."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from sqlalchemy import select

from app.dates import paris_text
from app.models import Need, OutboundEmail
from app.models.base import utcnow
from app.services.requests.followup import run_followup
from app.services.requests.matches import change_match_status
from app.services.transactions import transaction
from tests.factories import ExpertFactory, make_need, make_routed
from tests.helpers import body, post_action


def run(now: datetime, *, recaps: bool = False, **kwargs) -> list[str]:
    """The keys a run sent; the weekly recaps (which depend on the weekday) only when asked."""
    with transaction():
        sent = [item.key for item in run_followup(now, **kwargs)]
    return [key for key in sent if recaps or ":recapitulatif:" not in key]


def keys(suffix: str) -> list[str]:
    from app.extensions import db

    return sorted(k for k in db.session.scalars(select(OutboundEmail.key)) if k.endswith(suffix))


def routed(db):
    """A request sent to Camille and Dominique (the shared book), and when it was made."""
    need = make_routed(1)[0]
    return need, need.solicitation.created_at


# ---------------------------------------------------------------- the business, day 9


def test_the_business_hears_from_us_on_day_9_once(db, book):
    need, made = routed(db)
    key = f"solicitation:{need.solicitation_id}:suivi"
    assert key not in run(made + timedelta(days=8, hours=23))
    assert run(made + timedelta(days=9)) == [key]
    assert run(made + timedelta(days=10)) == []  # not twice, whatever the schedule
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == key))
    assert email.recipient == need.solicitation.email
    assert email.subject == "Suivi de votre demande « Recruter un ou plusieurs salariés »"
    assert "aucun conseiller ne nous a encore indiqué l'avoir prise en charge" in email.body_text
    assert "contact@place-des-entreprises.example" in email.body_text


def test_no_reminder_once_an_expert_took_the_need(db, book):
    need, made = routed(db)
    with transaction():
        change_match_status(need.matches[0], "taking_care")
    assert run(made + timedelta(days=9)) == []


def test_a_need_taken_between_plan_and_sending_is_skipped(db, book):
    need, made = routed(db)
    plan = [item for item in run_followup(made + timedelta(days=9), dry_run=True) if item.step != "recapitulatif"]
    assert [item.step for item in plan] == ["suivi"]
    with transaction():
        change_match_status(need.matches[0], "taking_care")
        assert plan[0].send() is False
    assert keys(":suivi") == []


def test_a_late_run_skips_the_reminder_a_later_step_made_pointless(db, book):
    _need, made = routed(db)
    late = run(made + timedelta(days=50))  # past the failure day: too late to say « we follow it »
    assert [key for key in late if key.endswith(":suivi")] == []


# ---------------------------------------------------------------- each waiting expert, day 21


def sent_on(need):
    """When the need reached its experts (the last-chance clock starts there)."""
    return max(match.created_at for match in need.matches)


def test_each_waiting_expert_gets_a_last_chance_on_day_21_once(db, book):
    need, _made = routed(db)
    made = sent_on(need)
    run(made + timedelta(days=9))
    before = run(made + timedelta(days=20, hours=23))
    assert not [k for k in before if k.endswith("derniere-chance")]
    sent = run(made + timedelta(days=21))
    assert sorted(sent) == sorted(f"match:{m.id}:derniere-chance" for m in need.matches)
    assert run(made + timedelta(days=22)) == []
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == sent[0]))
    assert email.subject.startswith("Dernière chance : la demande de ")
    assert "/expert/" in email.body_text
    assert f"Sans réponse d'ici le {paris_text(made + timedelta(days=45), '%d/%m/%Y')}" in email.body_text


def test_no_last_chance_for_a_declined_match_a_taken_need_or_an_absent_expert(db, book):
    need, _made = routed(db)
    camille, dominique = sorted(need.matches, key=lambda m: m.expert.full_name)
    with transaction():
        change_match_status(camille, "not_for_me")
    day_21 = sent_on(need) + timedelta(days=21)
    dominique.expert.absent_from = (day_21 - timedelta(days=2)).date()
    dominique.expert.absent_until = (day_21 + timedelta(days=5)).date()
    db.session.commit()
    assert [k for k in run(day_21) if k.endswith("derniere-chance")] == []

    other, _made = routed(db)
    with transaction():
        change_match_status(other.matches[0], "taking_care")
    assert [k for k in run(sent_on(other) + timedelta(days=21)) if k.endswith("derniere-chance")] == []


# ---------------------------------------------------------------- the command


def test_the_command_plans_then_sends_and_reads_paris_time(app, db, book):
    need, made = routed(db)
    runner = app.test_cli_runner()
    day_9 = (made + timedelta(days=9, hours=1)).astimezone(UTC).isoformat()

    planned = runner.invoke(args=["followup", "run", "--now", day_9, "--dry-run"])
    assert planned.exit_code == 0, planned.output
    assert f"serait envoyé : suivi · {need.solicitation.email}" in planned.output
    assert "1 courriel(s) de suivi à envoyer." in planned.output
    db.session.expire_all()
    assert keys(":suivi") == []  # a plan writes nothing

    sent = runner.invoke(args=["followup", "run", "--now", day_9])
    assert sent.exit_code == 0, sent.output
    assert "1 courriel(s) de suivi envoyé(s)." in sent.output
    again = runner.invoke(args=["followup", "run", "--now", day_9])
    assert "0 courriel(s) de suivi envoyé(s)." in again.output

    wrong = runner.invoke(args=["followup", "run", "--now", "demain"])
    assert wrong.exit_code == 1
    assert "--now : date invalide « demain »" in wrong.output


def test_a_time_without_offset_is_paris_time_across_the_daylight_saving_change():
    from app.cli import _moment

    assert _moment("2026-03-28T06:00") == datetime(2026, 3, 28, 5, 0, tzinfo=UTC)  # winter, +01:00
    assert _moment("2026-03-29T06:00") == datetime(2026, 3, 29, 4, 0, tzinfo=UTC)  # summer, +02:00
    assert _moment("2026-03-29T06:00+00:00") == datetime(2026, 3, 29, 6, 0, tzinfo=UTC)


def test_the_follow_up_runs_every_morning_from_the_cron(app):
    from app.extensions import rq
    from app.jobs import FOLLOWUP_CRON

    entries = [item for item in rq._cron_job_data if getattr(item["func"], "__name__", "") == "followup_job"]
    assert len(entries) == 1
    assert entries[0]["cron"] == FOLLOWUP_CRON == "10 6 * * *"


def test_absence_days_are_inclusive():
    from app.models import Expert
    from app.services.addressbook.absences import is_absent

    expert = Expert(absent_from=date(2026, 12, 1), absent_until=date(2026, 12, 3))
    assert [is_absent(expert, date(2026, 12, d)) for d in (1, 2, 3, 4)] == [True, True, True, False]
    assert is_absent(Expert(absent_from=date(2026, 12, 1)), date(2027, 6, 1))
    assert not is_absent(Expert(), utcnow().date())


# ---------------------------------------------------------------- the business, day 45: the need fails


def test_a_need_nobody_took_fails_on_day_45_once_and_is_given_up(db, book):
    need, _made = routed(db)
    day_45 = sent_on(need) + timedelta(days=45)
    key = f"need:{need.id}:echec"
    assert key not in run(day_45 - timedelta(minutes=1))
    assert key in run(day_45)
    assert run(day_45 + timedelta(days=1)) == []
    db.session.expire_all()
    assert db.session.get(Need, need.id).abandoned_at == day_45
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == key))
    assert email.recipient == need.contact.email
    assert email.subject == "Échec de votre demande « Recruter un ou plusieurs salariés » sur Place des Entreprises"
    assert "entreprendre.service-public.fr" in email.body_text


def test_a_scheduler_down_for_weeks_sends_only_the_failure(db, book):
    """Back on day 55: « Suivi » and « Dernière chance » are pointless by now; the failure is not."""
    need, _made = routed(db)
    assert run(sent_on(need) + timedelta(days=55)) == [f"need:{need.id}:echec"]


def test_an_old_backlog_gets_no_failure_email(db, book):
    """The first run over needs given up months ago (or after a very long outage) stays silent:
    past the catch-up days, they already show expired everywhere."""
    need, _made = routed(db)
    assert run(sent_on(need) + timedelta(days=45 + 14, minutes=1)) == []
    assert run(sent_on(need) + timedelta(days=45 + 14) - timedelta(minutes=1)) == [f"need:{need.id}:echec"]


def test_a_taken_need_never_fails(db, book):
    need, _made = routed(db)
    with transaction():
        change_match_status(need.matches[0], "taking_care")
    assert run(sent_on(need) + timedelta(days=90)) == []


def test_staff_announce_the_failure_of_a_need_everyone_refused(admin_client, db, book):
    refused, _made = routed(db)
    waiting, _made = routed(db)
    with transaction():
        for match in refused.matches:
            change_match_status(match, "not_for_me")
    response = post_action(admin_client, "need", "annoncer-echec", [refused.id, waiting.id], follow_redirects=True)
    page = body(response)
    assert "1 échec(s) annoncé(s)." in page
    assert "Seul un besoin refusé par tous ses experts peut être déclaré en échec avant l&#39;heure" in page
    assert keys(":echec") == [f"need:{refused.id}:echec"]
    again = body(post_action(admin_client, "need", "annoncer-echec", [refused.id], follow_redirects=True))
    assert "L&#39;échec de ce besoin a déjà été annoncé le" in again
    listing = body(admin_client.get("/admin/need/"))
    assert "Refusé par tous — échec annoncé le" in listing
    details = body(admin_client.get(f"/admin/need/details/?id={refused.id}"))
    assert "Échec de la demande annoncé à l&#39;entreprise" in details  # the timeline


def test_referents_cannot_announce_a_failure(referent_client, db):
    response = referent_client.post("/admin/need/action/", data={"action": "annoncer-echec", "rowid": "1"})
    assert response.status_code in (400, 403)


# ---------------------------------------------------------------- each expert, weekly (Tuesday)

TUESDAY = datetime(2026, 12, 8, 6, 10, tzinfo=UTC)  # 07:10 in Paris


def waiting_for(expert, *ages: float) -> None:
    for age in ages:
        make_need(0, experts=[expert], created_at=TUESDAY - timedelta(days=age))


def test_the_weekly_recap_lists_the_oldest_seven_and_counts_the_rest(db):
    expert = ExpertFactory(full_name="Alix Recap")
    waiting_for(expert, *range(5, 14), 2, 50)  # nine in the window, one too recent, one expired
    sent = run(TUESDAY, recaps=True)
    key = f"expert:{expert.id}:recapitulatif:2026-W50"
    assert key in sent
    email = db.session.scalar(select(OutboundEmail).where(OutboundEmail.key == key))
    assert email.subject == "9 demandes d'entreprises vous attendent sur Place des Entreprises"
    assert email.body_text.count("/expert/") == 7
    assert "depuis 13 jours" in email.body_text and "depuis 2 jours" not in email.body_text
    assert "Et 2 autre(s) demande(s) en attente." in email.body_text
    assert "/mes-demandes/" in email.body_text


def test_one_recap_a_week_on_tuesday_paris_time(db):
    expert = ExpertFactory()
    waiting_for(expert, 6)
    monday_evening_utc = datetime(2026, 12, 7, 22, 30, tzinfo=UTC)  # 23:30 in Paris: still Monday
    assert run(monday_evening_utc, recaps=True) == []
    tuesday_just_after_midnight = datetime(2026, 12, 7, 23, 30, tzinfo=UTC)  # 00:30 on Tuesday in Paris
    assert run(tuesday_just_after_midnight, recaps=True) == [f"expert:{expert.id}:recapitulatif:2026-W50"]
    assert run(TUESDAY + timedelta(days=1), recaps=True) == []  # not twice in the week
    assert run(TUESDAY + timedelta(days=7), recaps=True) == [f"expert:{expert.id}:recapitulatif:2026-W51"]


def test_no_recap_for_an_absent_expert_or_answered_needs(db):
    away = ExpertFactory(absent_from=date(2026, 12, 1), absent_until=date(2026, 12, 20))
    waiting_for(away, 6)
    answered = ExpertFactory()
    need = make_need(0, experts=[answered], statuses=("not_for_me",), created_at=TUESDAY - timedelta(days=6))
    assert need.matches[0].status == "not_for_me"
    assert run(TUESDAY, recaps=True) == []
