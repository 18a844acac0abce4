"""Every back-office page shares one layout: French language, a skip link to a <main>
landmark, one navigation, and the shared stylesheet (contrasts)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize(
    "path", ["/admin/", "/admin/need/", "/admin/solicitation/?onglet=a-qualifier", "/admin/expert/"]
)
def test_back_office_pages_declare_french_and_a_main_landmark(admin_client, path):
    html = admin_client.get(path).get_data(as_text=True)
    assert html.lstrip().lower().startswith("<!doctype html>")
    assert '<html lang="fr">' in html
    assert html.count('<main id="contenu"') == 1
    assert 'href="#contenu"' in html
    assert html.count('class="navbar ') == 1
    assert "admin/backoffice.css" in html


def test_the_login_redirect_is_left_alone(client):
    response = client.get("/admin/need/")
    assert response.status_code == 302
