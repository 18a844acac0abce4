"""The expert's inbox: every match of one expert in five tabs, opened from the signed link that
each expert email carries, protected like the expert's page."""

from __future__ import annotations

import re
import time

import pytest
from itsdangerous.timed import TimestampSigner

from app.extensions import db as _db
from app.models import Expert
from app.services.addressbook.addressbook import delete_expert
from app.services.messaging import links
from app.services.messaging.inbox import inbox, tab_counts
from app.services.requests.solicitations import submit_solicitation
from tests.factories import ExpertFactory, add_match, covering_expert, make_need, solicitation_input
from tests.helpers import emails_by_key, expert_links


@pytest.fixture
def box(db):
    """One expert with matches in every state, and a colleague's match that must not show."""
    first = make_need(2, statuses=("quo",)).matches[0]  # Boulangerie Durand, received now
    expert = first.expert
    expert.full_name = "Claire Martin"
    matches = {
        "new": first,
        "recent": add_match(expert, "quo", days_ago=10, company="Menuiserie Bois"),
        "expired": add_match(expert, "quo", days_ago=50, company="Vieille Forge"),
        "taking_care": add_match(expert, "taking_care", days_ago=3, company="Garage Central"),
        "done": add_match(expert, "done", days_ago=20),
        "done_no_help": add_match(expert, "done_no_help", days_ago=5),
        "done_not_reachable": add_match(expert, "done_not_reachable", days_ago=30),
        "not_for_me": add_match(expert, "not_for_me", days_ago=2, company="Salon Coiffure"),
    }
    add_match(ExpertFactory(), "quo", company="Chez un collègue")
    return expert, matches


def _url(expert: Expert, tab: str | None = None) -> str:
    return f"/mes-demandes/{links.inbox_token(expert)}" + (f"?onglet={tab}" if tab else "")


def _rows(html: str) -> list[str]:
    """The company of each row, in page order."""
    return re.findall(r"<tr>\s*<td><a [^>]*>[^<]+</a></td>\s*<td>([^<]+)</td>", html)


# ---------------------------------------------------------------- the tabs


def test_each_tab_counts_its_matches(box):
    expert, _ = box
    assert tab_counts(expert) == {"a-traiter": 2, "en-cours": 1, "clotures": 3, "refuses": 1, "expires": 1}


@pytest.mark.parametrize(
    ("tab", "keys"),
    [
        ("a-traiter", ["new", "recent"]),
        ("en-cours", ["taking_care"]),
        ("clotures", ["done_no_help", "done", "done_not_reachable"]),
        ("refuses", ["not_for_me"]),
        ("expires", ["expired"]),
    ],
)
def test_each_tab_lists_its_matches_newest_first(box, tab, keys):
    expert, matches = box
    assert [m.id for m in inbox(expert, tab).matches] == [matches[key].id for key in keys]


def test_an_unknown_tab_opens_the_first_one(box):
    expert, _ = box
    for tab in (None, "", "tout", "expert"):
        assert inbox(expert, tab).tab.key == "a-traiter"


def test_the_expiry_is_a_setting(app, box, monkeypatch):
    expert, _ = box
    monkeypatch.setitem(app.config, "FOLLOWUP_FAILURE_DAYS", 7)
    counts = tab_counts(expert)
    assert (counts["a-traiter"], counts["expires"]) == (1, 2)  # the one of 10 days has expired too


