"""The partners' API (issue 16): each status code, keys (shown once, hashed, expiry at its boundary,
revocation, rate limit, every use audited), another institution's landing, the same request as
the form for the same input, and the server agreeing with its OpenAPI description."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from app.extensions import db as _db
from app.models import ApiKey, AuditEvent, Solicitation
from app.models.base import utcnow
from app.services.partners.apikeys import KeyRefused, authenticate, create_key
from app.services.transactions import transaction
from tests.factories import InstitutionFactory, covering_expert, make_landing
from tests.helpers import VALID_FORM as VALID
from tests.helpers import csrf_token_from, served_at_from

BODY = {
    "subject": "recrutement",
    "full_name": VALID["full_name"],
    "email": VALID["email"],
    "phone": VALID["phone"],
    "siret": VALID["siret"],
    "postal_code": VALID["postal_code"],
    "description": VALID["description"],
    "origin_url": "https://partenaire.example/aides",
}


@pytest.fixture
def world(db):
    cci = InstitutionFactory(name="CCI France", slug="cci-france")
    other = InstitutionFactory(name="Bpifrance", slug="bpifrance")
    covering_expert("departement:69", institution=cci, full_name="Camille Martin", email="camille@cci.example")
    landing = make_landing(institution=cci, partner_name="Portail CCI")
    foreign = make_landing("bpi", institution=other, partner_name="Portail Bpi")
    with transaction():
        made = create_key(cci)
        other_key = create_key(other)
    return {
        "cci": cci,
        "key": made.secret,
        "key_id": made.key.id,
        "other_key": other_key.secret,
        "landing": landing,
        "foreign": foreign,
    }


def auth(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


def call(client, method: str, path: str, secret: str | None, **kwargs):
    headers = auth(secret) if secret else {}
    return client.open(f"/api/v1{path}", method=method, headers=headers, **kwargs)


# ---------------------------------------------------------------- keys


def test_a_key_is_stored_hashed_and_shown_once(world, app):
    with app.app_context():
        key = _db.session.get(ApiKey, world["key_id"])
        assert world["key"] not in (key.key_hash, key.prefix)
        assert world["key"].startswith(f"pde_{key.prefix}_")
        # Default validity: 18 months.
        assert timedelta(days=540) < key.valid_until - key.created_at < timedelta(days=550)


@pytest.mark.parametrize(
    "header, reason",
    [
        (None, "manquante"),
        ("Basic abc", "invalide"),
        ("Bearer pde_000000000000_" + "a" * 43, "inconnue"),
        ("Bearer n'importe quoi", "inconnue"),
    ],
)
def test_missing_or_unknown_keys_are_401_problems(client, world, header, reason):
    response = client.get("/api/v1/landings", headers={"Authorization": header} if header else {})
    assert response.status_code == 401
    assert response.mimetype == "application/problem+json"
    assert reason in response.get_json()["detail"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_a_tampered_key_is_refused(client, world):
    secret = world["key"]
    tampered = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    assert call(client, "GET", "/landings", tampered).status_code == 401


def test_expiry_is_checked_at_its_boundary(world, app):
    with app.app_context():
        key = _db.session.get(ApiKey, world["key_id"])
        until = key.valid_until
        assert authenticate(f"Bearer {world['key']}", now=until - timedelta(seconds=1)).id == key.id
        with pytest.raises(KeyRefused, match="expiré"):
            authenticate(f"Bearer {world['key']}", now=until)


def test_an_expired_key_is_refused_over_http(client, world, app):
    with app.app_context():
        _db.session.get(ApiKey, world["key_id"]).valid_until = utcnow() - timedelta(seconds=1)
        _db.session.commit()
    response = call(client, "GET", "/landings", world["key"])
    assert response.status_code == 401
    assert "expiré" in response.get_json()["detail"]


def test_a_revoked_key_is_refused_from_then_on(client, world, app, monkeypatch):
    from click.testing import CliRunner

    assert call(client, "GET", "/landings", world["key"]).status_code == 200
    runner = app.test_cli_runner()
    result = runner.invoke(args=["apikeys", "revoke", str(world["key_id"])])
    assert result.exit_code == 0, result.output
    assert "révoquée" in result.output
    response = call(client, "GET", "/landings", world["key"])
    assert response.status_code == 401 and "révoquée" in response.get_json()["detail"]
    again = runner.invoke(args=["apikeys", "revoke", str(world["key_id"])])
    assert "déjà révoquée" in again.output
    assert runner.invoke(args=["apikeys", "revoke", "999999999999"]).exit_code == 1
    assert CliRunner  # the CLI runner above is Flask's


def test_flask_apikeys_create_prints_a_working_key_once(client, world, app):
    runner = app.test_cli_runner()
    result = runner.invoke(args=["apikeys", "create", "cci-france", "--valid-days", "30"])
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    assert secret.startswith("pde_")
    assert call(client, "GET", "/landings", secret).status_code == 200
    with app.app_context():
        stored = _db.session.scalars(select(ApiKey.key_hash)).all()
        assert all(secret not in value for value in stored)
    assert runner.invoke(args=["apikeys", "create", "inconnue"]).exit_code == 1
    refused = runner.invoke(args=["apikeys", "create", "cci-france", "--valid-days", "0"])
    assert refused.exit_code == 1 and "1 à" in refused.output


def test_every_use_is_audited_and_the_last_use_recorded(client, world, app):
    call(client, "GET", "/landings", world["key"])
    call(client, "POST", "/solicitations", world["key"], json={"subject": "x"})
    with app.app_context():
        events = _db.session.scalars(
            select(AuditEvent)
            .where(AuditEvent.object_type == "ApiKey", AuditEvent.action == "api_call")
            .order_by(AuditEvent.id)
        ).all()
        assert [(e.changes["method"][1], e.changes["status"][1]) for e in events] == [("GET", 200), ("POST", 422)]
        assert all(e.object_id == world["key_id"] for e in events)
        assert _db.session.get(ApiKey, world["key_id"]).last_used_at is not None


def test_the_rate_limit_is_per_key(make_app, world):
    limited = make_app(RATELIMIT_ENABLED=True, API_RATE_LIMIT="3 per minute")
    from app.extensions import limiter

    limiter.enabled = True
    with limited.test_client() as client:
        for _ in range(3):
            assert call(client, "GET", "/landings", world["key"]).status_code == 200
        response = call(client, "GET", "/landings", world["key"])
        assert response.status_code == 429
        assert int(response.headers["Retry-After"]) >= 1
        assert "limite" in response.get_json()["detail"]
        # Another key has its own count.
        assert call(client, "GET", "/landings", world["other_key"]).status_code == 200


# ---------------------------------------------------------------- landings


def test_landings_lists_the_key_institutions_landings_and_their_subjects(client, world):
    response = call(client, "GET", "/landings", world["key"])
    assert response.status_code == 200
    [landing] = response.get_json()["landings"]
    assert landing["slug"] == "portail" and landing["partner"] == "Portail CCI"
    assert [s["slug"] for s in landing["subjects"]] == ["recrutement", "formation"]
    assert landing["iframe_url"].endswith("/iframe/portail")


# ---------------------------------------------------------------- solicitations


def test_a_valid_request_is_201_with_its_status_url(client, world, app):
    response = call(client, "POST", "/solicitations", world["key"], json=BODY)
    assert response.status_code == 201, response.get_json()
    created = response.get_json()
    assert response.headers["Location"] == created["status_url"]
    status = client.get(created["status_url"], headers=auth(world["key"]))
    assert status.status_code == 200
    payload = status.get_json()
    assert payload["status"] == "processed"
    assert payload["needs"][0]["institutions"] == ["CCI France"]
    with app.app_context():
        solicitation = _db.session.get(Solicitation, created["id"])
        assert solicitation.channel == "api"
        assert solicitation.api_key_id == world["key_id"]
        assert solicitation.origin_url == "https://partenaire.example/aides"


def test_invalid_fields_are_422_with_french_messages_per_field(client, world, app):
    body = {**BODY, "email": "pas-une-adresse", "siret": "123", "phone": 612}
    del body["full_name"]
    response = call(client, "POST", "/solicitations", world["key"], json=body)
    assert response.status_code == 422
    assert response.mimetype == "application/problem+json"
    errors = response.get_json()["errors"]
    assert set(errors) == {"full_name", "phone"}  # shape first
    response = call(client, "POST", "/solicitations", world["key"], json={**BODY, "email": "x", "siret": "123"})
    errors = response.get_json()["errors"]
    assert set(errors) == {"email", "siret"}
    assert "SIRET" in errors["siret"]
    response = call(client, "POST", "/solicitations", world["key"], json={**BODY, "origin_url": "ftp://x"})
    assert set(response.get_json()["errors"]) == {"origin_url"}
    response = call(client, "POST", "/solicitations", world["key"], json={**BODY, "subject": "inconnu"})
    assert set(response.get_json()["errors"]) == {"subject"}
    with app.app_context():
        assert _db.session.scalars(select(Solicitation)).all() == []


def test_bodies_that_are_not_json_objects(client, world):
    assert call(client, "POST", "/solicitations", world["key"], data="x=1").status_code == 415
    response = call(client, "POST", "/solicitations", world["key"], data="[1]", content_type="application/json")
    assert response.status_code == 400
    response = call(client, "POST", "/solicitations", world["key"], data="{", content_type="application/json")
    assert response.status_code == 400


def test_answers_to_the_subjects_questions_are_required_and_checked(client, world, app):
    from app.models import SubjectQuestion
    from tests.factories import subject

    with app.app_context():
        _db.session.add(
            SubjectQuestion(
                subject=subject("recrutement"), key="contrat", label="Quel contrat ?", choices=["CDI", "CDD"]
            )
        )
        _db.session.commit()
    response = call(client, "POST", "/solicitations", world["key"], json=BODY)
    assert response.status_code == 422
    assert set(response.get_json()["errors"]) == {"answers.contrat"}
    landings = call(client, "GET", "/landings", world["key"]).get_json()["landings"]
    assert landings[0]["subjects"][0]["questions"] == [
        {"key": "contrat", "label": "Quel contrat ?", "choices": ["CDI", "CDD"]}
    ]
    response = call(client, "POST", "/solicitations", world["key"], json={**BODY, "answers": {"contrat": "cdi"}})
    assert response.status_code == 201
    with app.app_context():
        assert _db.session.get(Solicitation, response.get_json()["id"]).subject_answers == {"contrat": "CDI"}


def test_a_landing_of_another_institution_is_403_an_unknown_one_404(client, world, app):
    assert call(client, "POST", "/solicitations", world["key"], json={**BODY, "landing": "bpi"}).status_code == 403
    assert (
        call(client, "POST", "/solicitations", world["key"], json={**BODY, "landing": "nulle-part"}).status_code == 404
    )
    response = call(
        client, "POST", "/solicitations", world["key"], json={**BODY, "landing": "portail", "subject": "export"}
    )
    assert response.status_code == 422 and "ne propose pas" in response.get_json()["errors"]["subject"]
    ok = call(client, "POST", "/solicitations", world["key"], json={**BODY, "landing": "portail"})
    assert ok.status_code == 201
    with app.app_context():
        assert _db.session.get(Solicitation, ok.get_json()["id"]).landing_id == world["landing"].id


def test_a_paused_landing_is_409(client, world, app):
    world["landing"].paused_at = utcnow()
    _db.session.commit()
    response = call(client, "POST", "/solicitations", world["key"], json={**BODY, "landing": "portail"})
    assert response.status_code == 409


def test_the_status_of_another_institutions_request_is_404(client, world):
    created = call(client, "POST", "/solicitations", world["key"], json=BODY).get_json()
    assert call(client, "GET", f"/solicitations/{created['id']}", world["other_key"]).status_code == 404
    assert call(client, "GET", "/solicitations/99999999999999", world["key"]).status_code == 404
    assert call(client, "GET", "/solicitations/0", world["key"]).status_code == 404


def test_the_api_and_the_form_produce_identical_requests(client, world, app):
    """Same input through both doors: the same stored values, routing and confirmation."""
    html = client.get("/demande/recrutement").get_data(as_text=True)
    form_response = client.post(
        "/demande/recrutement?mtm_campaign=printemps",
        data={**VALID, "csrf_token": csrf_token_from(html), "served_at": served_at_from(html)},
    )
    assert form_response.status_code == 303
    # A second identical request would be held as a duplicate: change only the address.
    api = call(client, "POST", "/solicitations", world["key"], json={**BODY, "mtm_campaign": "printemps"})
    assert api.status_code == 201
    with app.app_context():
        first, second = _db.session.scalars(select(Solicitation).order_by(Solicitation.id)).all()
        compared = (
            "full_name",
            "email",
            "phone",
            "siret",
            "postal_code",
            "insee_code",
            "description",
            "subject_id",
            "company_name",
            "mtm_campaign",
        )
        assert {n: getattr(first, n) for n in compared} == {n: getattr(second, n) for n in compared}
        assert (first.channel, second.channel) == ("site", "api")
        assert first.status == "processed"
        # The second is the same request again: held as a duplicate by the same rule.
        assert second.status == "in_progress"
        assert any("Doublon" in note or "même" in note for note in second.qualification_notes)


def test_errors_outside_the_routes_are_problems_too(client, world):
    response = call(client, "GET", "/nulle-part", world["key"])
    assert response.status_code == 404 and response.mimetype == "application/problem+json"
    response = call(client, "DELETE", "/solicitations", world["key"])
    assert response.status_code == 405 and response.mimetype == "application/problem+json"
    assert "POST" in response.headers["Allow"]


def test_the_description_and_its_french_documentation(client):
    spec = client.get("/api/v1/openapi.json").get_json()
    assert spec["openapi"].startswith("3.")
    assert set(spec["paths"]) == {"/landings", "/solicitations", "/solicitations/{id}"}
    docs = client.get("/api/v1/docs")
    assert docs.status_code == 200
    html = docs.get_data(as_text=True)
    assert "Déposer une demande pour une entreprise" in html and "Authorization: Bearer" in html


# ---------------------------------------------------------------- the server agrees with its description


def test_the_server_answers_what_its_openapi_description_says(app, world):
    """Schemathesis generates requests from the description (valid and invalid ones) and checks
    every answer: a documented status, the documented content type, a body matching its schema,
    never a server error.

    One check is left out: « schema-valid data is accepted ». The form's rules (a SIRET's
    checksum, a postal code's communes, an address that can receive mail) are not expressible
    in JSON Schema, so a schema-valid body may be refused with the documented 422."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = auth(world["key"])
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def check(case):
            case.call_and_validate(headers=headers, excluded_checks=[positive_data_acceptance])

        check()
        checked.append(operation.label)
    assert sorted(checked) == ["GET /landings", "GET /solicitations/{id}", "POST /solicitations"]
