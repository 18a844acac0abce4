"""The back office's model views: access, lists, forms, exports, actions, zone editor, query counts."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select

from app.models import (
    Antenne,
    AuditEvent,
    Expert,
    ExpertSubject,
    Institution,
    InstitutionSubject,
    Subject,
    Theme,
    User,
    Zone,
)
from app.services.transactions import transaction
from tests.factories import ExpertFactory, InstitutionFactory, offer, subject, zone
from tests.helpers import body, filter_arg, post_action, post_form

VIEWS = ["institution", "antenne", "expert", "institution_subject", "theme", "subject", "user", "journal"]


def audit_for(db, obj) -> list[AuditEvent]:
    return list(
        db.session.scalars(
            select(AuditEvent).where(AuditEvent.object_type == type(obj).__name__, AuditEvent.object_id == obj.id)
        )
    )


# ---------------------------------------------------------------- access


@pytest.mark.parametrize("endpoint", VIEWS)
def test_anonymous_visitors_are_sent_to_the_login_page(client, endpoint):
    response = client.get(f"/admin/{endpoint}/")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/connexion")


def test_anonymous_visitors_cannot_use_the_territory_autocomplete(client):
    response = client.get("/admin/antenne/territoires?q=rhone")
    assert response.status_code == 302
    assert response.headers["Location"].startswith("/connexion")


# Referents read and maintain their own part of the address book (tests/test_permissions.py);
# accounts and the journal stay staff's.
@pytest.mark.parametrize("endpoint", ["user", "journal"])
def test_referents_are_refused(referent_client, endpoint):
    client = referent_client
    assert client.get(f"/admin/{endpoint}/").status_code == 403
    assert client.get(f"/admin/{endpoint}/new/").status_code in (403, 302)


def test_a_post_without_csrf_token_is_refused(admin_client, db):
    response = admin_client.post("/admin/institution/new/", data={"name": "Sans jeton"})
    assert response.status_code == 400
    assert db.session.scalar(select(Institution).where(Institution.name == "Sans jeton")) is None


# ---------------------------------------------------------------- lists and exports


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [
        ("institution", ["CCI Lyon Métropole", "cci-lyon-metropole"]),
        ("antenne", ["CCI Lyon — Centre", "Département 69"]),
        ("expert", ["Camille Martin", "camille@cci.example", "CCI Lyon — Centre", "Recruter"]),
        ("institution_subject", ["CCI Lyon Métropole", "Recruter"]),
        ("theme", ["Ressources humaines"]),
        ("subject", ["recrutement"]),
        ("user", ["support@place.example", "Équipe support"]),
        ("journal", ["Institution", "création"]),
    ],
)
def test_lists_show_rows_in_french(admin_client, book, endpoint, expected):
    response = admin_client.get(f"/admin/{endpoint}/")
    assert response.status_code == 200
    page = body(response)
    for text in expected:
        assert text in page
    assert 'name="search"' in page or endpoint == "journal"


def test_list_search_and_filters(admin_client, book, db):
    ExpertFactory(full_name="Dominique Autre")
    page = body(admin_client.get("/admin/expert/?search=camille"))
    assert "Camille Martin" in page and "Dominique Autre" not in page
    # Filters are listed by their French names; the institution filter narrows the list.
    page = body(admin_client.get("/admin/expert/"))
    assert "Dominique Autre" in page  # listed until a search or a filter leaves it out
    for label in ("Institution", "Sujet", "Supprimé"):
        assert label in page
    institution_id = book["institution"].id
    page = body(admin_client.get(f"/admin/expert/?flt0_{filter_arg('expert', 'Institution')}={institution_id}"))
    assert "Camille Martin" in page and "Dominique Autre" not in page


@pytest.mark.parametrize(
    ("endpoint", "header", "row"),
    [
        ("institution", "Nom,Identifiant,Antennes", "CCI Lyon Métropole,cci-lyon-metropole,1"),
        (
            "antenne",
            "Nom,Institution,Zone,Nationale,Experts",
            "CCI Lyon — Centre,CCI Lyon Métropole,Département 69,non,1",
        ),
        ("expert", "Nom,Email,Téléphone,Fonction,Antenne,Institution,Sujets", "Camille Martin,camille@cci.example"),
        ("institution_subject", "Institution,Sujet,Description", "CCI Lyon Métropole"),
        ("theme", "Position,Identifiant,Libellé", "ressources-humaines"),
        ("subject", "Thème,Position,Identifiant,Libellé", "recrutement"),
        ("user", "Email,Nom,Rôle,Institution", "support@place.example,Équipe support,Équipe support"),
        ("journal", "Date,Par,Action,Type d'objet", "création"),
    ],
)
def test_csv_exports(admin_client, book, endpoint, header, row):
    response = admin_client.get(f"/admin/{endpoint}/export/csv/")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    text = body(response)
    assert text.splitlines()[0].startswith(header)
    assert row in text
    assert "argon2" not in text


def test_the_password_hash_is_never_shown(admin_client, admin_user):
    for url in ("/admin/user/", f"/admin/user/details/?id={admin_user.id}", f"/admin/user/edit/?id={admin_user.id}"):
        page = body(admin_client.get(url))
        assert "argon2" not in page
        assert "password_hash" not in page


# ---------------------------------------------------------------- details show the audit trail


@pytest.mark.parametrize("kind", ["institution", "antenne", "expert"])
def test_details_pages_show_the_audit_trail(admin_client, book, kind):
    record = book[kind]
    page = body(admin_client.get(f"/admin/{kind}/details/?id={record.id}"))
    assert "Historique des modifications" in page
    assert "création" in page


def test_antenne_details_name_the_territories(admin_client, book):
    page = body(admin_client.get(f"/admin/antenne/details/?id={book['antenne'].id}"))
    assert "Département : Rhône (69)" in page


@pytest.mark.parametrize("endpoint", ["theme", "subject", "user", "institution_subject"])
def test_other_details_pages_render(admin_client, db, book, admin_user, endpoint):
    record = {
        "theme": lambda: db.session.scalar(select(Theme).limit(1)),
        "subject": lambda: subject("recrutement"),
        "user": lambda: admin_user,
        "institution_subject": lambda: db.session.scalar(select(InstitutionSubject).limit(1)),
    }[endpoint]()
    page = body(admin_client.get(f"/admin/{endpoint}/details/?id={record.id}"))
    assert "Historique des modifications" in page


def test_journal_details_render(admin_client, book, db):
    event = db.session.scalar(select(AuditEvent).limit(1))
    assert admin_client.get(f"/admin/journal/details/?id={event.id}").status_code == 200
    assert admin_client.get("/admin/journal/new/").status_code == 302  # read-only


# ---------------------------------------------------------------- institutions


def test_create_an_institution_derives_its_slug(admin_client, db):
    response = post_form(admin_client, "/admin/institution/new/", {"name": "Chambre de Métiers de l'Ain", "slug": ""})
    assert response.status_code == 302, body(response)
    created = db.session.scalar(select(Institution).where(Institution.name == "Chambre de Métiers de l'Ain"))
    assert created.slug == "chambre-de-metiers-de-l-ain"
    assert audit_for(db, created)[0].actor == "support@place.example"


def test_a_view_that_fails_raises_under_test_instead_of_flashing(app, admin_client, db, book, monkeypatch):
    """Flask-Admin would turn this into « Failed to update record » and a 200: under test it raises."""
    from app.admin.addressbook import InstitutionView

    def broken(*_args, **_kwargs):
        raise RuntimeError("défaut de la vue")

    monkeypatch.setattr(InstitutionView, "on_model_change", broken)
    url = f"/admin/institution/edit/?id={book['institution'].id}"
    with pytest.raises(RuntimeError, match="défaut de la vue"):
        post_form(admin_client, url, {"name": "CCI Lyon", "slug": "cci-lyon"})


def test_edit_an_institution(admin_client, db, book):
    institution = book["institution"]
    url = f"/admin/institution/edit/?id={institution.id}"
    response = post_form(admin_client, url, {"name": "CCI Lyon", "slug": "cci-lyon"})
    assert response.status_code == 302, body(response)
    db.session.refresh(institution)
    assert (institution.name, institution.slug) == ("CCI Lyon", "cci-lyon")
    page = body(admin_client.get(f"/admin/institution/details/?id={institution.id}"))
    assert "modification" in page


def test_institution_delete_and_restore_actions(admin_client, db, book):
    institution = book["institution"]
    response = post_action(admin_client, "institution", "supprimer", [institution.id])
    assert response.status_code == 302
    db.session.refresh(institution)
    assert institution.deleted_at is not None
    page = body(admin_client.get("/admin/institution/?flt0_0=oui"))
    assert "CCI Lyon Métropole" in page
    post_action(admin_client, "institution", "restaurer", [institution.id])
    db.session.refresh(institution)
    assert institution.deleted_at is None


# ---------------------------------------------------------------- antennes and the zone editor


def test_create_an_antenne_with_a_zone(admin_client, db, book):
    response = post_form(
        admin_client,
        "/admin/antenne/new/",
        {"institution": str(book["institution"].id), "name": "CCI Lyon — Est", "zone": "departement:69 region:11"},
    )
    assert response.status_code == 302, body(response)
    antenne = db.session.scalar(select(Antenne).where(Antenne.name == "CCI Lyon — Est"))
    assert sorted(z.reference for z in antenne.zones) == ["departement:69", "region:11"]
    assert db.session.scalar(select(func.count(Zone.id)).where(Zone.antenne_id == antenne.id)) == 2


def test_an_unknown_territory_is_a_french_form_error_and_stores_nothing(admin_client, db, book):
    response = post_form(
        admin_client,
        "/admin/antenne/new/",
        {"institution": str(book["institution"].id), "name": "Antenne fantôme", "zone": "departement:69 commune:99999"},
    )
    assert response.status_code == 200
    page = body(response)
    assert "commune:99999" in page
    assert "inconnu" in page
    assert db.session.scalar(select(Antenne).where(Antenne.name == "Antenne fantôme")) is None
    assert db.session.scalar(select(func.count(Zone.id))) == 2  # the fixture's own zones only


def test_edit_an_antenne_zone(admin_client, db, book):
    antenne = book["antenne"]
    url = f"/admin/antenne/edit/?id={antenne.id}"
    form = body(admin_client.get(url))
    assert 'value="departement:69"' in form  # prefilled, editable without JavaScript
    assert "Département : Rhône (69)" in form  # labels for the autocomplete
    assert "admin/zone_editor.js" in form
    response = post_form(
        admin_client, url, {"institution": str(antenne.institution_id), "name": antenne.name, "zone": "national"}
    )
    assert response.status_code == 302, body(response)
    db.session.refresh(antenne)
    assert antenne.national is True
    assert antenne.zones == []


def test_a_malformed_zone_is_refused_on_edit(admin_client, db, book):
    antenne = book["antenne"]
    url = f"/admin/antenne/edit/?id={antenne.id}"
    response = post_form(
        admin_client, url, {"institution": str(antenne.institution_id), "name": "Nouveau nom", "zone": "pays:FR"}
    )
    assert response.status_code == 200
    assert "Territoire mal formé" in body(response)
    db.session.refresh(antenne)
    assert antenne.name == "CCI Lyon — Centre"
    assert [z.reference for z in antenne.zones] == ["departement:69"]


def test_territory_autocomplete(admin_client):
    response = admin_client.get("/admin/antenne/territoires?q=rhône")
    assert response.status_code == 200
    results = response.json
    assert {"id": "departement:69", "text": "Département : Rhône (69)"} in results
    assert admin_client.get("/admin/antenne/territoires?q=nati").json[0]["id"] == "national"
    assert admin_client.get("/admin/expert/territoires?q=r").json == []


def test_antenne_delete_and_restore_actions(admin_client, db, book):
    antenne = book["antenne"]
    post_action(admin_client, "antenne", "supprimer", [antenne.id])
    db.session.refresh(antenne)
    assert antenne.deleted_at is not None
    post_action(admin_client, "antenne", "restaurer", [antenne.id])
    db.session.refresh(antenne)
    assert antenne.deleted_at is None


def test_restoring_an_antenne_of_a_deleted_institution_is_explained(admin_client, db, book):
    from app.services.addressbook.addressbook import delete_antenne, delete_institution

    delete_antenne(book["antenne"])
    delete_institution(book["institution"])
    response = post_action(admin_client, "antenne", "restaurer", [book["antenne"].id])
    page = body(admin_client.get(response.headers["Location"]))
    assert "restaurez-la avant son antenne" in page


# ---------------------------------------------------------------- experts


def test_create_an_expert_with_subjects_and_own_zone(admin_client, db, book):
    wanted = [subject("recrutement"), subject("formation")]
    response = post_form(
        admin_client,
        "/admin/expert/new/",
        {
            "antenne": str(book["antenne"].id),
            "full_name": "Alix Durand",
            "email": "Alix.Durand@CCI.example ",
            "phone": "04 00 00 00 00",
            "job_title": "Conseillère RH",
            "offered_subjects": [str(s.id) for s in wanted],
            "zone": "commune:69123",
        },
    )
    assert response.status_code == 302, body(response)
    expert = db.session.scalar(select(Expert).where(Expert.full_name == "Alix Durand"))
    assert expert.email == "alix.durand@cci.example"
    assert {link.institution_subject.subject.slug for link in expert.subjects} == {s.slug for s in wanted}
    assert all(link.institution_subject.institution_id == book["institution"].id for link in expert.subjects)
    assert [z.reference for z in expert.zones] == ["commune:69123"]


def test_edit_an_expert(admin_client, db, book):
    expert = book["expert"]
    url = f"/admin/expert/edit/?id={expert.id}"
    form = body(admin_client.get(url))
    recrutement = subject("recrutement")
    assert re.search(rf'<option selected value="{recrutement.id}"|value="{recrutement.id}" selected', form)
    response = post_form(
        admin_client,
        url,
        {
            "antenne": str(expert.antenne_id),
            "full_name": "Camille Martin-Dupont",
            "email": "camille@cci.example",
            "offered_subjects": [],
            "zone": "",
        },
    )
    assert response.status_code == 302, body(response)
    db.session.refresh(expert)
    assert expert.full_name == "Camille Martin-Dupont"
    assert expert.subjects == []
    assert not expert.has_own_zone


def test_antenne_lookup_for_the_expert_form(admin_client, book):
    response = admin_client.get("/admin/expert/ajax/lookup/?name=antenne&query=Centre")
    assert response.status_code == 200
    assert response.json == [[book["antenne"].id, "CCI Lyon — Centre — CCI Lyon Métropole"]]


def test_expert_soft_delete_blanks_personal_data(admin_client, db, book):
    expert = book["expert"]
    response = post_action(admin_client, "expert", "supprimer", [expert.id])
    assert response.status_code == 302
    db.session.refresh(expert)
    assert expert.deleted_at is not None
    assert expert.email is None
    assert db.session.scalar(select(func.count(ExpertSubject.id))) == 2  # history kept (both experts')


# ---------------------------------------------------------------- offers and catalog


def test_create_and_edit_an_institution_offer(admin_client, db, book):
    formation = db.session.scalar(select(Subject).where(Subject.slug != "recrutement").limit(1))
    response = post_form(
        admin_client,
        "/admin/institution_subject/new/",
        {"institution": str(book["institution"].id), "subject": str(formation.id), "description": "Ateliers"},
    )
    assert response.status_code == 302, body(response)
    created = db.session.scalar(select(InstitutionSubject).where(InstitutionSubject.subject_id == formation.id))
    assert created.description == "Ateliers"
    url = f"/admin/institution_subject/edit/?id={created.id}"
    response = post_form(
        admin_client,
        url,
        {"institution": str(book["institution"].id), "subject": str(formation.id), "description": "Ateliers RH"},
    )
    assert response.status_code == 302, body(response)
    db.session.refresh(created)
    assert created.description == "Ateliers RH"


def test_create_and_edit_a_theme_and_a_subject(admin_client, db):
    response = post_form(
        admin_client, "/admin/theme/new/", {"slug": "essai", "label": "Thème d'essai", "position": "99"}
    )
    assert response.status_code == 302, body(response)
    theme = db.session.scalar(select(Theme).where(Theme.slug == "essai"))
    response = post_form(
        admin_client, f"/admin/theme/edit/?id={theme.id}", {"slug": "essai", "label": "Thème modifié", "position": "98"}
    )
    assert response.status_code == 302, body(response)
    response = post_form(
        admin_client,
        "/admin/subject/new/",
        {"theme": str(theme.id), "slug": "sujet-essai", "label": "Sujet d'essai", "position": "1"},
    )
    assert response.status_code == 302, body(response)
    created = db.session.scalar(select(Subject).where(Subject.slug == "sujet-essai"))
    response = post_form(
        admin_client,
        f"/admin/subject/edit/?id={created.id}",
        {"theme": str(theme.id), "slug": "sujet-essai", "label": "Sujet renommé", "position": "2"},
    )
    assert response.status_code == 302, body(response)
    db.session.refresh(created)
    db.session.refresh(theme)
    assert (theme.label, created.label, created.position) == ("Thème modifié", "Sujet renommé", 2)
    bad = post_form(admin_client, "/admin/theme/new/", {"slug": "Pas Un Slug", "label": "x", "position": "1"})
    assert bad.status_code == 200
    assert "Minuscules, chiffres et tirets" in body(bad)


def test_archive_and_unarchive_subjects(admin_client, db):
    recrutement = subject("recrutement")
    post_action(admin_client, "subject", "archiver", [recrutement.id])
    db.session.refresh(recrutement)
    assert recrutement.is_archived
    post_action(admin_client, "subject", "desarchiver", [recrutement.id])
    db.session.refresh(recrutement)
    assert not recrutement.is_archived


# ---------------------------------------------------------------- users


def test_create_a_user_hashes_the_password(admin_client, db, book):
    response = post_form(
        admin_client,
        "/admin/user/new/",
        {
            "email": "Referente@CCI.example",
            "full_name": "Référente CCI",
            "role": "referent",
            "institution": str(book["institution"].id),
            "password": "un-mot-de-passe-solide",
        },
    )
    assert response.status_code == 302, body(response)
    user = db.session.scalar(select(User).where(User.email == "referente@cci.example"))
    assert user.role == "referent"
    assert user.institution_id == book["institution"].id
    assert user.password_hash.startswith("$argon2")


def test_create_user_refusals_are_french_messages(admin_client, db):
    response = post_form(
        admin_client, "/admin/user/new/", {"email": "ref@x.example", "role": "referent", "password": ""}
    )
    assert response.status_code == 200
    assert "Un référent doit être rattaché" in body(response)
    response = post_form(
        admin_client, "/admin/user/new/", {"email": "court@x.example", "role": "admin", "password": "court"}
    )
    assert "au moins 12 caractères" in body(response)
    assert db.session.scalar(select(func.count(User.id))) == 1


def test_edit_a_user_with_an_optional_new_password(admin_client, db, admin_user):
    from app.services.accounts.users import create_user

    other = create_user("autre@place.example", role="admin", password="ancien-mot-de-passe")
    old_hash = other.password_hash
    url = f"/admin/user/edit/?id={other.id}"
    form = body(admin_client.get(url))
    assert 'name="new_password"' in form and 'name="password"' not in form
    response = post_form(
        admin_client, url, {"email": "autre@place.example", "full_name": "Autre", "role": "admin", "new_password": ""}
    )
    assert response.status_code == 302, body(response)
    db.session.refresh(other)
    assert (other.full_name, other.password_hash) == ("Autre", old_hash)
    response = post_form(
        admin_client,
        url,
        {"email": "autre@place.example", "full_name": "Autre", "role": "admin", "new_password": "nouveau-mot-de-passe"},
    )
    assert response.status_code == 302
    db.session.refresh(other)
    assert other.password_hash != old_hash


def test_delete_user_action(admin_client, db):
    from app.services.accounts.users import create_user

    other = create_user("partant@place.example", role="admin", password="motdepasse-tres-long")
    post_action(admin_client, "user", "supprimer", [other.id])
    db.session.refresh(other)
    assert other.deleted_at is not None and other.email is None


def test_journal_filters(admin_client, book):
    page = body(admin_client.get("/admin/journal/?search=Expert"))
    assert "Expert" in page
    assert "Type d&#39;objet" in page or "Type d'objet" in page


# ---------------------------------------------------------------- query-count guard (no N+1)


def _make_experts(count: int) -> None:
    for _ in range(count):
        expert = ExpertFactory()
        offer(expert, "recrutement")
        zone(expert.antenne, "departement:69")
        zone(expert, "commune:69123")


def _queries_for(client, count_queries, url: str) -> int:
    with count_queries() as counter:
        response = client.get(url)
        assert response.status_code == 200
    return counter.count


@pytest.mark.parametrize("endpoint", ["expert", "antenne", "institution", "institution_subject", "user", "subject"])
def test_list_pages_do_not_query_per_row(admin_client, db, count_queries, endpoint):
    _make_experts(5)
    few = _queries_for(admin_client, count_queries, f"/admin/{endpoint}/")
    _make_experts(25)
    many = _queries_for(admin_client, count_queries, f"/admin/{endpoint}/")
    assert few == many


@pytest.mark.parametrize("endpoint", ["expert", "antenne", "institution"])
def test_csv_exports_do_not_query_per_row(admin_client, db, count_queries, endpoint):
    _make_experts(5)
    few = _queries_for(admin_client, count_queries, f"/admin/{endpoint}/export/csv/")
    _make_experts(25)
    many = _queries_for(admin_client, count_queries, f"/admin/{endpoint}/export/csv/")
    assert few == many


def test_a_user_cannot_be_made_a_referent_without_institution(admin_client, db):
    from app.services.accounts.users import create_user

    with transaction():
        other = create_user("futur-referent@place.example", role="admin", password="ancien-mot-de-passe")
    url = f"/admin/user/edit/?id={other.id}"
    response = post_form(
        admin_client, url, {"email": "futur-referent@place.example", "full_name": "X", "role": "referent"}
    )
    assert "rattaché à une institution" in body(response) or "rattaché à une institution" in body(admin_client.get(url))
    db.session.expire_all()
    assert db.session.get(User, other.id).role == "admin"


def test_every_list_filter_accepts_a_value_without_error(app, admin_client, book):
    """Each filter of each view, given a plausible value, answers a page (no type mismatch on PostgreSQL)."""
    from app.admin.base import SecureModelView

    views = [v for v in app.extensions["pde_admin"]._views if isinstance(v, SecureModelView)]
    checked = 0
    for view in views:
        with app.test_request_context():
            filters = view._filters or []
        for index, _flt in enumerate(filters):
            for value in ("1", "oui"):
                response = admin_client.get(f"{view.url}/?flt0_{index}={value}")
                assert response.status_code == 200, (view.url, index, value)
                checked += 1
    assert checked > 20


def test_history_times_are_paris_times(admin_client, db):
    from datetime import UTC, datetime

    from app.models import AuditEvent

    institution = InstitutionFactory(name="Horodatée", slug="horodatee")
    event = db.session.scalar(
        select(AuditEvent).where(AuditEvent.object_type == "Institution", AuditEvent.object_id == institution.id)
    )
    event.created_at = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
    db.session.commit()
    page = body(admin_client.get(f"/admin/institution/details/?id={institution.id}"))
    assert "15/01/2026 13:00" in page


def test_naive_datetimes_are_read_as_utc():
    """SQLite returns naive datetimes: they were written in UTC and must still show Paris time."""
    from datetime import datetime

    from app.admin.formatters import paris_time

    assert paris_time(datetime(2026, 7, 14, 10, 0)) == "14/07/2026 12:00"
