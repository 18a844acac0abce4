"""Territories: the load from the npm package, its idempotence, and the geo service answers."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.models import Commune, CommunePostalCode, Departement, Epci, Region
from app.services.errors import ServiceError
from app.services.reference import geo
from app.services.transactions import transaction


def _count(db, model) -> int:
    return db.session.scalar(select(func.count()).select_from(model))


def test_load_counts_match_the_package(db):
    # The session fixture loaded version 6.0.0 of @etalab/decoupage-administratif.
    assert _count(db, Commune) == 34969
    assert _count(db, Epci) == 1255
    assert _count(db, Departement) == 101 + 8  # 101 départements plus the overseas collectivities listed
    assert _count(db, Region) == 18 + 8
    assert _count(db, CommunePostalCode) == 35493  # (postal code, commune) pairs of current communes


def test_load_is_idempotent(app, db):
    before = {m: _count(db, m) for m in (Region, Departement, Epci, Commune, CommunePostalCode)}
    with transaction():
        report = geo.load_territories(app.config["GEO_DATA_DIR"])
    assert all(value == 0 for value in report.created.values()), report.created
    assert all(value == 0 for value in report.updated.values()), report.updated
    assert {m: _count(db, m) for m in before} == before


def test_load_repairs_a_changed_row(app, db):
    lyon = db.session.get(Commune, "69123")
    lyon.name = "Lugdunum"
    db.session.commit()
    with transaction():
        report = geo.load_territories(app.config["GEO_DATA_DIR"])
    assert report.updated["communes"] == 1
    assert db.session.get(Commune, "69123").name == "Lyon"


def test_missing_data_dir_is_a_french_error(tmp_path, db):
    with pytest.raises(ServiceError, match="make setup"):
        geo.load_territories(tmp_path)


def test_commune_codes(db):
    codes = geo.commune_codes("69123")
    assert codes == geo.TerritoryCodes(commune="69123", epci="200046977", departement="69", region="84")
    assert geo.commune_codes("00000") is None


def test_communes_of_a_postal_code(db):
    assert [c.code for c in geo.communes_for_postal_code("75011")] == ["75056"]
    several = geo.communes_for_postal_code("01400")
    assert len(several) > 1
    assert "01001" in {c.code for c in several}
    assert geo.communes_for_postal_code("99999") == []


@pytest.mark.parametrize(
    ("reference", "valid"),
    [
        ("national", True),
        ("region:84", True),
        ("departement:69", True),
        ("departement:2A", True),
        ("epci:200046977", True),
        ("commune:69123", True),
        ("region:99", False),
        ("commune:00000", False),
        ("epci:123", False),
        ("canton:12", False),
        ("69123", False),
        ("region:84 departement:69", False),
    ],
)
def test_territory_reference_validity(db, reference, valid):
    assert geo.is_valid_reference(reference) is valid


def test_parse_zone_errors_are_french():
    with pytest.raises(ServiceError, match="seul"):
        geo.parse_zone("national region:84")
    with pytest.raises(ServiceError, match="mal formé"):
        geo.parse_zone("pays:FR")
    assert geo.parse_zone("").is_empty
    assert geo.parse_zone("region:84 region:84").references == [("region", "84")]


def test_search_territories_puts_larger_territories_first(db):
    results = geo.search_territories("rhône")
    ids = [r["id"] for r in results]
    assert "departement:69" in ids
    assert ids.index("departement:69") < min(i for i, r in enumerate(ids) if r.startswith("commune:"))
    by_postal = geo.search_territories("69001", kinds=["commune"])
    assert {"id": "commune:69123", "text": "Commune : Lyon (69123)"} in by_postal
    assert geo.search_territories("a") == []
