"""Full-text search of the request lists: documents kept current by the flush listener,
accents and case ignored, numbers and emails found, combined with the filters, served by the
GIN index on PostgreSQL, and ``flask desk reindex`` for rows written before the documents."""

from __future__ import annotations

import re
from urllib.parse import quote

import pytest
from sqlalchemy import select, text, update

from app.models import Need, Solicitation
from app.services.requests.search import normalize, parse_query, reindex_all, search_condition
from tests.factories import ExpertFactory, SolicitationFactory, make_need
from tests.helpers import body


def listed(client, endpoint: str, query: str, names: tuple[str, ...], extra: str = "") -> set[str]:
    response = client.get(f"/admin/{endpoint}/?search={quote(query)}{extra}")
    assert response.status_code == 200, body(response)
    page = body(response)
    return {name for name in names if name in page}


@pytest.fixture
def firms(db):
    """Three needs whose words overlap just enough to tell a search that works from one that does not."""
    return {
        "sg": make_need(
            1,
            company="Société Générale Équipements",
            siret="55212022200013",
            contact="Hélène Lefèvre",
            email="h.lefevre@sg-equipements.fr",
            phone="+33 4 72 11 22 33",
            description="Nous voulons exporter nos machines vers l'Allemagne.",
            status="quo",
        ),
        "boulangerie": make_need(
            1,
            company="Boulangerie Générale",
            siret="80123456700021",
            contact="Marc Dubois",
            email="marc@boulangerie.example",
            phone="0612345678",
            description="Recruter deux apprentis boulangers.",
            status="taking_care",
        ),
        "garage": make_need(
            1,
            company="Garage du Centre",
            siret="43210987600011",
            contact="Zoé Martin",
            email="zoe@garage.example",
            phone="0478000000",
            description="Financer un pont élévateur.",
            status="quo",
        ),
    }


NAMES = ("Société Générale Équipements", "Boulangerie Générale", "Garage du Centre")


# ---------------------------------------------------------------- documents


def test_normalize_removes_accents_case_ligatures_and_control_characters():
    assert normalize("  Société   GÉNÉRALE\tœuvre\x00Ça ") == "societe generale oeuvre ca"
    assert normalize(None) == ""


def test_a_need_gets_its_document_when_created(db, firms):
    document = firms["sg"].search_document
    for word in (
        "societe generale equipements",
        "55212022200013",
        "552120222",  # the SIREN
        "helene lefevre",
        "h.lefevre@sg-equipements.fr",
        "sg-equipements.fr",
        "33472112233",
        "0472112233",  # +33 read as the national number
        "nous voulons exporter nos machines vers l'allemagne",
    ):
        assert word in document, word
    assert document == document.lower()
    # What is stored is what the database holds, not only the object.
    db.session.expire_all()
    assert db.session.get(Need, firms["sg"].id).search_document == document


def test_the_document_follows_changes_to_the_need_its_contact_and_its_company(db, firms):
    need = firms["garage"]
    need.description = "Acheter un véhicule électrique."
    db.session.commit()
    assert "acheter un vehicule electrique" in need.search_document
    assert "pont" not in need.search_document

    need.contact.full_name = "Zoé Bérénice Martin"
    db.session.commit()
    db.session.expire_all()
    assert "zoe berenice martin" in db.session.get(Need, need.id).search_document

    need = db.session.get(Need, need.id)
    need.facility.company.name = "Garage de l'Étoile"
    db.session.commit()
    db.session.expire_all()
    assert "garage de l'etoile" in db.session.get(Need, need.id).search_document


def test_a_status_change_does_not_recompute_the_document(db, firms, count_queries):
    need = firms["garage"]
    db.session.execute(update(Need).where(Need.id == need.id).values(search_document="marqueur"))
    db.session.commit()
    need = db.session.get(Need, need.id)
    need.status = "taking_care"
    db.session.commit()
    assert db.session.scalar(select(Need.search_document).where(Need.id == need.id)) == "marqueur"


