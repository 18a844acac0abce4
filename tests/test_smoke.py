def test_healthz(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json["database"] == "ok"
    assert response.json["queue"] == "ok"


def test_home_lists_the_catalog(client):
    page = client.get("/").get_data(as_text=True)
    assert "Recruter un ou plusieurs salariés" in page
    assert 'href="/demande/recrutement"' in page
