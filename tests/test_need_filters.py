"""The filters of the needs and matches lists, through the admin pages: each keeps exactly the
right rows, values nobody should type are refused without a 500, and a page costs the same
number of queries whatever its length."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest

from app.models import NeedStar
from app.services.accounts.users import create_user
from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, make_need, subject
from tests.helpers import body, filter_arg

NOW = datetime.now(UTC)


@pytest.fixture
def desk(db):
    """Three needs in three régions, reaching experts of two institutions and three antennes.

    * Lyonnaise: Lyon (69, Auvergne-Rhône-Alpes), recruitment, CCI Lyon antenne, waiting 10 days;
    * Parisienne: Paris (75, Île-de-France), export, France Travail, taken 2 days ago;
    * Marseillaise: Marseille (13, Provence-Alpes-Côte d'Azur), training, CCI Marseille and
      France Travail, waiting 1 day.
    """
    cci = InstitutionFactory(name="CCI France")
    travail = InstitutionFactory(name="France Travail")
    cci_lyon = ExpertFactory(antenne=AntenneFactory(institution=cci, name="CCI Lyon"), full_name="Camille Lyon")
    cci_marseille = ExpertFactory(
        antenne=AntenneFactory(institution=cci, name="CCI Marseille"), full_name="Camille Marseille"
    )
    travail_paris = ExpertFactory(
        antenne=AntenneFactory(institution=travail, name="FT Paris"), full_name="Dominique Paris"
    )
    lyon = make_need(
        0,
        company="Lyonnaise",
        commune="69123",
        subject_slug="recrutement",
        experts=[cci_lyon],
        status="quo",
        created_at=NOW - timedelta(days=10),
    )
    paris = make_need(
        0,
        company="Parisienne",
        commune="75056",
        subject_slug="export",
        experts=[travail_paris],
        status="taking_care",
        created_at=NOW - timedelta(days=2),
        statuses=("taking_care",),
        taken_care_at=NOW - timedelta(days=2) + timedelta(hours=1),
    )
    marseille = make_need(
        0,
        company="Marseillaise",
        commune="13055",
        subject_slug="formation",
        experts=[cci_marseille, travail_paris],
        status="quo",
        created_at=NOW - timedelta(days=1),
    )
    return {
        "needs": {"Lyonnaise": lyon, "Parisienne": paris, "Marseillaise": marseille},
        "institutions": {"cci": cci, "travail": travail},
        "antennes": {"lyon": cci_lyon.antenne, "marseille": cci_marseille.antenne, "paris": travail_paris.antenne},
        "experts": {"lyon": cci_lyon, "marseille": cci_marseille, "paris": travail_paris},
    }


COMPANIES = ("Lyonnaise", "Parisienne", "Marseillaise")


def listed(client, endpoint: str, *filters: tuple[str, str | None, str], search: str | None = None) -> set[str]:
    """The companies the list shows with ``filters`` (name, operation, value) applied."""
    args = [f"flt{i}_{filter_arg(endpoint, name, op)}={value}" for i, (name, op, value) in enumerate(filters)]
    if search is not None:
        args.append(f"search={search}")
    response = client.get(f"/admin/{endpoint}/?{'&'.join(args)}")
    assert response.status_code == 200, body(response)
    page = body(response)
    return {company for company in COMPANIES if company in page}


def listed_experts(client, *filters) -> set[str]:
    args = [f"flt{i}_{filter_arg('match', name, op)}={value}" for i, (name, op, value) in enumerate(filters)]
    response = client.get(f"/admin/match/?{'&'.join(args)}")
    assert response.status_code == 200
    rows = set()
    for row in body(response).split("<tr")[1:]:
        company = re.search(r"Lyonnaise|Parisienne|Marseillaise", row)
        expert = re.search(r"Camille \w+|Dominique \w+", row)
        if company and expert:
            rows.add((company.group(0), expert.group(0)))
    return rows


def paris_text(moment: datetime) -> str:
    from zoneinfo import ZoneInfo

    return moment.astimezone(ZoneInfo("Europe/Paris")).strftime("%Y-%m-%d %H:%M:%S")


# ---------------------------------------------------------------- needs


def filter_options(html: str) -> dict[str, list]:
    """The filters the page offers (Flask-Admin's JSON for its filter widget): name → options."""
    import json
    from html import unescape

    data = re.search(r'<div id="filter-groups-data" class="d-none">(.*?)</div>', html, re.S).group(1)
    groups = json.loads(unescape(data))
    return {name: [tuple(option) for option in items[0]["options"] or []] for name, items in groups.items()}


def test_every_filter_is_offered_by_its_french_name(admin_client, desk):
    offered = filter_options(body(admin_client.get("/admin/need/")))
    assert set(offered) == {
        "Statut",
        "Sans preneur depuis",
        "Suivis par moi",
        "Région",
        "Département",
        "Institution",
        "Antenne",
        "Thème",
        "Sujet",
        "Date",
        "Pris en charge",
    }
    assert ("84", "Auvergne-Rhône-Alpes") in offered["Région"]
    assert ("2A", "2A — Corse-du-Sud") in offered["Département"]
    assert (str(desk["antennes"]["lyon"].id), "CCI Lyon — CCI France") in offered["Antenne"]
    assert ("quo", "En attente") in offered["Statut"]
    # The options are read when the list renders: an institution created now is offered.
    InstitutionFactory(name="Nouvelle institution")
    offered = filter_options(body(admin_client.get("/admin/need/")))
    assert "Nouvelle institution" in [label for _value, label in offered["Institution"]]
    matches = filter_options(body(admin_client.get("/admin/match/")))
    assert "Prise en charge" in matches and "Sans preneur depuis" not in matches


def test_need_filters_by_territory(admin_client, desk):
    assert listed(admin_client, "need", ("Région", None, "84")) == {"Lyonnaise"}
    assert listed(admin_client, "need", ("Région", None, "11")) == {"Parisienne"}
    assert listed(admin_client, "need", ("Département", None, "13")) == {"Marseillaise"}
    assert listed(admin_client, "need", ("Département", None, "38")) == set()


def test_need_filters_by_the_experts_institution_and_antenne(admin_client, desk):
    cci, travail = desk["institutions"]["cci"].id, desk["institutions"]["travail"].id
    assert listed(admin_client, "need", ("Institution", None, cci)) == {"Lyonnaise", "Marseillaise"}
    assert listed(admin_client, "need", ("Institution", None, travail)) == {"Parisienne", "Marseillaise"}
    assert listed(admin_client, "need", ("Antenne", None, desk["antennes"]["marseille"].id)) == {"Marseillaise"}
    # A need reached by two experts of the list's institution is listed once.
    page = body(admin_client.get(f"/admin/need/?flt0_{filter_arg('need', 'Institution')}={travail}"))
    assert page.count("Marseillaise") == 1


def test_need_filters_by_theme_subject_and_status(admin_client, desk):
    rh = subject("recrutement").theme_id
    assert listed(admin_client, "need", ("Thème", None, rh)) == {"Lyonnaise", "Marseillaise"}
    assert listed(admin_client, "need", ("Sujet", None, subject("export").id)) == {"Parisienne"}
    assert listed(admin_client, "need", ("Statut", None, "quo")) == {"Lyonnaise", "Marseillaise"}
    assert listed(admin_client, "need", ("Statut", None, "taking_care")) == {"Parisienne"}


def test_need_filters_by_creation_date_in_paris_time(admin_client, desk):
    five_days_ago = paris_text(NOW - timedelta(days=5))
    yesterday_evening = paris_text(NOW - timedelta(days=1, hours=1))
    assert listed(admin_client, "need", ("Date", "après le", five_days_ago)) == {"Parisienne", "Marseillaise"}
    assert listed(admin_client, "need", ("Date", "avant le", five_days_ago)) == {"Lyonnaise"}
    between = f"{five_days_ago} to {yesterday_evening}"
    assert listed(admin_client, "need", ("Date", "entre", between)) == {"Parisienne"}
    # A bare day is accepted too (from midnight, Paris time).
    assert listed(admin_client, "need", ("Date", "après le", "2000-01-01")) == set(COMPANIES)


def test_the_date_is_read_as_paris_time(admin_client, db, desk):
    need = desk["needs"]["Parisienne"]
    need.created_at = datetime(2026, 7, 14, 21, 30, tzinfo=UTC)  # 23:30 in Paris, summer time
    db.session.commit()
    assert "Parisienne" in listed(admin_client, "need", ("Date", "après le", "2026-07-14 23:00:00"))
    assert "Parisienne" not in listed(admin_client, "need", ("Date", "après le", "2026-07-15 00:00:00"))


def test_no_taker_since_n_days(admin_client, desk):
    assert listed(admin_client, "need", ("Sans preneur depuis", None, "5")) == {"Lyonnaise"}
    assert listed(admin_client, "need", ("Sans preneur depuis", None, "0")) == {"Lyonnaise", "Marseillaise"}
    assert listed(admin_client, "need", ("Sans preneur depuis", None, "30")) == set()


def test_starred_by_me(admin_client, db, desk, admin_user):
    other = create_user("collegue@place.example", role="admin", password="motdepasse-tres-long")
    db.session.add_all(
        [
            NeedStar(need_id=desk["needs"]["Lyonnaise"].id, user_id=admin_user.id),
            NeedStar(need_id=desk["needs"]["Parisienne"].id, user_id=other.id),
        ]
    )
    db.session.commit()
    assert listed(admin_client, "need", ("Suivis par moi", None, "1")) == {"Lyonnaise"}


def test_filters_combine(admin_client, desk):
    cci = desk["institutions"]["cci"].id
    assert listed(
        admin_client, "need", ("Institution", None, cci), ("Statut", None, "quo"), ("Région", None, "93")
    ) == {"Marseillaise"}
    assert listed(admin_client, "need", ("Institution", None, cci), ("Statut", None, "taking_care")) == set()


@pytest.mark.parametrize(
    ("name", "operation", "value"),
    [
        ("Sans preneur depuis", None, "abc"),
        ("Sans preneur depuis", None, "-3"),
        ("Sans preneur depuis", None, "99999999999999999999"),
        ("Sans preneur depuis", None, "2.5"),
        ("Date", "après le", "abc"),
        ("Date", "avant le", "2026-13-45"),
        ("Date", "entre", "2026-01-01 00:00:00 to 2025-01-01 00:00:00"),
        ("Date", "entre", "2026-01-01"),
        ("Région", None, "'; DROP TABLE needs; --"),
        ("Département", None, "toolong"),
        ("Institution", None, "abc"),
        ("Institution", None, "99999999999999999999"),
        ("Antenne", None, "-1"),
        ("Thème", None, "1e3"),
        ("Sujet", None, "99999999999999999999"),
        ("Suivis par moi", None, "peut-être"),
    ],
)
def test_bad_values_are_refused_with_a_message_not_a_500(admin_client, desk, name, operation, value):
    from urllib.parse import quote

    response = admin_client.get(f"/admin/need/?flt0_{filter_arg('need', name, operation)}={quote(value)}")
    assert response.status_code == 200
    page = body(response)
    assert "Valeur de filtre non valide" in page
    # The refused filter is not applied: the list says so and shows every need.
    assert {c for c in COMPANIES if c in page} == set(COMPANIES)


# ---------------------------------------------------------------- matches


def test_match_filters(admin_client, desk):
    cci = desk["institutions"]["cci"].id
    assert listed_experts(admin_client, ("Institution", None, cci)) == {
        ("Lyonnaise", "Camille Lyon"),
        ("Marseillaise", "Camille Marseille"),
    }
    assert listed_experts(admin_client, ("Antenne", None, desk["antennes"]["paris"].id)) == {
        ("Parisienne", "Dominique Paris"),
        ("Marseillaise", "Dominique Paris"),
    }
    assert listed_experts(admin_client, ("Région", None, "93")) == {
        ("Marseillaise", "Camille Marseille"),
        ("Marseillaise", "Dominique Paris"),
    }
    assert listed_experts(admin_client, ("Département", None, "69")) == {("Lyonnaise", "Camille Lyon")}
    assert listed_experts(admin_client, ("Thème", None, subject("export").theme_id)) == {
        ("Parisienne", "Dominique Paris")
    }
    assert listed_experts(admin_client, ("Sujet", None, subject("formation").id)) == {
        ("Marseillaise", "Camille Marseille"),
        ("Marseillaise", "Dominique Paris"),
    }
    assert listed_experts(admin_client, ("Statut", None, "taking_care")) == {("Parisienne", "Dominique Paris")}
    five_days_ago = paris_text(NOW - timedelta(days=5))
    assert listed_experts(admin_client, ("Date", "avant le", five_days_ago)) == {("Lyonnaise", "Camille Lyon")}
    assert listed_experts(admin_client, ("Prise en charge", "après le", five_days_ago)) == {
        ("Parisienne", "Dominique Paris")
    }


def test_bad_match_filter_values_are_refused(admin_client, desk):
    for name, value in (("Institution", "abc"), ("Date", "hier"), ("Région", "???")):
        response = admin_client.get(f"/admin/match/?flt0_{filter_arg('match', name)}={value}")
        assert response.status_code == 200
        assert "Valeur de filtre non valide" in body(response)


# ---------------------------------------------------------------- query counts


def _many_needs(db, desk, count: int, *, start: int) -> None:
    experts = list(desk["experts"].values())
    for n in range(start, start + count):
        make_need(
            0,
            company=f"Entreprise en série {n}",
            commune="69123",
            subject_slug="recrutement",
            experts=experts[: 1 + n % 3],
            status="quo",
            created_at=NOW - (timedelta(days=1 + n)),
        )


@pytest.mark.parametrize(
    "url",
    [
        "/admin/need/",
        "/admin/match/",
        "/admin/need/?search=entreprise&flt0_{need:Région}=84&flt1_{need:Sans preneur depuis}=0",
        "/admin/match/?search=entreprise&flt0_{match:Institution}={cci}",
    ],
)
def test_a_page_costs_the_same_queries_for_5_rows_as_for_40(admin_client, db, desk, count_queries, url):
    url = url.replace("{cci}", str(desk["institutions"]["cci"].id))
    url = re.sub(r"\{(\w+):([^}]+)\}", lambda m: filter_arg(m.group(1), m.group(2)), url)

    _many_needs(db, desk, 5, start=0)
    admin_client.get(url)
    db.session.expire_all()
    with count_queries() as five:
        page = body(admin_client.get(url))
    assert page.count("Entreprise en série") >= 5

    _many_needs(db, desk, 35, start=5)
    db.session.expire_all()
    with count_queries() as forty:
        page = body(admin_client.get(url))
    assert page.count("Entreprise en série") >= 40

    assert five.count == forty.count, (five.statements, forty.statements)


# ---------------------------------------------------------------- capped count


def test_the_count_stops_at_the_cap_and_says_so(admin_client, db, desk, monkeypatch):
    from app.admin.requests import search

    monkeypatch.setattr(search, "COUNT_CAP", 2)
    page = body(admin_client.get("/admin/need/"))
    assert "plus de 2" in page
    # Every row of the page is still listed; the cap only stops the counting.
    assert {c for c in COMPANIES if c in page} == set(COMPANIES)

    # Under the cap the count is exact, filters and search included.
    page = body(admin_client.get(f"/admin/need/?flt0_{filter_arg('need', 'Statut')}=taking_care"))
    assert re.search(r"Liste\s*\(1\)", page)
    assert "plus de 2" not in page
    page = body(admin_client.get("/admin/match/?search=camille"))
    assert re.search(r"Liste\s*\(2\)", page)
    # The solicitations list, with its tabs, is counted the same way.
    assert admin_client.get("/admin/solicitation/?onglet=toutes").status_code == 200
