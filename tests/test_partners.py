"""Partners' landings (issue 16): the landing on this site and embedded in a frame, framing allowed
to the partner's declared origins only, prefill and provenance, a paused landing, the partner
named in the confirmation, and the CSRF of a frame that has no cookie."""

from __future__ import annotations

import re
from urllib.parse import parse_qs, urlsplit

import pytest
from sqlalchemy import select

from app.extensions import db as _db
from app.models import OutboundEmail, Solicitation
from app.models.base import utcnow
from app.services.errors import ServiceError
from app.services.partners.landings import clean_origin_url, normalize_origin, parse_origins
from tests.factories import covering_expert, make_landing
from tests.helpers import VALID_FORM as VALID
from tests.helpers import csrf_token_from, served_at_from

ORIGIN = "https://partenaire.example"
EMBEDDED = "/iframe/portail/demande/recrutement"
OWN = "http://localhost"  # the test client's host


@pytest.fixture
def landing(db):
    covering_expert("departement:69", full_name="Camille Martin", email="camille@cci.example")
    return make_landing(titles={"recrutement": "Embaucher"}, partner_name="Portail de l'entrepreneur")


def frame_ancestors(response) -> str:
    csp = response.headers["Content-Security-Policy"]
    return re.search(r"frame-ancestors ([^;]+)", csp).group(1).strip()


def embedded_post(client, path: str = EMBEDDED, *, headers=None, **fields):
    """Open the embedded form, then post it as the browser in the frame would: no cookie, our
    own ``Origin``."""
    html = client.get(path).get_data(as_text=True)
    client._cookies.clear()  # a frame on another site: third-party cookies blocked
    data = {**VALID, "served_at": served_at_from(html), **fields}
    return client.post(path, data=data, headers={"Origin": OWN, **(headers or {})})


def stored(app) -> list[Solicitation]:
    with app.app_context():
        return list(_db.session.scalars(select(Solicitation).order_by(Solicitation.id)))


# ---------------------------------------------------------------- who may frame


@pytest.mark.parametrize(
    "path",
    [
        "/iframe/portail",
        "/iframe/portail/theme/ressources-humaines",
        "/iframe/portail/sujets?sujet=formation&sujet=recrutement",
        EMBEDDED,
    ],
)
def test_each_embedded_shape_may_be_framed_by_the_declared_origins_only(client, landing, path):
    response = client.get(path)
    assert response.status_code == 200
    assert frame_ancestors(response) == ORIGIN
    assert "X-Frame-Options" not in response.headers
    assert "fr-header" not in response.get_data(as_text=True)  # light: no site header
    assert "pde-frame.js" in response.get_data(as_text=True)  # it sends its height


def test_every_other_page_refuses_to_be_framed(client, landing):
    for path in ("/", "/demande/recrutement", "/partenaires/portail", "/partenaires/portail/demande/recrutement"):
        response = client.get(path)
        assert frame_ancestors(response) == "'none'", path
        assert response.headers["X-Frame-Options"] == "DENY"


def test_a_partner_without_origins_may_not_be_framed_anywhere(client, db):
    make_landing(origins=())
    assert frame_ancestors(client.get("/iframe/portail")) == "'none'"


def test_several_origins_are_all_named(client, db):
    make_landing(origins=("https://a.example", "https://b.example:8443"))
    assert frame_ancestors(client.get("/iframe/portail")) == "https://a.example https://b.example:8443"


def test_origins_are_normalised_and_wrong_ones_refused_in_french():
    assert normalize_origin("https://WWW.Exemple.fr/aides?x=1") == "https://www.exemple.fr"
    assert normalize_origin("https://exemple.fr:443") == "https://exemple.fr"
    assert normalize_origin("http://localhost:8000/") == "http://localhost:8000"
    assert parse_origins("https://a.fr\nhttps://a.fr/page, https://b.fr") == ["https://a.fr", "https://b.fr"]
    for wrong in ("http://exemple.fr", "exemple.fr", "https://", "javascript:alert(1)", "https://a b.fr", "*"):
        with pytest.raises(ServiceError):
            normalize_origin(wrong)
    with pytest.raises(ServiceError, match="seules les origines https"):
        parse_origins("https://ok.fr http://pas-ok.fr")


