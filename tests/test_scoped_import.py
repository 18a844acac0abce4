"""A partner referent imports their own experts only: a row of another institution (or, for an
antenne referent, of another antenne) is an error with its line number, and the file is then
not imported at all. Through the service, and through the back-office upload with a real login."""

from __future__ import annotations

import io
import re

import pytest
from sqlalchemy import func, select

from app.models import AddressbookUpload, Antenne, Expert, Institution, InstitutionSubject, User
from app.policy import referent_scope
from app.services.accounts.users import create_user
from app.services.addressbook.importer import import_addressbook
from app.services.errors import ServiceError
from app.services.transactions import transaction
from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, offer, zone
from tests.helpers import csrf_token_from, login, text

HEADER = "institution,antenne,antenne_zone,expert,email,phone,job_title,subjects,expert_zone"
URL = "/admin/import/"
PASSWORD = "motdepasse-tres-long"


def csv(*rows: str) -> bytes:
    return ("\n".join([HEADER, *rows]) + "\n").encode()


def expert_count(db) -> int:
    db.session.expire_all()
    return db.session.scalar(select(func.count()).select_from(Expert).where(Expert.deleted_at.is_(None)))


@pytest.fixture
def bretagne(db):
    """« CMA Bretagne » (antennes « CMA Rennes » and « CMA Brest », offering tresorerie) and « CCI Normandie »."""
    cma = InstitutionFactory(name="CMA Bretagne", slug="cma-bretagne")
    rennes = AntenneFactory(institution=cma, name="CMA Rennes")
    zone(rennes, "departement:35")
    brest = AntenneFactory(institution=cma, name="CMA Brest")
    zone(brest, "departement:29")
    offer(ExpertFactory(antenne=rennes, full_name="Déjà Là", email="deja@cma.example"), "tresorerie")
    cci = InstitutionFactory(name="CCI Normandie", slug="cci-normandie")
    AntenneFactory(institution=cci, name="CCI Caen")
    return {"cma": cma, "rennes": rennes, "brest": brest, "cci": cci}


# ---------------------------------------------------------------- the service


def test_a_row_of_another_institution_is_an_error_with_its_line_and_nothing_is_imported(db, bretagne):
    before = expert_count(db)
    report = import_addressbook(
        csv(
            "CMA Bretagne,CMA Rennes,,Anne Rennes,anne@cma.example,,,tresorerie,",
            "CMA Bretagne,CMA Brest,,Bruno Brest,bruno@cma.example,,,tresorerie,",
            "CCI Normandie,CCI Caen,,Chloé Caen,chloe@cci.example,,,tresorerie,",
        ),
        scope=bretagne["cma"],
    )

    assert not report.ok
    assert [str(e) for e in report.errors] == [
        "ligne 4 : l'institution « CCI Normandie » n'est pas la vôtre : "
        "vous ne pouvez importer que les experts de « CMA Bretagne »"
    ]
    assert expert_count(db) == before


def test_an_unknown_institution_is_not_theirs_to_create(db, bretagne):
    report = import_addressbook(
        csv("Nouvelle Chambre,Antenne Unique,departement:22,Néo Phyte,neo@chambre.example,,,tresorerie,"),
        scope=bretagne["cma"],
    )
    assert [e.line for e in report.errors] == [2]
    assert "n'est pas la vôtre" in report.errors[0].message
    assert db.session.scalar(select(Institution).where(Institution.slug == "nouvelle-chambre")) is None


def test_own_rows_are_imported_including_new_antennes_and_offers(db, bretagne):
    report = import_addressbook(
        csv(
            "CMA Bretagne,CMA Rennes,,Anne Rennes,anne@cma.example,,,tresorerie;export,",
            # The institution spelled differently: the import's slug matching says it is the same.
            "cma bretagne,CMA Lorient,departement:56,Léa Lorient,lea@cma.example,,,tresorerie,",
        ),
        scope=bretagne["cma"],
    )

    assert report.ok, report.errors
    db.session.expire_all()
    anne = db.session.scalar(select(Expert).where(Expert.email == "anne@cma.example"))
    assert anne.antenne_id == bretagne["rennes"].id
    lorient = db.session.scalar(select(Antenne).where(Antenne.name == "CMA Lorient"))
    assert lorient.institution_id == bretagne["cma"].id
    assert db.session.scalar(select(func.count()).select_from(Institution)) == 2


def test_staff_import_is_not_limited(db, bretagne):
    report = import_addressbook(
        csv(
            "CMA Bretagne,CMA Rennes,,Anne Rennes,anne@cma.example,,,tresorerie,",
            "CCI Normandie,CCI Caen,,Chloé Caen,chloe@cci.example,,,tresorerie,",
        ),
        scope=None,
    )
    assert report.ok, report.errors
    assert report.experts.created == 2