def test_the_page_shows_the_counts_and_the_open_tab(client, box):
    expert, _ = box
    response = client.get(_url(expert))
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert "<h1>Mes demandes</h1>" in html and "Claire Martin" in html
    tabs = re.findall(r'<a class="fr-tabs__tab" href="([^"]+)"( aria-current="page")?[^>]*>\s*([^<]+?)\s*</a>', html)
    assert [(label, bool(current)) for _, current, label in tabs] == [
        ("À traiter&nbsp;(2)", True),
        ("En cours&nbsp;(1)", False),
        ("Clôturés&nbsp;(3)", False),
        ("Refusés&nbsp;(1)", False),
        ("Expirés&nbsp;(1)", False),
    ]
    assert [href.rsplit("onglet=", 1)[1] for href, _, _ in tabs] == [
        "a-traiter",
        "en-cours",
        "clotures",
        "refuses",
        "expires",
    ]
    assert _rows(html) == ["Boulangerie Durand", "Menuiserie Bois"]
    assert "Recruter un ou plusieurs salariés" in html and "Lyon" in html
    assert "Chez un collègue" not in html and "Vieille Forge" not in html
    assert re.search(r"<td>\d{1,2} \w+ 20\d\d</td>", html)
    assert "En attente</span>" in html


def test_each_row_opens_the_expert_page_of_that_match(client, box):
    expert, matches = box
    html = client.get(_url(expert, "clotures")).get_data(as_text=True)
    hrefs = re.findall(r'<td><a class="fr-link" href="/expert/([^"]+)">', html)
    opened = [links.match_for_token(token).id for token in hrefs]
    assert opened == [matches[key].id for key in ("done_no_help", "done", "done_not_reachable")]
    assert client.get(f"/expert/{hrefs[0]}").status_code == 200


def test_the_other_tabs_show_their_rows_and_badges(client, box):
    expert, _ = box
    html = client.get(_url(expert, "refuses")).get_data(as_text=True)
    assert _rows(html) == ["Salon Coiffure"]
    assert "Refusé</span>" in html
    assert re.search(r'href="[^"]*onglet=refuses"\s*aria-current="page"', html)
    html = client.get(_url(expert, "expires")).get_data(as_text=True)
    assert _rows(html) == ["Vieille Forge"]
    assert "plus de 45 jours" in html


def test_an_empty_tab_says_so(client, db):
    expert = make_need(1, statuses=("taking_care",)).matches[0].expert
    html = client.get(_url(expert, "refuses")).get_data(as_text=True)
    assert "Vous n&#39;avez refusé aucune demande." in html
    assert "<table" not in html


def test_a_long_tab_is_cut_with_a_note(client, box, monkeypatch):
    expert, _ = box
    monkeypatch.setattr("app.services.messaging.inbox.ROW_LIMIT", 1)
    html = client.get(_url(expert, "clotures")).get_data(as_text=True)
    assert len(_rows(html)) == 1
    assert "Seules les 1 plus récentes sont affichées." in html


def test_the_query_count_does_not_grow_with_the_matches(client, db, count_queries):
    expert = make_need(1).matches[0].expert
    statuses = ("quo", "taking_care", "done", "not_for_me")

    def queries() -> list[int]:
        counts = []
        for tab in ("a-traiter", "en-cours", "clotures", "refuses", "expires"):
            with count_queries() as counter:
                assert client.get(_url(expert, tab)).status_code == 200
            counts.append(counter.count)
        return counts

    for index in range(4):
        add_match(expert, statuses[index % 4], days_ago=index * 15)
    few = queries()
    for index in range(15):
        add_match(expert, statuses[index % 4], days_ago=index * 5)
    assert queries() == few, few
    # The expert, its antenne and institution (header), the counts, one tab, the shared answers.
    assert max(few) <= 6


# ---------------------------------------------------------------- the link


def test_a_tampered_token_shows_nothing(client, box):
    expert, _ = box
    token = links.inbox_token(expert)
    position = len(token) // 2
    tampered = token[:position] + ("A" if token[position] != "A" else "B") + token[position + 1 :]
    response = client.get(f"/mes-demandes/{tampered}")
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "Ce lien n&#39;est pas valide" in html
    assert "Boulangerie Durand" not in html and "Claire Martin" not in html