def test_a_solicitation_gets_its_document_and_keeps_it_current(db):
    solicitation = SolicitationFactory(
        full_name="Hélène Lefèvre", company_name="Société Générale", siret="55212022200013", email="h@sg.fr"
    )
    for word in ("helene lefevre", "societe generale", "55212022200013", "552120222", "h@sg.fr", "0472000000"):
        assert word in solicitation.search_document, word
    solicitation.company_name = "Crêperie Bretonne"
    db.session.commit()
    assert "creperie bretonne" in solicitation.search_document
    assert "societe" not in solicitation.search_document


def test_a_routed_solicitation_makes_a_need_with_its_document(db):
    from app.services.requests.dispatch import route_solicitation
    from tests.factories import AntenneFactory, offer, zone

    antenne = AntenneFactory()
    zone(antenne, "departement:69")
    offer(ExpertFactory(antenne=antenne), "recrutement")
    need = route_solicitation(SolicitationFactory(full_name="Élodie Perrin", company_name="Fromagerie Perrin"))
    db.session.commit()
    assert "elodie perrin" in need.search_document
    assert need.facility.siret in need.search_document


def test_reindex_fills_the_documents_of_older_rows(app, db, firms):
    solicitation = SolicitationFactory(full_name="Hélène Lefèvre")
    db.session.execute(update(Need).values(search_document=""))
    db.session.execute(update(Solicitation).values(search_document=""))
    db.session.commit()

    steps = []
    changed = reindex_all(batch_size=2, progress=lambda table, done, total: steps.append((table, done, total)))

    assert changed == {"needs": 3, "solicitations": 1}
    assert steps == [("besoins", 2, 3), ("besoins", 3, 3), ("sollicitations", 1, 1)]
    db.session.expire_all()
    assert "societe generale equipements" in db.session.get(Need, firms["sg"].id).search_document
    assert "helene lefevre" in db.session.get(Solicitation, solicitation.id).search_document
    # Nothing left to do the second time.
    assert reindex_all() == {"needs": 0, "solicitations": 0}

    db.session.execute(update(Need).values(search_document=""))
    db.session.commit()
    result = app.test_cli_runner().invoke(args=["desk", "reindex"])
    assert result.exit_code == 0, result.output
    assert "3 besoin(s) et 0 sollicitation(s) réindexé(s)." in result.output
    db.session.expire_all()
    assert db.session.get(Need, firms["garage"].id).search_document


# ---------------------------------------------------------------- queries


def test_parse_query_reads_numbers_typed_with_separators():
    assert parse_query("552 120 222 00013").numbers == ("55212022200013",)
    assert parse_query("06.12.34.56.78").numbers == ("0612345678",)
    terms = parse_query("Société 69100")
    assert terms.words == ("societe",) and terms.numbers == ("69100",)
    assert parse_query("   ") is None
    assert parse_query(None) is None


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("societe generale", {"Société Générale Équipements"}),
        ("SOCIÉTÉ générale", {"Société Générale Équipements"}),
        ("générale", {"Société Générale Équipements", "Boulangerie Générale"}),
        ("55212022200013", {"Société Générale Équipements"}),
        ("552 120 222 00013", {"Société Générale Équipements"}),
        ("552120222", {"Société Générale Équipements"}),  # SIREN
        ("h.lefevre@sg-equipements.fr", {"Société Générale Équipements"}),
        ("marc@boulangerie.example", {"Boulangerie Générale"}),
        ("garage.example", {"Garage du Centre"}),  # an email's domain
        ("helene lefevre", {"Société Générale Équipements"}),
        ("Hélène", {"Société Générale Équipements"}),
        ("06 12 34 56 78", {"Boulangerie Générale"}),
        ("04 72 11 22 33", {"Société Générale Équipements"}),
        ("pont élévateur", {"Garage du Centre"}),
        ("garage boulangerie", set()),  # every word must match
        ("introuvable", set()),
    ],
)
def test_the_needs_list_finds_by_name_number_email_contact_and_description(admin_client, firms, query, expected):
    assert listed(admin_client, "need", query, NAMES) == expected