# ---------------------------------------------------------------- shapes and contents


def test_the_landing_offers_its_subjects_only_with_its_own_titles(client, landing):
    html = client.get("/iframe/portail").get_data(as_text=True)
    assert "Embaucher" in html and "Former mes salariés" in html
    assert "Exporter" not in html
    assert client.get("/iframe/portail/demande/export").status_code == 404
    assert client.get("/iframe/inconnue").status_code == 404
    # A theme or a list shows only what it names, within the landing.
    assert client.get("/iframe/portail/theme/environnement").status_code == 404
    listed = client.get("/iframe/portail/sujets?sujet=formation&sujet=export").get_data(as_text=True)
    assert "Former mes salariés" in listed and "Embaucher" not in listed


def test_links_keep_prefill_campaign_and_provenance(client, landing):
    html = client.get(
        "/iframe/portail?email=marie%40exemple.fr&mtm_campaign=printemps&origin_url=https%3A%2F%2Fpartenaire.example%2Faides"
    ).get_data(as_text=True)
    link = re.search(r'href="(/iframe/portail/demande/recrutement[^"]*)"', html).group(1).replace("&amp;", "&")
    query = parse_qs(urlsplit(link).query)
    assert query == {
        "email": ["marie@exemple.fr"],
        "mtm_campaign": ["printemps"],
        "origin_url": ["https://partenaire.example/aides"],
    }


def test_prefill_fills_the_form(client, landing):
    html = client.get(
        EMBEDDED + "?full_name=Marie%20Dupont&email=marie%40exemple.fr&phone=0612345678&siret=12345678200028"
    ).get_data(as_text=True)
    assert 'value="Marie Dupont"' in html
    assert 'value="marie@exemple.fr"' in html
    assert 'value="0612345678"' in html
    assert 'value="12345678200028"' in html
    assert "Embaucher" in html and "Portail de l&#39;entrepreneur" in html


# ---------------------------------------------------------------- submitting in a frame


def test_an_embedded_request_is_stored_with_its_provenance_and_names_the_partner(client, app, landing):
    path = EMBEDDED + "?mtm_campaign=printemps&origin_url=https%3A%2F%2Fpartenaire.example%2Faides%3Fp%3D1"
    response = embedded_post(client, path)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"].startswith("/iframe/portail/demande/recrutement/merci")
    [solicitation] = stored(app)
    assert solicitation.channel == "iframe"
    assert solicitation.landing_id == landing.id
    assert solicitation.origin_url == "https://partenaire.example/aides?p=1"
    assert solicitation.mtm_campaign == "printemps"
    assert solicitation.status == "processed"  # routed like any request
    confirmation = client.get(response.headers["Location"])
    assert "Portail de l&#39;entrepreneur" in confirmation.get_data(as_text=True)
    assert frame_ancestors(confirmation) == ORIGIN
    with app.app_context():
        email = _db.session.scalar(select(OutboundEmail).where(OutboundEmail.key.like("solicitation:%:confirmation")))
        assert "Portail de l'entrepreneur" in email.body_text


def test_the_referer_is_the_provenance_when_the_snippet_gave_none(client, app, landing):
    html = client.get(EMBEDDED, headers={"Referer": "https://partenaire.example/"}).get_data(as_text=True)
    action = re.search(r'<form method="post" action="([^"]+)"', html).group(1).replace("&amp;", "&")
    assert parse_qs(urlsplit(action).query) == {"origin_url": ["https://partenaire.example/"]}
    client.post(action, data={**VALID, "served_at": served_at_from(html)}, headers={"Origin": OWN})
    assert stored(app)[0].origin_url == "https://partenaire.example/"


