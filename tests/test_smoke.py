def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["database"] == "ok"
    # The queue's answer is proven against a real Redis, up and down (test_users_and_health):
    # here the queue is an in-memory fake that cannot be down.
    assert "queue" in response.json


def test_home_lists_the_catalog(client):
    page = client.get("/").get_data(as_text=True)
    assert "Recruter un ou plusieurs salariés" in page
    assert 'href="/demande/recrutement"' in page


def test_unknown_address_gets_a_french_page(client):
    response = client.get("/nulle-part")
    assert response.status_code == 404
    assert "Page introuvable" in response.get_data(as_text=True)


def test_wrong_method_gets_a_french_page(client):
    response = client.post("/healthz")
    assert response.status_code == 405
    assert "Action impossible" in response.get_data(as_text=True)


def test_referent_refused_with_a_french_page(client, db):
    from app.services.accounts.users import create_user
    from tests.factories import InstitutionFactory
    from tests.helpers import login

    InstitutionFactory(slug="cci")
    create_user("ref@cci.example", role="referent", password="motdepasse-tres-long", institution_slug="cci")
    login(client, "ref@cci.example")
    response = client.get("/admin/user/")
    assert response.status_code == 403
    assert "Accès refusé" in response.get_data(as_text=True)


def test_an_unexpected_error_gets_a_french_page_and_the_session_recovers(make_app):
    broken = make_app(PROPAGATE_EXCEPTIONS=False)

    def boom():
        raise RuntimeError("panne simulée")

    broken.view_functions["public.index"] = boom
    response = broken.test_client().get("/")
    assert response.status_code == 500
    assert "Une erreur est survenue" in response.get_data(as_text=True)
    assert broken.test_client().get("/healthz").status_code == 200