def test_a_match_link_does_not_open_the_inbox_nor_the_reverse(client, box):
    expert, matches = box
    assert client.get(f"/mes-demandes/{links.expert_token(matches['new'])}").status_code == 404
    assert client.get(f"/expert/{links.inbox_token(expert)}").status_code == 404


def test_an_expired_token_gets_the_french_expired_page(client, box, monkeypatch, app):
    expert, _ = box
    days = app.config["EXPERT_LINK_MAX_AGE_DAYS"] + 1
    monkeypatch.setattr(TimestampSigner, "get_timestamp", lambda self: int(time.time()) - days * 86400)
    old = links.inbox_token(expert)
    monkeypatch.undo()
    response = client.get(f"/mes-demandes/{old}")
    assert response.status_code == 410
    html = response.get_data(as_text=True)
    assert "Ce lien a expiré" in html and "Boulangerie Durand" not in html


def test_a_deleted_expert_gets_the_revoked_page(client, box):
    expert, _ = box
    url = _url(expert)
    delete_expert(expert)
    response = client.get(url)
    assert response.status_code == 404
    html = response.get_data(as_text=True)
    assert "Ce lien n&#39;est plus actif" in html and "Boulangerie Durand" not in html


@pytest.mark.parametrize("kind", ["valid", "tampered"])
def test_the_token_in_the_url_is_neither_sent_on_nor_kept_nor_indexed(client, box, kind):
    expert, _ = box
    url = _url(expert)
    response = client.get(url if kind == "valid" else url[:-3] + "xyz")
    assert response.status_code == (200 if kind == "valid" else 404)
    assert response.headers["Referrer-Policy"] == "no-referrer"
    assert response.headers["Cache-Control"] == "no-store"
    assert "noindex" in response.headers["X-Robots-Tag"]


def test_the_inbox_is_rate_limited_per_address_when_enabled(make_app, box):
    expert, _ = box
    limited = make_app(RATELIMIT_ENABLED=True, RATELIMIT_STORAGE_URI="memory://")
    with limited.app_context():
        url = _url(_db.session.get(Expert, expert.id))
    with limited.test_client() as client:
        assert [client.get(url).status_code for _ in range(60)] == [200] * 60
        refused = client.get(url)
    assert refused.status_code == 429
    html = refused.get_data(as_text=True)
    assert "Merci de patienter" in html and "Boulangerie Durand" not in html
    assert refused.headers["Referrer-Policy"] == "no-referrer"


def test_the_expert_page_links_back_to_the_inbox(client, box):
    expert, matches = box
    html = client.get(f"/expert/{links.expert_token(matches['recent'])}").get_data(as_text=True)
    [href] = re.findall(r'<a [^>]*href="(/mes-demandes/[^"]+)">Toutes mes demandes</a>', html)
    assert links.expert_for_inbox_token(href.removeprefix("/mes-demandes/")).id == expert.id


# ---------------------------------------------------------------- the email


def test_the_expert_email_links_the_inbox_and_still_one_expert_page(app, db):
    expert = covering_expert("departement:69")
    solicitation = submit_solicitation(solicitation_input())
    [match] = solicitation.need.matches
    email = emails_by_key()[f"match:{match.id}:new"]
    base_url = app.config["BASE_URL"]

    [page_link] = expert_links(email.body_text, base_url)
    assert links.match_for_token(page_link.removeprefix(f"{base_url}/expert/")).id == match.id
    [inbox_link] = re.findall(rf"{re.escape(base_url)}/mes-demandes/\S+", email.body_text)
    assert not inbox_link.startswith(f"{base_url}/expert/")
    assert "Toutes vos demandes" in email.body_text
    assert links.expert_for_inbox_token(inbox_link.removeprefix(f"{base_url}/mes-demandes/")).id == expert.id
    assert f'href="{inbox_link}"' in email.body_html and "Toutes vos demandes</a>" in email.body_html
    assert len(expert_links(email.body_html.replace('"', " "), base_url)) == 1