def test_an_antenne_referent_is_limited_to_their_antenne(db, bretagne):
    before = expert_count(db)
    report = import_addressbook(
        csv(
            "CMA Bretagne,CMA Rennes,,Anne Rennes,anne@cma.example,,,tresorerie,",
            "CMA Bretagne,CMA Brest,,Bruno Brest,bruno@cma.example,,,tresorerie,",
            "CMA Bretagne,CMA Vannes,departement:56,Victor Vannes,victor@cma.example,,,tresorerie,",
            "CCI Normandie,CCI Caen,,Chloé Caen,chloe@cci.example,,,tresorerie,",
            # A subject the institution does not offer yet: only its institution referent may add it.
            "CMA Bretagne,CMA Rennes,,Rémi Rennes,remi@cma.example,,,export,",
        ),
        scope=bretagne["rennes"],
    )

    messages = {e.line: e.message for e in report.errors}
    assert sorted(messages) == [3, 4, 5, 6]
    assert messages[3] == (
        "l'antenne « CMA Brest » n'est pas la vôtre : vous ne pouvez importer que les experts de l'antenne « CMA Rennes »"
    )
    assert messages[4].startswith("l'antenne « CMA Vannes » n'existe pas et vous ne pouvez pas en créer")
    assert "l'institution « CCI Normandie » n'est pas la vôtre" in messages[5]
    assert "ne propose pas encore : export" in messages[6]
    assert expert_count(db) == before
    assert db.session.scalar(select(Antenne).where(Antenne.name == "CMA Vannes")) is None


def test_an_antenne_referent_imports_their_own_experts(db, bretagne):
    report = import_addressbook(
        csv(
            "CMA Bretagne,CMA Rennes,departement:35 departement:22,Anne Rennes,anne@cma.example,,,tresorerie,",
            "CMA Bretagne,CMA Rennes,,Déjà Là,deja@cma.example,02 99 00 00 00,,tresorerie,",
        ),
        scope=bretagne["rennes"],
    )
    assert report.ok, report.errors
    assert (report.experts.created, report.experts.updated) == (1, 1)
    db.session.expire_all()
    assert sorted(z.reference for z in db.session.get(Antenne, bretagne["rennes"].id).zones) == [
        "departement:22",
        "departement:35",
    ]


def test_referent_scope_of_each_kind_of_user(db, bretagne):
    staff = create_user("staff@place.example", role="admin", password=PASSWORD)
    institution_referent = create_user("ref@cma.example", role="referent", institution_slug="cma-bretagne")
    antenne_referent = create_user("ref-rennes@cma.example", role="referent", antenne_id=bretagne["rennes"].id)

    assert referent_scope(staff) is None
    assert referent_scope(institution_referent) == bretagne["cma"]
    assert referent_scope(antenne_referent) == bretagne["rennes"]


def test_a_referent_whose_scope_is_gone_has_none_to_import_into(db, bretagne):
    """The scope is the policy's, liveness included: a referent of a deleted antenne or
    institution imports nothing, rather than into what is left."""
    from app.services.addressbook.addressbook import delete_antenne, delete_institution

    with transaction():
        antenne_referent = create_user("ref-brest@cma.example", role="referent", antenne_id=bretagne["brest"].id)
        institution_referent = create_user("ref2@cma.example", role="referent", institution_slug="cma-bretagne")
    with transaction():
        delete_antenne(bretagne["brest"])
    with pytest.raises(ServiceError, match="aucune institution active"):
        referent_scope(antenne_referent)
    assert referent_scope(institution_referent) == bretagne["cma"]
    with transaction():
        delete_institution(bretagne["cma"])
    with pytest.raises(ServiceError, match="aucune institution active"):
        referent_scope(institution_referent)


# ---------------------------------------------------------------- through the back office


def upload(client, content: bytes):
    token = csrf_token_from(text(client.get(URL)))
    return client.post(
        URL,
        data={"csrf_token": token, "file": (io.BytesIO(content), "annuaire.csv")},
        content_type="multipart/form-data",
    )


def confirm(client, html: str):
    token = re.search(r'name="token" type="hidden" value="([0-9a-f]{32})"', html).group(1)
    return client.post(URL + "confirmer", data={"csrf_token": csrf_token_from(html), "token": token})


def logged_in_referent(client, email: str, **scope):
    create_user(email, role="referent", password=PASSWORD, **scope)
    assert login(client, email).status_code == 302
    return client


def test_referent_sees_the_upload_page_limited_to_their_institution(client, db, bretagne):
    logged_in_referent(client, "ref@cma.example", institution_slug="cma-bretagne")
    page = client.get(URL)
    assert page.status_code == 200
    assert "Vous pouvez importer les experts de « CMA Bretagne » uniquement" in text(page)


