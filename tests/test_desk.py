"""The request desk: solicitation tabs (counts, contents, order, export) and the row flags
« Autre demande en cours », « Relance », « Abandons répétés » (``app/services/desk.py``)."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from app.models import Solicitation
from app.models.base import utcnow
from app.services.requests import desk
from app.services.requests.cancellation import SPAM_REASON, cancel_solicitation
from app.services.requests.dispatch import route_solicitation
from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, make_solicitation, offer, zone
from tests.helpers import body

LIST = "/admin/solicitation/"


@pytest.fixture
def experts(db):
    """One expert covering the Rhône for recruitment and training, so requests can be routed."""
    antenne = AntenneFactory(institution=InstitutionFactory(name="CCI Lyon Métropole"), name="CCI — Rhône")
    zone(antenne, "departement:69")
    expert = ExpertFactory(antenne=antenne, full_name="Camille Martin")
    offer(expert, "recrutement")
    offer(expert, "formation")
    return expert


def ask(db, name: str, *, days_ago: float = 0, **fields):
    """A request waiting for staff; each gets its own SIRET and email unless told."""
    return make_solicitation(full_name=name, created_at=utcnow() - timedelta(days=days_ago), **fields)


def tab_page(client, slug: str, **args) -> str:
    response = client.get(LIST, query_string={"onglet": slug, **args})
    assert response.status_code == 200
    return body(response)


@pytest.fixture
def desk_rows(db, experts):
    """Two requests to qualify, one sent, one abandoned, one spam."""
    ask(db, "Alix Durand")
    ask(db, "Bastien Morel")
    route_solicitation(ask(db, "Claude Bernard"))
    cancel_solicitation(ask(db, "Dominique Petit"), reason="hors sujet")
    cancel_solicitation(ask(db, "Eden Faure"), reason=SPAM_REASON)


# ---------------------------------------------------------------- tabs


def test_the_tabs_show_their_counts(admin_client, db, desk_rows):
    page = body(admin_client.get(f"{LIST}?onglet=spam"))
    for text in ("À qualifier (2)", "Transmises (1)", "Abandonnées (1)", "Spam (1)", "Toutes (5)"):
        assert text in page, text
    assert desk.tab_counts() == {"a-qualifier": 2, "transmises": 1, "abandonnees": 1, "spam": 1, "toutes": 5}


def test_spam_and_cancellations_are_counted_when_one_of_them_is_open(admin_client, db, desk_rows):
    page = body(admin_client.get(LIST))
    for text in ("À qualifier (2)", "Transmises (1)", "Toutes (5)"):
        assert text in page, text
    assert "Abandonnées</a>" in page and "Spam</a>" in page
    assert desk.tab_counts(with_spam=False)["spam"] is None


def test_tab_counts_stop_at_the_cap(admin_client, db, desk_rows, monkeypatch):
    assert desk.tab_counts(cap=1) == {"a-qualifier": 2, "transmises": 1, "abandonnees": 1, "spam": 1, "toutes": 2}
    from app.admin.requests import search

    monkeypatch.setattr(search, "COUNT_CAP", 1)
    monkeypatch.setattr("app.admin.requests.solicitations.COUNT_CAP", 1)
    page = body(admin_client.get(f"{LIST}?onglet=spam"))
    assert "À qualifier (plus de 1)" in page and "Transmises (1)" in page


@pytest.mark.parametrize(
    ("slug", "shown"),
    [
        ("a-qualifier", {"Alix Durand", "Bastien Morel"}),
        ("transmises", {"Claude Bernard"}),
        ("abandonnees", {"Dominique Petit"}),
        ("spam", {"Eden Faure"}),
        ("toutes", {"Alix Durand", "Bastien Morel", "Claude Bernard", "Dominique Petit", "Eden Faure"}),
    ],
)
def test_each_tab_lists_its_requests(admin_client, db, desk_rows, slug, shown):
    page = tab_page(admin_client, slug)
    everyone = {"Alix Durand", "Bastien Morel", "Claude Bernard", "Dominique Petit", "Eden Faure"}
    assert {name for name in everyone if name in page} == shown
    assert 'aria-current="page"' in page


def test_without_a_tab_every_request_is_listed(admin_client, db, desk_rows):
    page = body(admin_client.get(LIST))
    for name in ("Alix Durand", "Claude Bernard", "Dominique Petit", "Eden Faure"):
        assert name in page


def test_spam_is_told_apart_by_its_note_whatever_the_case(db, experts):
    solicitation = ask(db, "Alix Durand")
    cancel_solicitation(solicitation, reason="SPAM")
    assert desk.tab_counts()["spam"] == 1
    assert desk.tab_counts()["abandonnees"] == 0


def test_the_queue_is_served_oldest_first_and_the_others_newest_first(admin_client, db, experts):
    ask(db, "Récente Alpha", days_ago=1)
    ask(db, "Ancienne Beta", days_ago=10)
    ask(db, "Moyenne Gamma", days_ago=5)
    page = tab_page(admin_client, "a-qualifier")
    assert page.index("Ancienne Beta") < page.index("Moyenne Gamma") < page.index("Récente Alpha")
    for name, days in (("Routée ancienne", 10), ("Routée récente", 1)):
        route_solicitation(ask(db, name, days_ago=days))
    page = tab_page(admin_client, "transmises")
    assert page.index("Routée récente") < page.index("Routée ancienne")


def test_search_and_tab_links_keep_each_other(admin_client, db, desk_rows):
    page = tab_page(admin_client, "a-qualifier", search="durand")
    assert "Alix Durand" in page and "Bastien Morel" not in page
    assert "onglet=spam" in page and "search=durand" in page
    # Sorting and the export links carry the tab (and the search).
    export = re.search(r'href="(/admin/solicitation/export/csv/[^"]*)"', page).group(1)
    assert "onglet=a-qualifier" in export and "search=durand" in export
    sort_links = re.findall(r'href="(/admin/solicitation/\?[^"]*sort=[^"]*)"', page)
    assert sort_links and all("onglet=a-qualifier" in link for link in sort_links)


def test_the_export_respects_the_tab(admin_client, db, desk_rows):
    text = body(admin_client.get("/admin/solicitation/export/csv/", query_string={"onglet": "spam"}))
    header, *rows = text.splitlines()
    assert header.endswith(",Signaux")
    assert len(rows) == 1 and "Eden Faure" in rows[0]
    text = body(admin_client.get("/admin/solicitation/export/csv/", query_string={"onglet": "a-qualifier"}))
    assert "Alix Durand" in text and "Bastien Morel" in text and "Claude Bernard" not in text


def test_the_actions_return_to_the_tab(admin_client, db, experts):
    from tests.helpers import csrf_token_from

    solicitation = ask(db, "Alix Durand")
    page = tab_page(admin_client, "a-qualifier")
    response = admin_client.post(
        "/admin/solicitation/action/",
        data={
            "action": "spam",
            "rowid": [str(solicitation.id)],
            "csrf_token": csrf_token_from(page),
            "url": f"{LIST}?onglet=a-qualifier",
        },
    )
    assert response.status_code == 302 and "onglet=a-qualifier" in response.headers["Location"]
    assert "Alix Durand" in tab_page(admin_client, "spam")


# ---------------------------------------------------------------- flags


def flags_of(solicitation: Solicitation) -> list[str]:
    return desk.flags_for([solicitation])[solicitation.id]


def test_other_open_request_from_the_same_siret_or_email(db, experts):
    first = ask(db, "Alix Durand", siret="11111111100011")
    second = ask(db, "Alix Durand", siret="11111111100011", subject_slug="formation")
    alone = ask(db, "Bastien Morel")
    assert desk.FLAG_OTHER_OPEN in flags_of(first) and desk.FLAG_OTHER_OPEN in flags_of(second)
    assert desk.FLAG_OTHER_OPEN not in flags_of(alone)
    by_email = ask(db, "Claude Bernard", email="Claude@Exemple.example")
    ask(db, "Claude Bernard", email="claude@exemple.example")
    assert desk.FLAG_OTHER_OPEN in flags_of(by_email)


def test_other_open_request_counts_a_sent_request_only_while_its_need_is_open(db, experts):
    from app.services.requests.matches import change_match_status

    need = route_solicitation(ask(db, "Alix Durand", siret="22222222200011", days_ago=60))
    waiting = ask(db, "Alix Durand", siret="22222222200011")
    assert desk.FLAG_OTHER_OPEN in flags_of(waiting)
    change_match_status(need.matches[0], "taking_care")
    assert desk.FLAG_OTHER_OPEN in flags_of(waiting)
    change_match_status(need.matches[0], "done")
    assert desk.FLAG_OTHER_OPEN not in flags_of(waiting)


def test_other_open_request_ignores_closed_requests(db, experts):
    cancel_solicitation(ask(db, "Alix Durand", siret="33333333300011"))
    waiting = ask(db, "Alix Durand", siret="33333333300011")
    assert desk.FLAG_OTHER_OPEN not in flags_of(waiting)


def test_relaunch_a_request_sent_on_the_same_subject_within_three_weeks(db, experts):
    route_solicitation(ask(db, "Alix Durand", siret="44444444400011", days_ago=20))
    again = ask(db, "Alix Durand", siret="44444444400011")
    assert desk.FLAG_RELAUNCH in flags_of(again)
    other_subject = ask(db, "Alix Durand", siret="44444444400011", subject_slug="formation")
    assert desk.FLAG_RELAUNCH not in flags_of(other_subject)


def test_no_relaunch_after_three_weeks_nor_before_the_sent_request(db, experts):
    route_solicitation(ask(db, "Alix Durand", email="alix@exemple.example", days_ago=25))
    later = ask(db, "Alix Durand", email="alix@exemple.example")
    assert desk.FLAG_RELAUNCH not in flags_of(later)
    earlier = ask(db, "Bastien Morel", siret="55555555500011", days_ago=5)
    route_solicitation(ask(db, "Bastien Morel", siret="55555555500011", days_ago=1))
    assert desk.FLAG_RELAUNCH not in flags_of(earlier)


def test_repeated_cancellations_from_two_on(db, experts):
    cancel_solicitation(ask(db, "Alix Durand", siret="66666666600011"))
    waiting = ask(db, "Alix Durand", siret="66666666600011")
    assert desk.FLAG_CANCELLATIONS not in flags_of(waiting)
    cancel_solicitation(ask(db, "Alix Durand", email=waiting.email))
    assert desk.FLAG_CANCELLATIONS in flags_of(waiting)
    assert flags_of(ask(db, "Bastien Morel")) == []


def test_the_list_shows_reasons_and_flag_badges(admin_client, db, experts):
    ask(db, "Alix Durand", siret="77777777700011")
    ask(db, "Alix Durand", siret="77777777700011")
    page = tab_page(admin_client, "a-qualifier")
    assert "Signaux" in page and "Points à vérifier" in page and "Mode revue" in page
    assert '<span class="badge badge-warning">Autre demande en cours</span>' in page
    text = body(admin_client.get("/admin/solicitation/export/csv/", query_string={"onglet": "a-qualifier"}))
    assert text.splitlines()[1].endswith(",Autre demande en cours")


# ---------------------------------------------------------------- query count


def _queries(client, count_queries, url: str) -> int:
    with count_queries() as counter:
        response = client.get(url)
        assert response.status_code == 200
        body(response)
    return counter.count


@pytest.mark.parametrize(
    "url", [f"{LIST}?onglet=a-qualifier", f"{LIST}?onglet=spam", "/admin/solicitation/export/csv/"]
)
def test_tabs_and_flags_cost_the_same_queries_for_3_or_15_rows(admin_client, db, experts, count_queries, url):
    def batch(count: int) -> None:
        for _ in range(count):
            first = ask(db, "Alix Durand")
            ask(db, "Alix Durand", siret=first.siret)  # a duplicate
            route_solicitation(ask(db, "Alix Durand", siret=first.siret, days_ago=3))  # a relaunch
            cancel_solicitation(ask(db, "Alix Durand", siret=first.siret), reason=SPAM_REASON)
            cancel_solicitation(ask(db, "Alix Durand", siret=first.siret), reason=SPAM_REASON)

    batch(3)
    few = _queries(admin_client, count_queries, url)
    batch(12)
    many = _queries(admin_client, count_queries, url)
    assert few == many
