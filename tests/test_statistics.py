"""Issue 15, the public statistics: each indicator's definition against hand-counted fixtures at
month boundaries (Paris time), the small-count rule, the filters, and ``/stats.csv`` agreeing
with the page."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta

from sqlalchemy import func, select

from app.models import Match
from app.models.requests import MatchStatus
from app.services.statistics import aggregates as agg
from app.services.statistics import indicators as ind
from app.services.statistics.figures import StatsFilters, parse_filters, stats_page
from app.services.transactions import transaction
from tests.factories import make_need, make_stats_world

LYON, RENNES = "69123", "35238"


def _utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_month_is_a_paris_month():
    # 31 January 23:30 UTC is 1 February 00:30 in Paris; 31 July 21:59 UTC is still July (UTC+2).
    assert ind.month_of(_utc(2026, 1, 31, 23, 30)) == date(2026, 2, 1)
    assert ind.month_of(_utc(2026, 1, 31, 22, 59)) == date(2026, 1, 1)
    assert ind.month_of(_utc(2026, 7, 31, 21, 59)) == date(2026, 7, 1)
    assert ind.month_of(_utc(2026, 7, 31, 22, 0)) == date(2026, 8, 1)


def _facts(**values) -> ind.NeedFacts:
    base = {
        "created_at": _utc(2026, 3, 2),
        "region_code": "84",
        "theme_id": 1,
        "facility_id": 1,
        "headcount_code": "03",
        "naf_code": "47.11Z",
        "first_sent_at": _utc(2026, 3, 2),
        "first_response_at": None,
        "exchanged": False,
        "helped": False,
        "helped_at": None,
    }
    return ind.NeedFacts(**(base | values))


def test_taken_in_charge_within_five_days_at_its_bound():
    sent = _utc(2026, 3, 2, 10)
    assert ind.taken_in_charge_quickly(
        _facts(exchanged=True, first_sent_at=sent, first_response_at=sent + timedelta(days=5))
    )
    assert not ind.taken_in_charge_quickly(
        _facts(exchanged=True, first_response_at=sent + timedelta(days=5, seconds=1), first_sent_at=sent)
    )
    # Only exchanges count: a need nobody closed is not « quick », whatever its taking in charge.
    assert not ind.taken_in_charge_quickly(_facts(exchanged=False, first_response_at=sent))


def test_a10_sections():
    assert ind.a10_section("47.11Z") == "GI"
    assert ind.a10_section("43.21A") == "FZ"
    assert ind.a10_section("10.71C") == "BE"
    assert ind.a10_section("62.01Z") == "JZ"
    assert ind.a10_section(None) == ind.UNKNOWN_KEY


def _filters(db, **args) -> StatsFilters:
    return parse_filters({"debut": "2026-03", "fin": "2026-04", **args})


def _points(page, key):
    series = next(s for s in page.series if s.key == key)
    return {p.month.month: p for p in series.points}


def test_the_indicators_count_what_was_counted_by_hand(db):
    make_stats_world()
    page = stats_page(_filters(db))
    march, april = 3, 4
    assert _points(page, "demandes_recues")[march].value == 3
    assert _points(page, "part_transmises")[march].value == round(100 * 2 / 3, 1)
    # March: 4 needs, 3 exchanges (2 helped + 1 without help), 2 helped; the need of 31 March 22:30 UTC is April's.
    assert _points(page, "part_echange")[march].value == 75.0
    assert _points(page, "part_aide_proposee")[march].value == 50.0
    # Of the 3 exchanges, 2 were taken in charge within 5 days (after 2 and 1 days; not after 7).
    assert _points(page, "part_prise_en_charge_5j")[march].value == round(100 * 2 / 3, 1)
    assert _points(page, "part_aide_proposee")[april].value == 100.0
    themes = {key: point.value for key, _label, point in page.breakdowns[0].rows}
    assert themes == {"ressources-humaines": 5.0}


def test_small_counts_are_hidden_in_a_filtered_view_only(db):
    make_stats_world()
    national = stats_page(_filters(db))
    assert _points(national, "demandes_recues")[3].text == "3"
    lyon = stats_page(_filters(db, region="84"))
    assert _points(lyon, "part_aide_proposee")[3].text == "moins de 5"
    assert _points(lyon, "part_aide_proposee")[3].value is None
    assert all(point.text in ("moins de 5", "0", "") for _k, _l, point in lyon.breakdowns[0].rows)


def test_the_csv_agrees_with_the_page(client, db):
    make_stats_world()
    html = client.get("/stats?debut=2026-03&fin=2026-04").get_data(as_text=True)
    response = client.get("/stats.csv?debut=2026-03&fin=2026-04")
    assert response.status_code == 200 and response.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(response.get_data(as_text=True))))
    assert rows[0] == ["indicateur", "mois", "valeur"]
    values = {(name, month): value for name, month, value in rows[1:]}
    assert values[("demandes_recues", "2026-03")] == "3"
    assert values[("part_aide_proposee", "2026-03")] == "50.0"
    assert "50,0 %" in html and "Licence Ouverte" in html
    page = stats_page(_filters(db))
    for series in page.series:
        for point in series.points:
            assert (series.key, point.month.strftime("%Y-%m")) in values
            assert point.text in html
    data = client.get("/stats.json?debut=2026-03&fin=2026-04").get_json()
    assert data["licence"].startswith("Licence Ouverte")
    assert {(s["indicateur"], s["mois"]): s["valeur"] for s in data["series"]} == values


def test_wrong_filters_are_explained_not_crashed(client, db):
    response = client.get("/stats?debut=2026-13&region=99&theme=nulle-part")
    text = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "mois illisible « 2026-13 »" in text and "Région inconnue" in text and "Thème inconnu" in text
    assert client.get("/stats.csv?fin=demain").status_code == 400
    assert client.get("/stats?debut=9999-12&fin=9999-12").status_code == 422
    assert client.get("/stats").status_code == 200


def test_the_aggregates_are_the_only_thing_the_page_reads(client, db, count_queries):
    make_stats_world()
    with count_queries() as few:
        client.get("/stats?debut=2026-03&fin=2026-04")
    for _ in range(5):
        make_need(1, statuses=(MatchStatus.DONE,), created_at=_utc(2026, 3, 12), commune=LYON)
    db.session.commit()
    with count_queries() as many:
        client.get("/stats?debut=2026-03&fin=2026-04")
    assert few.count == many.count
    # Not refreshed yet: the new needs are not in the figures until the nightly job runs.
    assert _points(stats_page(_filters(db)), "part_aide_proposee")[3].value == 50.0
    with transaction():
        agg.refresh()
    assert db.session.scalar(select(Match.id).limit(1))
    assert _points(stats_page(_filters(db)), "part_aide_proposee")[3].value == round(100 * 7 / 9, 1)


# ---------------------------------------------------------------- partners' quarterly reports


def test_quarters_and_their_bounds():
    from app.services.statistics.reports import parse_quarter, previous_quarter

    assert parse_quarter("2026-q3") == ("2026-Q3", date(2026, 7, 1), date(2026, 10, 1))
    assert parse_quarter("2026-Q4")[2] == date(2027, 1, 1)
    assert previous_quarter(date(2027, 1, 1)) == "2026-Q4"
    assert previous_quarter(date(2026, 10, 1)) == "2026-Q3"
    import pytest

    from app.services.errors import ServiceError

    with pytest.raises(ServiceError, match="Trimestre illisible"):
        parse_quarter("2026-T5")
    with pytest.raises(ServiceError, match="Trimestre illisible"):
        parse_quarter("9999-Q4")


def test_a_quarterly_report_per_institution_and_antenne_emailed_once(app, db, client):
    from openpyxl import load_workbook

    from app.models import OutboundEmail, PartnerReport
    from app.services.accounts.users import create_user
    from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory
    from tests.helpers import login

    cma = InstitutionFactory(name="CMA Test", slug="cma-test")
    lyon, grenoble = AntenneFactory(institution=cma, name="CMA Lyon"), AntenneFactory(institution=cma, name="CMA Isère")
    alice, bruno = ExpertFactory(antenne=lyon), ExpertFactory(antenne=grenoble)
    inside = _utc(2026, 8, 10, 9)
    helped = make_need(0, experts=[alice], statuses=(MatchStatus.DONE,), created_at=inside)
    helped.matches[0].taken_care_at = inside + timedelta(days=2)
    make_need(0, experts=[alice], statuses=(MatchStatus.NOT_FOR_ME,), created_at=inside)
    make_need(0, experts=[bruno], created_at=inside)
    # 30 September 22:30 UTC is 1 October in Paris: the fourth quarter's, not this one's.
    make_need(0, experts=[bruno], statuses=(MatchStatus.DONE,), created_at=_utc(2026, 9, 30, 22, 30))
    db.session.commit()
    with transaction():
        create_user("ref@cma.example", role="referent", institution_slug="cma-test", password="motdepasse-tres-long")
        create_user(
            "ref-lyon@cma.example",
            role="referent",
            institution_slug="cma-test",
            antenne_id=lyon.id,
            password="motdepasse-tres-long",
        )

    result = app.test_cli_runner().invoke(
        args=["reports", "build", "--quarter", "2026-Q3", "--institution", "cma-test"]
    )
    assert result.exit_code == 0, result.output
    assert "3 rapport(s) construit(s), 2 référent(s) prévenu(s)" in result.output
    whole = db.session.scalar(select(PartnerReport).where(PartnerReport.scope == f"institution:{cma.id}"))
    assert whole.matches == 3
    book = load_workbook(io.BytesIO(whole.content))
    assert book.sheetnames == ["Synthèse", "CMA Isère", "CMA Lyon"]  # the antennes by name
    summary = {row[0]: row[1:] for row in book["Synthèse"].iter_rows(min_row=2, values_only=True)}
    # CMA Lyon: 2 matches, both answered, 1 taken in charge (the helped one, after 2 days), 1 refused.
    assert summary["CMA Lyon"] == (2, 100.0, 50.0, 50.0, 0.0, 0.0, 50.0, 50.0, 50.0)
    assert summary["CMA Isère"][:2] == (1, 0.0)
    emails = db.session.scalars(select(OutboundEmail.recipient).where(OutboundEmail.key.like("report:%"))).all()
    assert sorted(emails) == ["ref-lyon@cma.example", "ref@cma.example"]

    # Rebuilt: the files replaced, nobody emailed twice.
    again = app.test_cli_runner().invoke(args=["reports", "build", "--quarter", "2026-Q3"])
    assert again.exit_code == 0, again.output
    assert (
        db.session.scalar(select(func.count()).select_from(OutboundEmail).where(OutboundEmail.key.like("report:%")))
        == 2
    )
    assert (
        db.session.scalar(select(func.count()).select_from(PartnerReport).where(PartnerReport.institution_id == cma.id))
        == 3
    )

    # « Mes exports »: the antenne referent downloads their antenne's report only.
    assert login(client, "ref-lyon@cma.example").status_code == 302
    page = client.get("/admin/exports/").get_data(as_text=True)
    own = db.session.scalar(select(PartnerReport).where(PartnerReport.scope == f"antenne:{lyon.id}"))
    assert f"/admin/exports/rapports/{own.id}" in page and f"/admin/exports/rapports/{whole.id}" not in page
    download = client.get(f"/admin/exports/rapports/{own.id}")
    assert download.status_code == 200 and download.headers["Content-Disposition"].endswith(".xlsx")
    assert client.get(f"/admin/exports/rapports/{whole.id}").status_code == 404

    bad = app.test_cli_runner().invoke(args=["reports", "build", "--quarter", "2026-Q9"])
    assert bad.exit_code == 1 and "Trimestre illisible" in bad.output


# ---------------------------------------------------------------- the referent's dashboard


def test_the_referents_dashboard_counts_their_scope_over_the_period(app, db, client):
    from app.services.accounts.users import create_user
    from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory
    from tests.helpers import login

    cma = InstitutionFactory(name="CMA Test", slug="cma-test")
    lyon, grenoble = AntenneFactory(institution=cma, name="CMA Lyon"), AntenneFactory(institution=cma, name="CMA Isère")
    alice = ExpertFactory(antenne=lyon, full_name="Alice Lyon")
    bruno = ExpertFactory(antenne=grenoble, full_name="Bruno Isère")
    stranger = ExpertFactory(full_name="Zoé Ailleurs")
    inside = _utc(2026, 8, 10, 9)
    helped = make_need(0, experts=[alice], statuses=(MatchStatus.DONE,), created_at=inside)
    helped.matches[0].taken_care_at = inside + timedelta(days=4)
    make_need(0, experts=[alice], statuses=(MatchStatus.NOT_FOR_ME,), created_at=inside)
    make_need(0, experts=[bruno], created_at=inside)
    make_need(0, experts=[bruno], created_at=_utc(2026, 5, 1, 9))  # before the period: waiting all the same
    make_need(0, experts=[stranger], statuses=(MatchStatus.DONE,), created_at=inside)
    db.session.commit()
    with transaction():
        create_user("ref@cma.example", role="referent", institution_slug="cma-test", password="motdepasse-tres-long")

    assert login(client, "ref@cma.example").status_code == 302
    html = client.get("/admin/?debut=2026-07&fin=2026-09").get_data(as_text=True)
    text = " ".join(html.split())
    # The whole: 3 matches in the period (Zoé's is another institution's), 2 answered, 1 help.
    assert "CMA Test (ensemble)</th><td>3</td><td>66.7 %</td><td>33.3 %</td><td>33.3 %</td>" in text
    assert "Antenne CMA Lyon</th><td>2</td><td>100.0 %</td><td>50.0 %</td><td>50.0 %</td>" in text
    # Alice took her need in charge after 4 days: within 5, not within 3.
    assert 'Alice Lyon <span class="small text-muted">(CMA Lyon)</span></th><td>2</td>' in text
    assert text.count("Zoé Ailleurs") == 0
    # Bruno has two needs waiting (one from before the period).
    assert "Bruno Isère</a> (CMA Isère) : 2 demandes en attente" in text
    assert "Mises en relation reçues" in text and "Taux de positionnement" in text
    bad = client.get("/admin/?debut=2026-13").get_data(as_text=True)
    assert "mois illisible « 2026-13 »" in bad
    assert client.get("/admin/?debut=9999-12&fin=9999-12").status_code == 200


def test_the_monthly_file_and_periods(app, db):
    from app.models import PartnerReport
    from app.services.statistics.reports import parse_period, period_label, previous_month
    from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory

    assert parse_period("2026-12") == ("2026-12", date(2026, 12, 1), date(2027, 1, 1))
    assert previous_month(date(2027, 1, 1)) == "2026-12"
    assert period_label("2026-11") == "mois de novembre 2026" and period_label("2026-Q1") == "1er trimestre 2026"
    cma = InstitutionFactory(slug="cma-test")
    expert = ExpertFactory(antenne=AntenneFactory(institution=cma))
    make_need(0, experts=[expert], created_at=_utc(2026, 11, 3, 9))
    make_need(0, experts=[expert], created_at=_utc(2026, 10, 31, 23, 30))  # 1 November in Paris
    make_need(0, experts=[expert], created_at=_utc(2026, 11, 30, 23, 30))  # 1 December in Paris
    db.session.commit()
    runner = app.test_cli_runner()
    result = runner.invoke(args=["reports", "build", "--month", "2026-11", "--institution", "cma-test"])
    assert result.exit_code == 0, result.output
    whole = db.session.scalar(select(PartnerReport).where(PartnerReport.scope == f"institution:{cma.id}"))
    assert (whole.period, whole.matches) == ("2026-11", 2)
    both = runner.invoke(args=["reports", "build", "--month", "2026-11", "--quarter", "2026-Q4"])
    assert both.exit_code == 1 and "soit --quarter" in both.output
    bad = runner.invoke(args=["reports", "build", "--month", "2026-13"])
    assert bad.exit_code == 1 and "Mois illisible" in bad.output


def test_requests_are_counted_by_provenance(client, db):
    """Issue 16: the page and its series count requests per channel (site, partner's frame, API…)."""
    make_stats_world()
    from app.models import Solicitation

    channels = ["iframe", "api"]
    for solicitation, channel in zip(
        db.session.scalars(select(Solicitation).order_by(Solicitation.id)), channels, strict=False
    ):
        solicitation.channel = channel
    db.session.commit()
    with transaction():
        agg.refresh()
    page = stats_page(_filters(db))
    breakdown = next(b for b in page.breakdowns if b.key == "demandes_provenance")
    totals = {key: point.value for key, _label, point in breakdown.rows}
    requests = sum(p.value for p in _points(page, "demandes_recues").values() if p.value)
    assert totals["iframe"] == 1 and totals["api"] == 1
    assert sum(totals.values()) == requests
    html = client.get("/stats?debut=2026-03&fin=2026-04").get_data(as_text=True)
    assert "Demandes selon leur provenance" in html and "API d&#39;un partenaire" in html
    rows = client.get("/stats.csv?debut=2026-03&fin=2026-04").get_data(as_text=True)
    assert "demandes_provenance:iframe" in rows