def test_referent_upload_with_a_foreign_row_shows_the_error_and_offers_no_confirmation(client, db, bretagne):
    logged_in_referent(client, "ref@cma.example", institution_slug="cma-bretagne")
    preview = upload(
        client,
        csv(
            "CMA Bretagne,CMA Rennes,,Anne Rennes,anne@cma.example,,,tresorerie,",
            "CCI Normandie,CCI Caen,,Chloé Caen,chloe@cci.example,,,tresorerie,",
        ),
    )
    page = text(preview)
    assert preview.status_code == 200
    assert re.search(
        r"<td>3</td><td>l'institution « CCI Normandie » n'est pas la vôtre : vous ne pouvez importer que "
        r"les experts de « CMA Bretagne »</td>",
        page,
    )
    assert "Confirmer l'import" not in page
    assert db.session.scalar(select(func.count()).select_from(AddressbookUpload)) == 0
    assert expert_count(db) == 1


def test_referent_previews_then_confirms_their_own_file(client, db, bretagne):
    logged_in_referent(client, "ref@cma.example", institution_slug="cma-bretagne")
    preview = upload(client, csv("CMA Bretagne,CMA Brest,,Bruno Brest,bruno@cma.example,,,tresorerie,"))
    assert "Confirmer l'import" in text(preview)
    assert expert_count(db) == 1

    done = confirm(client, text(preview))
    assert done.status_code == 302
    assert "Annuaire importé" in text(client.get(done.headers["Location"]))
    db.session.expire_all()
    bruno = db.session.scalar(select(Expert).where(Expert.email == "bruno@cma.example"))
    assert bruno.antenne_id == bretagne["brest"].id


def test_the_staged_upload_stays_bound_to_its_uploader(app, db, bretagne):
    # Each client in its own application context: the test's context would otherwise keep the
    # first login as the current user for both.
    first, second = app.test_client(), app.test_client()
    with app.app_context():
        logged_in_referent(first, "ref@cma.example", institution_slug="cma-bretagne")
        preview = upload(first, csv("CMA Bretagne,CMA Brest,,Bruno Brest,bruno@cma.example,,,tresorerie,"))
    token = re.search(r'name="token" type="hidden" value="([0-9a-f]{32})"', text(preview)).group(1)

    with app.app_context():
        logged_in_referent(second, "ref2@cma.example", institution_slug="cma-bretagne")
        other_page = text(second.get(URL))
        stolen = second.post(URL + "confirmer", data={"csrf_token": csrf_token_from(other_page), "token": token})
        assert stolen.status_code == 302
        assert "Cet aperçu n'est plus valable" in text(second.get(stolen.headers["Location"]))
    assert expert_count(db) == 1
    with app.app_context():  # the uploader can still confirm their own preview
        assert confirm(first, text(preview)).status_code == 302
    assert expert_count(db) == 2


def test_the_scope_is_checked_again_at_confirmation(client, db, bretagne):
    """Staff narrowed the referent to one antenne between the preview and the confirmation."""
    logged_in_referent(client, "ref@cma.example", institution_slug="cma-bretagne")
    preview = upload(client, csv("CMA Bretagne,CMA Brest,,Bruno Brest,bruno@cma.example,,,tresorerie,"))
    assert "Confirmer l'import" in text(preview)
    user = db.session.scalar(select(User).where(User.email == "ref@cma.example"))
    user.antenne_id = bretagne["rennes"].id
    db.session.commit()

    done = confirm(client, text(preview))
    assert done.status_code == 422
    assert "l'antenne « CMA Brest » n'est pas la vôtre" in text(done)
    assert expert_count(db) == 1


def test_antenne_referent_upload_is_limited_to_their_antenne(client, db, bretagne):
    logged_in_referent(client, "ref-rennes@cma.example", antenne_id=bretagne["rennes"].id)
    page = text(client.get(URL))
    assert "l'antenne « CMA Rennes » (CMA Bretagne) uniquement" in page
    assert "ou d'une autre antenne" in page

    preview = upload(
        client,
        csv(
            "CMA Bretagne,CMA Rennes,,Anne Rennes,anne@cma.example,,,tresorerie,",
            "CMA Bretagne,CMA Brest,,Bruno Brest,bruno@cma.example,,,tresorerie,",
        ),
    )
    assert re.search(r"<td>3</td><td>l'antenne « CMA Brest » n'est pas la vôtre", text(preview))
    assert "Confirmer l'import" not in text(preview)

    own = upload(client, csv("CMA Bretagne,CMA Rennes,,Anne Rennes,anne@cma.example,,,tresorerie,"))
    assert confirm(client, text(own)).status_code == 302
    db.session.expire_all()
    assert (
        db.session.scalar(select(Expert).where(Expert.email == "anne@cma.example")).antenne_id == bretagne["rennes"].id
    )


def test_staff_upload_still_imports_every_institution(admin_client, db, bretagne):
    preview = upload(
        admin_client,
        csv(
            "CMA Bretagne,CMA Rennes,,Anne Rennes,anne@cma.example,,,tresorerie,",
            "CCI Normandie,CCI Caen,,Chloé Caen,chloe@cci.example,,,tresorerie,",
        ),
    )
    page = text(preview)
    assert "Vous pouvez importer les experts de" not in page
    assert confirm(admin_client, page).status_code == 302
    assert expert_count(db) == 3
    assert db.session.scalar(select(func.count()).select_from(InstitutionSubject)) == 2
