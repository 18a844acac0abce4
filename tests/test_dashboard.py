"""The back office's home: the figures (services.dashboard), the links into filtered lists,
a constant number of queries, and the same access rules as every back-office page."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from app.services.requests.dashboard import age_text, dashboard_figures, week_start
from tests.factories import OutboundEmailFactory, SolicitationFactory, make_need
from tests.helpers import body

# A Wednesday, 13:00 in Paris; that week started on Monday 23 November 00:00 Paris = Sunday 23:00 UTC.
NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
MONDAY_UTC = datetime(2026, 11, 22, 23, 0, tzinfo=UTC)


@pytest.fixture
def desk(db):
    """Rows on both sides of every boundary the figures count."""
    SolicitationFactory(created_at=NOW - timedelta(days=3), full_name="Ancienne à qualifier")  # last week
    SolicitationFactory(created_at=NOW - timedelta(hours=1), full_name="Récente à qualifier")  # this week
    SolicitationFactory(
        created_at=MONDAY_UTC + timedelta(minutes=30), status="processed", full_name="Transmise lundi"
    )  # this week
    SolicitationFactory(
        created_at=MONDAY_UTC - timedelta(minutes=30), status="canceled", full_name="Abandonnée dimanche"
    )  # last week
    SolicitationFactory(
        created_at=NOW - timedelta(days=20), status="processed", full_name="Transmise il y a longtemps"
    )  # neither

    make_need(1, created_at=NOW - timedelta(days=6))  # no taker after 5 days; last week
    make_need(1, created_at=NOW - timedelta(days=4))  # not yet 5 days; last week
    make_need(
        1,
        created_at=NOW - timedelta(days=10),
        statuses=("taking_care",),
        taken_care_at=NOW - timedelta(days=5),
    )  # taken last week
    make_need(
        1,
        created_at=NOW - timedelta(days=1),
        statuses=("taking_care",),
        taken_care_at=NOW - timedelta(hours=2),
    )  # this week

    OutboundEmailFactory(
        state="failed", created_at=NOW - timedelta(days=2), recipient="echec@example.fr", failure_cause="recipient"
    )
    OutboundEmailFactory(
        state="failed",
        created_at=NOW - timedelta(days=3),
        recipient="ligne-trop-longue@example.fr",
        failure_cause="message",
    )
    OutboundEmailFactory(state="queued", created_at=NOW - timedelta(hours=2), recipient="bloque@example.fr")
    OutboundEmailFactory(state="queued", created_at=NOW - timedelta(minutes=10), recipient="recent@example.fr")
    OutboundEmailFactory(state="sent", created_at=NOW - timedelta(days=1), recipient="parti@example.fr")


def test_the_week_starts_on_monday_midnight_in_paris():
    assert week_start(NOW) == MONDAY_UTC
    # Monday 00:30 Paris is already the new week; Sunday 23:30 Paris is still the old one.
    assert week_start(MONDAY_UTC + timedelta(minutes=30)) == MONDAY_UTC
    assert week_start(MONDAY_UTC - timedelta(minutes=30)) == MONDAY_UTC - timedelta(days=7)
    # Summer time: Monday 00:00 Paris is Sunday 22:00 UTC.
    assert week_start(datetime(2026, 7, 8, 12, tzinfo=UTC)) == datetime(2026, 7, 5, 22, tzinfo=UTC)


def test_figures_count_what_waits_and_the_weeks_volume(desk):
    figures = dashboard_figures(now=NOW)

    assert figures["to_qualify"] == 2
    assert figures["oldest_age"] == timedelta(days=3)
    assert figures["no_taker_days"] == 5
    assert figures["no_taker"] == 1
    assert figures["failed_emails"] == 2
    assert figures["defective_emails"] == 1
    assert figures["stale_emails"] == 1
    assert figures["week"] == {"solicitations": 2, "needs": 1, "taken_care": 1}
    assert figures["last_week"] == {"solicitations": 2, "needs": 2, "taken_care": 1}


def test_an_empty_service_counts_zero(db):
    figures = dashboard_figures(now=NOW)

    assert figures["to_qualify"] == 0
    assert figures["oldest_age"] is None
    assert figures["week"] == {"solicitations": 0, "needs": 0, "taken_care": 0}


def test_the_no_taker_delay_is_a_setting(app, desk, monkeypatch):
    monkeypatch.setitem(app.config, "DASHBOARD_NO_TAKER_DAYS", 3)

    figures = dashboard_figures(now=NOW)

    assert figures["no_taker_days"] == 3
    assert figures["no_taker"] == 2


def test_ages_read_as_staff_say_them():
    assert age_text(timedelta(days=3, hours=4)) == "3 jours"
    assert age_text(timedelta(days=1)) == "1 jour"
    assert age_text(timedelta(hours=5)) == "5 heures"
    assert age_text(timedelta(minutes=20)) == "moins d'une heure"


def test_the_query_count_does_not_grow_with_the_data(db, count_queries):
    with count_queries() as empty:
        dashboard_figures(now=NOW)
    for day in range(8):
        SolicitationFactory(created_at=NOW - timedelta(days=day))
        make_need(
            1,
            created_at=NOW - timedelta(days=day),
            status="quo",
            statuses=("taking_care",),
            taken_care_at=NOW - timedelta(days=day),
        )
        OutboundEmailFactory(state="failed", created_at=NOW - timedelta(days=day), recipient=f"echec{day}@example.fr")
    with count_queries() as full:
        dashboard_figures(now=NOW)

    assert empty.count == full.count == 4


def home_links(html: str) -> dict[str, str]:
    return {
        name: href.replace("&amp;", "&")
        for href, name in re.findall(r'<a href="([^"]+)" class="card-link" data-link="([^"]+)"', html)
    }


def test_home_shows_the_figures_with_a_link_each_into_a_filtered_list(admin_client, desk):
    page = admin_client.get("/admin/")
    html = body(page)

    assert page.status_code == 200
    assert "Demandes à qualifier" in html
    assert "Besoins sans preneur après 5 jours" in html
    assert "Courriels en échec" in html
    assert "Se déconnecter" in html
    assert "Courriels refusés pour un défaut du service" in html
    assert html.count(">Voir la liste</a>") == 8
    links = home_links(html)
    assert set(links) == {
        "to-qualify",
        "no-taker",
        "failed-emails",
        "defective-emails",
        "stale-emails",
        "week-solicitations",
        "week-needs",
        "week-taken-care",
    }
    for name, href in links.items():
        assert admin_client.get(href).status_code == 200, name

    to_qualify = body(admin_client.get(links["to-qualify"]))
    assert "Ancienne à qualifier" in to_qualify and "Récente à qualifier" in to_qualify
    assert "Transmise lundi" not in to_qualify
    # Oldest first: the one that waited longest is read first.
    assert to_qualify.index("Ancienne à qualifier") < to_qualify.index("Récente à qualifier")

    failed = body(admin_client.get(links["failed-emails"]))
    assert "echec@example.fr" in failed and "ligne-trop-longue@example.fr" in failed
    assert "parti@example.fr" not in failed
    # Our own defects apart from the recipients' refusals.
    defective = body(admin_client.get(links["defective-emails"]))
    assert "ligne-trop-longue@example.fr" in defective and "echec@example.fr" not in defective
    stale = body(admin_client.get(links["stale-emails"]))
    assert "bloque@example.fr" in stale and "echec@example.fr" not in stale


def test_the_weeks_solicitations_link_starts_on_monday(admin_client, db):
    SolicitationFactory(
        created_at=datetime.now(UTC) - timedelta(days=15), status="processed", full_name="Il y a deux semaines"
    )
    SolicitationFactory(created_at=datetime.now(UTC), status="processed", full_name="Reçue ce jour")

    links = home_links(body(admin_client.get("/admin/")))
    listed = body(admin_client.get(links["week-solicitations"]))

    assert "Reçue ce jour" in listed
    assert "Il y a deux semaines" not in listed


def test_the_no_taker_link_lists_exactly_the_needs_counted(admin_client, db):
    now = datetime.now(UTC)
    make_need(1, created_at=now - timedelta(days=6), company="Attend depuis six jours")
    make_need(1, created_at=now - timedelta(days=4), company="Attend depuis quatre jours")
    make_need(
        1,
        created_at=now - timedelta(days=9),
        statuses=("taking_care",),
        taken_care_at=now - timedelta(days=8),
        company="Prise en charge",
    )

    html = body(admin_client.get("/admin/"))
    listed = body(admin_client.get(home_links(html)["no-taker"]))

    assert "Attend depuis six jours" in listed
    assert "Attend depuis quatre jours" not in listed
    assert "Prise en charge</td>" not in listed and "Prise en charge\n" not in listed
    assert listed.count("Attend depuis") == 1


def test_the_no_taker_link_follows_the_setting(app, admin_client, db, monkeypatch):
    monkeypatch.setitem(app.config, "DASHBOARD_NO_TAKER_DAYS", 3)
    make_need(1, created_at=datetime.now(UTC) - timedelta(days=4), company="Attend depuis quatre jours")

    html = body(admin_client.get("/admin/"))

    assert "Attend depuis quatre jours" in body(admin_client.get(home_links(html)["no-taker"]))


def test_the_weeks_needs_and_taken_care_links_start_on_monday(admin_client, db):
    now = datetime.now(UTC)
    make_need(1, created_at=now - timedelta(days=15), company="Besoin ancien")
    make_need(1, created_at=now, company="Besoin du jour")
    make_need(
        1,
        created_at=now - timedelta(days=20),
        statuses=("taking_care",),
        taken_care_at=now - timedelta(days=15),
        company="Pris avant",
    )
    make_need(
        1,
        created_at=now - timedelta(days=20),
        statuses=("taking_care",),
        taken_care_at=now,
        company="Pris ce jour",
    )

    links = home_links(body(admin_client.get("/admin/")))
    needs = body(admin_client.get(links["week-needs"]))
    taken = body(admin_client.get(links["week-taken-care"]))

    assert "Besoin du jour" in needs and "Besoin ancien" not in needs
    assert "Pris ce jour" not in needs and "Pris avant" not in needs
    assert "Pris ce jour" in taken and "Pris avant" not in taken
    assert "Besoin du jour" not in taken


def test_home_costs_the_same_queries_whatever_the_data(admin_client, db, count_queries):
    admin_client.get("/admin/")
    # Committing expires the logged-in user the test's session holds: measure both runs after one.
    db.session.expire_all()
    with count_queries() as empty:
        admin_client.get("/admin/")
    for day in range(6):
        SolicitationFactory(created_at=datetime.now(UTC) - timedelta(days=day))
        OutboundEmailFactory(state="failed", created_at=datetime.now(UTC), recipient=f"echec{day}@example.fr")
    db.session.expire_all()
    with count_queries() as full:
        admin_client.get("/admin/")

    assert full.count == empty.count


def test_anonymous_visitors_are_sent_to_the_login_page(client, db):
    response = client.get("/admin/")

    assert response.status_code == 302
    assert "/connexion" in response.headers["Location"]


def test_a_referent_does_not_see_the_global_figures(referent_client, desk):
    # A referent lands on a page about their own part (admin/base.py): the dashboard counts
    # every institution's requests, so neither its figures nor its links are theirs.
    response = referent_client.get("/admin/")
    html = body(response)

    assert response.status_code == 200
    assert "Demandes à qualifier" not in html
    assert "Courriels en échec" not in html
    assert not set(home_links(html)) & {
        "to-qualify",
        "no-taker",
        "failed-emails",
        "defective-emails",
        "stale-emails",
        "week-needs",
    }


# ---------------------------------------------------------------- twelve weeks (issue 15)


def test_twelve_weeks_funnel_median_and_the_map_of_needs_without_a_taker(admin_client, db):
    from app.models.requests import MatchStatus
    from app.services.requests.dashboard import funnel, no_taker_by_departement, weekly_trends

    now = datetime(2026, 11, 25, 10, tzinfo=UTC)  # a Wednesday
    # Monday 23 November 00:30 Paris is Sunday 22 November 23:30 UTC: this week's, not last week's.
    this_week = make_need(1, statuses=(MatchStatus.DONE,), created_at=datetime(2026, 11, 22, 23, 30, tzinfo=UTC))
    this_week.matches[0].taken_care_at = this_week.created_at + timedelta(hours=30)
    waited = make_need(1, statuses=(MatchStatus.TAKING_CARE,), created_at=now - timedelta(weeks=3))
    waited.matches[0].taken_care_at = waited.created_at + timedelta(days=4)
    make_need(1, created_at=now - timedelta(weeks=5), commune="35238")  # Rennes, nobody took it
    make_need(1, created_at=now - timedelta(weeks=20))  # too old for the twelve weeks
    db.session.commit()

    trends = weekly_trends(now)
    assert len(trends["weeks"]) == 12 and trends["needs"][-1] == 1 and trends["needs"][-4] == 1
    assert sum(trends["needs"]) == 3 and sum(trends["taken_care"]) == 2
    flow = funnel(now)
    assert (flow["needs"], flow["taken_care"], flow["helped"]) == (3, 2, 1)
    # Waits of 30 hours and 4 days: their median is halfway, 63 hours.
    assert flow["median_wait"] == timedelta(hours=63)
    assert no_taker_by_departement(now) == {"35": 1, "69": 1}

    html = body(admin_client.get("/admin/"))
    assert "Délai médian entre l'envoi d'un besoin et sa première prise en charge" in html
    assert "Besoins sans preneur après 5 jours, par département" in html
    assert "Ille-et-Vilaine (35)" in html and "Demandes reçues par semaine" in html


def test_the_funnels_taken_in_charge_step_links_to_its_needs(admin_client, db):
    from app.models.requests import MatchStatus

    now = datetime.now(UTC)
    taken = make_need(1, statuses=(MatchStatus.TAKING_CARE,), created_at=now - timedelta(days=3), company="Prise SARL")
    taken.matches[0].taken_care_at = now - timedelta(days=2)
    make_need(1, created_at=now - timedelta(days=3), company="Attente SARL")
    db.session.commit()
    html = body(admin_client.get("/admin/"))
    link = re.search(r'Pris en charge par un expert</th><td><a href="([^"]+)">1</a>', html)
    assert link is not None
    listed = body(admin_client.get(link.group(1).replace("&amp;", "&")))
    assert "Prise SARL" in listed and "Attente SARL" not in listed
