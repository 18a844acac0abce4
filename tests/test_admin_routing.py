"""The back-office simulator « Qui recevrait cette demande ? »."""

from __future__ import annotations

from tests.factories import AntenneFactory, ExpertFactory, offer, zone

URL = "/admin/aiguillage/"


def _lyon_expert():
    antenne = AntenneFactory(name="Antenne Rhône")
    zone(antenne, "departement:69")
    expert = ExpertFactory(antenne=antenne, full_name="Camille Martin", email="camille@partenaire.example")
    offer(expert, "recrutement")
    return expert


def test_anonymous_is_sent_to_login(client, db):
    response = client.get(URL)
    assert response.status_code == 302
    assert "/connexion" in response.headers["Location"]
    assert client.get(URL + "communes?q=lyon").status_code == 302


def test_form_lists_subjects_by_theme_without_archived_ones(admin_client, db):
    page = admin_client.get(URL)
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<optgroup label="Ressources humaines">' in html
    assert '<option value="recrutement">Recruter un ou plusieurs salariés</option>' in html
    assert '<label for="routing-commune">' in html and 'list="routing-commune-list"' in html
    assert '<option value="69123"' not in html  # never a select of every commune


def test_archived_subject_is_not_offered(admin_client, db):
    from app.models.base import utcnow
    from tests.factories import subject

    subject("formation").archived_at = utcnow()
    db.session.commit()
    html = admin_client.get(URL).get_data(as_text=True)
    assert 'value="formation"' not in html
    assert 'value="recrutement"' in html


def test_result_table(admin_client, db):
    expert = _lyon_expert()
    page = admin_client.get(URL, query_string={"subject": "recrutement", "commune": "Lyon (69123)"})
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<th scope="row">Camille Martin</th>' in html
    assert expert.email in html
    assert "Antenne Rhône" in html and expert.antenne.institution.name in html
    assert "<code>departement:69</code> (Rhône)" in html
    assert "Zone de l’antenne" in html


def test_typed_insee_postal_code_or_name_work_without_javascript(admin_client, db):
    _lyon_expert()
    # 69310 is the postal code of Oullins-Pierre-Bénite only; « villeurbanne » one name.
    for typed, commune in (("69123", "Lyon (69123)"), ("69310", "(69149)"), ("villeurbanne", "(69266)")):
        html = admin_client.get(URL, query_string={"subject": "recrutement", "commune": typed}).get_data(as_text=True)
        assert "Camille Martin" in html and commune in html, typed


def test_code_both_insee_and_postal_asks_to_choose(admin_client, db):
    """69001 is Affoux's INSEE code and a postal code of Lyon."""
    html = admin_client.get(URL, query_string={"subject": "recrutement", "commune": "69001"}).get_data(as_text=True)
    assert "Plusieurs communes correspondent" in html
    assert "commune=69001" in html and "commune=69123" in html


def test_postal_code_of_several_communes_asks_to_choose(admin_client, db):
    html = admin_client.get(URL, query_string={"subject": "recrutement", "commune": "01400"}).get_data(as_text=True)
    assert "Plusieurs communes correspondent" in html
    assert "commune=01001" in html


def test_nobody_would_receive_it(admin_client, db):
    _lyon_expert()
    page = admin_client.get(URL, query_string={"subject": "recrutement", "commune": "13055"})
    assert page.status_code == 200
    assert "Personne ne recevrait cette demande" in page.get_data(as_text=True)


def test_bad_input_is_a_french_message_not_a_500(admin_client, db):
    cases = [
        ({"subject": "recrutement", "commune": "99999"}, "Aucune commune"),
        ({"subject": "recrutement", "commune": "zzzzqqq"}, "Aucune commune ne correspond"),
        ({"subject": "recrutement", "commune": ""}, "Indiquez une commune"),
        ({"subject": "astrologie", "commune": "69123"}, "Sujet inconnu"),
        ({"subject": "", "commune": "69123"}, "Choisissez un sujet"),
    ]
    for query, message in cases:
        page = admin_client.get(URL, query_string=query)
        assert page.status_code == 422, query
        assert message in page.get_data(as_text=True), query


def test_commune_autocomplete(admin_client, db):
    response = admin_client.get(URL + "communes", query_string={"q": "lyon"})
    assert response.status_code == 200
    assert {"id": "69123", "text": "Lyon (69123)"} in response.json
    assert admin_client.get(URL + "communes", query_string={"q": "l"}).json == []