def test_the_embedded_form_needs_no_cookie_but_refuses_another_origin(client, app, landing):
    refused = embedded_post(client, headers={"Origin": "https://evil.example"})
    assert refused.status_code == 400
    assert "Formulaire expiré" in refused.get_data(as_text=True)
    assert stored(app) == []
    # No Origin and a foreign Referer: refused too.
    html = client.get(EMBEDDED).get_data(as_text=True)
    response = client.post(
        EMBEDDED,
        data={**VALID, "served_at": served_at_from(html)},
        headers={"Referer": "https://evil.example/page"},
    )
    assert response.status_code == 400
    assert stored(app) == []


def test_an_expired_embedded_form_is_refused_and_a_replayed_one_stored_once(client, app, landing):
    from app.public.forms import sign_served_at

    with app.test_request_context():
        old = sign_served_at("portail/recrutement", now=utcnow().timestamp() - 9 * 3600)
    response = client.post(EMBEDDED, data={**VALID, "served_at": old}, headers={"Origin": OWN})
    assert response.status_code == 400
    assert stored(app) == []
    html = client.get(EMBEDDED).get_data(as_text=True)
    data = {**VALID, "served_at": served_at_from(html)}
    assert client.post(EMBEDDED, data=data, headers={"Origin": OWN}).status_code == 303
    assert client.post(EMBEDDED, data=data, headers={"Origin": OWN}).status_code == 303
    assert len(stored(app)) == 1


def test_a_form_signed_for_another_landing_is_refused(client, app, landing):
    html = client.get("/demande/recrutement").get_data(as_text=True)  # the site's own form
    response = client.post(EMBEDDED, data={**VALID, "served_at": served_at_from(html)}, headers={"Origin": OWN})
    assert response.status_code == 400
    assert stored(app) == []


def test_embedded_errors_are_shown_in_the_frame_and_lose_nothing(client, app, landing):
    response = embedded_post(client, email="pas-une-adresse")
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "adresse email" in html.lower()
    assert 'value="  Marie   Dupont "' in html or "Marie" in html
    assert frame_ancestors(response) == ORIGIN
    assert stored(app) == []


def test_the_landing_page_on_this_site_uses_the_session_csrf(client, app, landing):
    path = "/partenaires/portail/demande/recrutement"
    html = client.get(path).get_data(as_text=True)
    assert "fr-header" in html
    without = client.post(path, data={**VALID, "served_at": served_at_from(html)})
    assert without.status_code == 400
    data = {**VALID, "served_at": served_at_from(html), "csrf_token": csrf_token_from(html)}
    response = client.post(path, data=data)
    assert response.status_code == 303
    [solicitation] = stored(app)
    assert solicitation.channel == "landing" and solicitation.landing_id == landing.id


# ---------------------------------------------------------------- paused


def test_a_paused_landing_says_so_and_stores_nothing(client, app, landing):
    html = client.get(EMBEDDED).get_data(as_text=True)
    landing.paused_at = utcnow()
    _db.session.commit()
    for path in ("/iframe/portail", EMBEDDED, "/partenaires/portail"):
        page = client.get(path)
        assert page.status_code == 200
        assert "momentanément indisponible" in page.get_data(as_text=True)
    response = client.post(EMBEDDED, data={**VALID, "served_at": served_at_from(html)}, headers={"Origin": OWN})
    assert response.status_code == 409
    assert "momentanément indisponible" in response.get_data(as_text=True)
    assert stored(app) == []


def test_the_provenance_of_a_page_address_is_cleaned():
    assert clean_origin_url("https://user:pw@partenaire.example/a") == "https://partenaire.example/a"
    assert clean_origin_url("javascript:alert(1)") is None
    assert (
        clean_origin_url("https://partenaire.example/" + "a" * 2000)
        == ("https://partenaire.example/" + "a" * 2000)[:1000]
    )