def test_search_combines_with_a_filter_and_counts_what_it_shows(admin_client, firms):
    from tests.helpers import filter_arg

    status = filter_arg("need", "Statut")
    assert listed(admin_client, "need", "generale", NAMES, f"&flt0_{status}=taking_care") == {"Boulangerie Générale"}
    assert listed(admin_client, "need", "generale", NAMES, f"&flt0_{status}=quo") == {"Société Générale Équipements"}
    # The count above the list is the search's, not the table's.
    page = body(admin_client.get("/admin/need/?search=generale"))
    assert re.search(r"Liste\s*\(2\)", page), page


def test_the_search_box_is_shown_with_a_french_placeholder(admin_client, firms):
    for endpoint in ("need", "match", "solicitation"):
        page = body(admin_client.get(f"/admin/{endpoint}/"))
        assert 'name="search"' in page
    assert "Entreprise, SIRET, contact" in body(admin_client.get("/admin/need/"))


@pytest.mark.parametrize("query", ["%", "_", "le la les", "a" * 5000, "'; DROP TABLE needs; --", "&|!:*()"])
def test_odd_queries_answer_a_page(admin_client, firms, query):
    for endpoint in ("need", "match", "solicitation"):
        response = admin_client.get(f"/admin/{endpoint}/?search={quote(query)}")
        assert response.status_code == 200, (endpoint, query)
    # A wildcard is a character, not "anything".
    assert listed(admin_client, "need", "%", NAMES) == set()


def test_a_nul_in_the_search_is_refused_in_french(admin_client, firms):
    for endpoint in ("need", "match", "solicitation"):
        response = admin_client.get(f"/admin/{endpoint}/?search={quote(chr(0))}")
        assert response.status_code == 400, endpoint
        assert "caractère invalide" in response.get_data(as_text=True)


def test_the_matches_list_searches_the_need_and_the_expert(admin_client, db, firms):
    expert = ExpertFactory(full_name="Émilie Rousseau", email="emilie@cci.example")
    make_need(1, company="Menuiserie Rousseau", status="quo", experts=[expert])
    names = (*NAMES, "Menuiserie Rousseau")
    assert listed(admin_client, "match", "societe generale", names) == {"Société Générale Équipements"}
    assert listed(admin_client, "match", "emilie", names) == {"Menuiserie Rousseau"}
    assert listed(admin_client, "match", "Émilie", names) == {"Menuiserie Rousseau"}
    assert listed(admin_client, "match", "emilie@cci.example", names) == {"Menuiserie Rousseau"}
    assert listed(admin_client, "match", "rousseau", names) == {"Menuiserie Rousseau"}


def test_the_solicitations_list_searches_its_document(admin_client, db):
    SolicitationFactory(full_name="Hélène Lefèvre", company_name="Société Générale")
    SolicitationFactory(full_name="Marc Dubois", company_name="Boulangerie Dubois")
    names = ("Hélène Lefèvre", "Marc Dubois")
    assert listed(admin_client, "solicitation", "societe generale", names) == {"Hélène Lefèvre"}
    assert listed(admin_client, "solicitation", "DUBOIS", names) == {"Marc Dubois"}


# ---------------------------------------------------------------- the index


def _plan(db, model, query: str) -> str:
    statement = select(model.id).where(search_condition(model, query))
    sql = statement.compile(dialect=db.engine.dialect, compile_kwargs={"literal_binds": True})
    db.session.execute(text("SET LOCAL enable_seqscan = off"))
    plan = "\n".join(row[0] for row in db.session.execute(text(f"EXPLAIN {sql}")))
    db.session.rollback()
    return plan


@pytest.mark.parametrize(
    ("model", "index"), [("Need", "ix_needs_fulltext"), ("Solicitation", "ix_solicitations_fulltext")]
)
@pytest.mark.parametrize("query", ["societe generale", "552120222", "h.lefevre@sg-equipements.fr"])
def test_on_postgresql_the_search_can_use_the_gin_index(db, firms, model, index, query):
    if db.engine.dialect.name != "postgresql":
        pytest.skip("the GIN index exists on PostgreSQL only")
    plan = _plan(db, {"Need": Need, "Solicitation": Solicitation}[model], query)
    assert index in plan, plan
