"""The API Recherche d'entreprises client, against recorded answers served by httpx's
MockTransport: what it reads from an answer, and that every failure is ``None`` and a warning,
never an exception that would break the form."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import httpx
import pytest

from app.services.reference.registry import CompanyInfo, RechercheEntreprisesClient

RECORDED = Path(__file__).parent / "data" / "registry"
BASE = "https://recherche-entreprises.example"


def recorded(name: str) -> dict:
    return json.loads((RECORDED / name).read_text(encoding="utf-8"))


def client_answering(handler) -> tuple[RechercheEntreprisesClient, list[httpx.Request]]:
    seen: list[httpx.Request] = []

    def record(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return handler(request)

    return RechercheEntreprisesClient(BASE, timeout=2.5, transport=httpx.MockTransport(record)), seen


def serving(name: str):
    return lambda request: httpx.Response(200, json=recorded(name))


def test_a_matching_establishment_is_read_with_its_company():
    client, seen = client_answering(serving("search_12345678200028.json"))

    info = client.lookup("12345678200028")

    assert info == CompanyInfo(
        siret="12345678200028",
        siren="123456782",
        name="BOULANGERIE DU VIEUX LYON",
        naf_code="47.24Z",  # the établissement's activity, not the head office's
        legal_form="5499",
        commune_code="69382",
        postal_code="69002",
        active=True,
        # The établissement gives none of these: the company's (head office's) facts.
        headcount_code="11",
        created_on="2012-03-01",
        activity_nature=None,  # the API says nothing: unknown, not guessed
    )
    assert len(seen) == 1
    assert seen[0].method == "GET"
    assert seen[0].url.path == "/search"
    assert seen[0].url.params["q"] == "12345678200028"
    assert seen[0].headers["accept"] == "application/json"


def test_the_head_office_is_found_in_siege_and_a_closed_one_is_inactive():
    client, _ = client_answering(serving("search_98765432400019_closed.json"))

    info = client.lookup("98765432400019")

    assert info is not None
    assert info.name == "ATELIER MECANIQUE DURAND"  # nom_complet empty: the raison sociale
    assert info.commune_code == "01093"
    assert info.postal_code == "01400"
    assert info.legal_form == "5710"
    assert info.active is False


def test_the_establishments_own_facts_come_first_and_a_craft_code_makes_an_artisan():
    # The recorded answer above, with the fields the API gives an établissement registered
    # with the chambre de métiers (its trade's code), its own headcount and creation date.
    client, _ = client_answering(serving("search_12345678200028_artisan.json"))

    info = client.lookup("12345678200028")

    assert (info.headcount_code, info.created_on, info.activity_nature) == ("02", "2015-06-15", "artisanale")


def test_an_unknown_headcount_is_nn():
    client, _ = client_answering(serving("search_35600000049837_la_poste.json"))

    info = client.lookup("35600000049837")

    assert (info.headcount_code, info.created_on, info.legal_form) == ("NN", None, "5510")


def test_the_fake_registry_gives_the_same_facts_for_the_same_siret():
    from app.services.reference.registry import FakeRegistry

    first, again = FakeRegistry().lookup("12345678200028"), FakeRegistry().lookup("12345678200028")
    assert first == again
    assert (first.naf_code, first.activity_nature) == ("43.21A", "artisanale")  # an electrician
    assert first.headcount_code in ("NN", "00", "01", "02", "03", "11", "12", "21", "22", "31")
    assert first.created_on == "2008-05-01"
    assert FakeRegistry().lookup("12345678300028").activity_nature is None  # software: unknown nature


def test_a_la_poste_establishment():
    client, _ = client_answering(serving("search_35600000049837_la_poste.json"))

    info = client.lookup("35600000049837")

    assert info is not None
    assert (info.siren, info.name, info.commune_code) == ("356000000", "LA POSTE", "35238")


@pytest.mark.parametrize(
    ("name", "siret"),
    [
        ("search_no_result.json", "44306184100047"),
        # The API answers a near match for a number it does not know: not the same SIREN.
        ("search_near_match.json", "44306184100047"),
        # Same SIREN, but the établissement asked for is not in the answer.
        ("search_12345678200028.json", "12345678200036"),
    ],
)
def test_an_answer_without_the_siret_is_none(name, siret):
    client, _ = client_answering(serving(name))
    assert client.lookup(siret) is None


def test_a_malformed_siret_is_not_even_asked():
    client, seen = client_answering(serving("search_12345678200028.json"))
    assert client.lookup("1234") is None
    assert client.lookup("١٢٣٤٥٦٧٨٢٠٠٠٢٨") is None  # Arabic-Indic digits are digits, not a SIRET
    assert seen == []


def _raise(error: Exception):
    def handler(request: httpx.Request) -> httpx.Response:
        raise error

    return handler


@pytest.mark.parametrize(
    ("handler", "reason"),
    [
        (lambda request: httpx.Response(500, text="Internal Server Error"), "500"),
        (lambda request: httpx.Response(429, json={"erreur": "Trop de requêtes"}), "429"),
        (lambda request: httpx.Response(200, text="<html>maintenance</html>"), "not JSON"),
        (lambda request: httpx.Response(200, json=["not", "an", "object"]), "wrong shape"),
        (lambda request: httpx.Response(200, json={"results": [{"siren": "123456782", "siege": "?"}]}), "wrong shape"),
        (_raise(httpx.ConnectTimeout("timed out")), "timeout"),
        (_raise(httpx.ConnectError("name resolution failed")), "no network"),
    ],
)
def test_every_failure_is_none_and_a_warning(handler, reason, caplog):
    client, _ = client_answering(handler)
    with caplog.at_level(logging.WARNING, logger="app.services.reference.registry"):
        assert client.lookup("12345678200028") is None, reason
    assert any("12345678200028" in record.getMessage() for record in caplog.records)


def test_an_injected_client_is_used_with_the_timeout_and_left_open():
    timeouts = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        return httpx.Response(200, json=recorded("search_12345678200028.json"))

    with httpx.Client(transport=httpx.MockTransport(handler)) as shared:
        client = RechercheEntreprisesClient(BASE + "/", timeout=1.5, client=shared)
        assert client.lookup("12345678200028") is not None
        assert not shared.is_closed
    assert timeouts[0]["connect"] == 1.5


def test_get_registry_builds_this_client_from_the_config(make_app):
    from app.services.reference.registry import get_registry

    other = make_app(COMPANY_REGISTRY="recherche-entreprises", RECHERCHE_ENTREPRISES_URL=BASE)
    with other.app_context():
        registry = get_registry()
    assert isinstance(registry, RechercheEntreprisesClient)
    assert registry.base_url == BASE
