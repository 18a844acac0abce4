"""The address book import: errors with line numbers, all or nothing,
idempotence, dry run, subjects and zones; and the soft-delete and zone verbs."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.models import Antenne, AuditEvent, Expert, ExpertSubject, Institution, InstitutionSubject, Zone
from app.services.addressbook.addressbook import (
    delete_antenne,
    delete_expert,
    delete_institution,
    restore_antenne,
    restore_institution,
    set_zone,
    slugify,
)
from app.services.addressbook.import_file import COLUMNS
from app.services.addressbook.importer import import_addressbook
from app.services.errors import ServiceError
from app.services.transactions import transaction
from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, offer, subject, zone

DATA = Path(__file__).parent / "data"
HEADER = ",".join(COLUMNS)


def csv_text(*rows: str) -> str:
    return "\n".join([HEADER, *rows]) + "\n"


def row(
    institution="CCI Auvergne-Rhône-Alpes",
    antenne="CCI Lyon Métropole",
    antenne_zone="",
    expert="Alice Martin",
    email="alice@cci.example",
    phone="",
    job_title="",
    subjects="export",
    expert_zone="",
) -> str:
    return ",".join([institution, antenne, antenne_zone, expert, email, phone, job_title, subjects, expert_zone])


def count(model) -> int:
    from app.extensions import db

    return db.session.scalar(select(func.count()).select_from(model))


def messages(report) -> list[str]:
    return [str(e) for e in report.errors]


# ---------------------------------------------------------------- a clean file


def test_valid_file_creates_the_address_book(db):
    report = import_addressbook((DATA / "addressbook_valid.csv").read_bytes())

    assert report.errors == []
    assert (report.institutions.created, report.antennes.created, report.experts.created) == (3, 3, 4)
    cci = db.session.scalar(select(Institution).where(Institution.name == "CCI Auvergne-Rhône-Alpes"))
    assert cci.slug == "cci-auvergne-rhone-alpes"
    assert sorted(o.subject.slug for o in cci.subject_offers) == ["export", "recrutement", "tresorerie"]
    alice = db.session.scalar(select(Expert).where(Expert.full_name == "Alice Martin"))
    assert alice.email == "alice.martin@cci-lyon.example"  # normalised to lowercase
    assert alice.phone == "04 72 00 00 01"
    assert sorted(link.institution_subject.subject.slug for link in alice.subjects) == ["export", "recrutement"]
    assert all(link.institution_subject.institution_id == cci.id for link in alice.subjects)


def test_offer_count_is_per_institution(db):
    report = import_addressbook((DATA / "addressbook_valid.csv").read_bytes())
    # CCI AURA: export, recrutement, tresorerie; CCI Paris: export, ceder-entreprise; Bpifrance: tresorerie.
    assert report.offers_created == 6
    assert count(InstitutionSubject) == 6


def test_zones_are_stored_on_antennes_and_as_expert_overrides(db):
    import_addressbook((DATA / "addressbook_valid.csv").read_bytes())

    lyon = db.session.scalar(select(Antenne).where(Antenne.name == "CCI Lyon Métropole"))
    assert not lyon.national
    assert [z.reference for z in lyon.zones] == ["departement:69"]  # given once, left empty on the next row
    national = db.session.scalar(select(Antenne).where(Antenne.name == "Bpifrance Direction nationale"))
    assert national.national and national.zones == []

    alice = db.session.scalar(select(Expert).where(Expert.full_name == "Alice Martin"))
    assert not alice.has_own_zone
    bruno = db.session.scalar(select(Expert).where(Expert.full_name == "Bruno Petit"))
    assert [z.reference for z in bruno.zones] == ["commune:69123"] and not bruno.national
    carole = db.session.scalar(select(Expert).where(Expert.full_name == "Carole Dubois"))
    assert sorted(z.reference for z in carole.zones) == ["departement:75", "epci:200046977"]
    assert all(z.antenne_id is None for z in carole.zones)


def test_bom_is_accepted(db):
    report = import_addressbook((DATA / "addressbook_bom.csv").read_bytes())
    assert report.errors == []
    assert report.experts.created == 1


def test_str_input_and_crlf_line_endings(db):
    report = import_addressbook(csv_text(row(), row(email="bob@cci.example", expert="Bob")).replace("\n", "\r\n"))
    assert report.errors == []
    assert report.experts.created == 2


# ---------------------------------------------------------------- idempotence and dry run


def test_second_import_changes_nothing_and_writes_no_audit_event(db):
    raw = (DATA / "addressbook_valid.csv").read_bytes()
    import_addressbook(raw)
    events = count(AuditEvent)
    assert events > 0  # the first import is audited

    again = import_addressbook(raw)

    assert again.errors == []
    for counts in (again.institutions, again.antennes, again.experts):
        assert (counts.created, counts.updated) == (0, 0)
    assert (again.institutions.unchanged, again.antennes.unchanged, again.experts.unchanged) == (3, 3, 4)
    assert again.offers_created == 0
    assert {r.action for r in again.rows} == {"unchanged"}
    assert count(AuditEvent) == events


def test_dry_run_writes_nothing_but_reports_what_would_happen(db):
    events = count(AuditEvent)
    report = import_addressbook((DATA / "addressbook_valid.csv").read_bytes(), dry_run=True)

    assert report.errors == []
    assert (report.institutions.created, report.antennes.created, report.experts.created) == (3, 3, 4)
    assert report.offers_created == 6
    assert [r.action for r in report.rows] == ["create"] * 4
    assert [r.line for r in report.rows] == [2, 3, 4, 5]
    for model in (Institution, Antenne, Expert, InstitutionSubject, ExpertSubject, Zone):
        assert count(model) == 0
    assert count(AuditEvent) == events


def test_dry_run_previews_updates_with_changed_fields(db):
    import_addressbook(csv_text(row(phone="04 00 00 00 00", subjects="export")))
    before = count(AuditEvent)

    report = import_addressbook(csv_text(row(phone="04 11 11 11 11", subjects="export;tresorerie")), dry_run=True)

    assert report.experts.updated == 1
    (preview,) = report.rows
    assert preview.action == "update"
    assert preview.changes["téléphone"] == ("04 00 00 00 00", "04 11 11 11 11")
    assert preview.changes["sujets"] == ("export", "export;tresorerie")
    assert report.offers_created == 1
    assert db.session.scalar(select(Expert.phone)) == "04 00 00 00 00"
    assert count(AuditEvent) == before


# ---------------------------------------------------------------- updates


def test_update_of_an_expert_phone_and_job_title(db):
    import_addressbook(csv_text(row(phone="04 00 00 00 00", job_title="Conseillère")))

    report = import_addressbook(csv_text(row(phone="04 11 11 11 11", job_title="Conseillère")))

    assert report.experts.updated == 1 and report.experts.created == 0
    assert report.institutions.unchanged == 1 and report.antennes.unchanged == 1
    expert = db.session.scalar(select(Expert))
    assert expert.phone == "04 11 11 11 11"
    (event,) = db.session.scalars(select(AuditEvent).where(AuditEvent.action == "update"))
    assert event.changes == {"phone": ["04 00 00 00 00", "04 11 11 11 11"]}


def test_expert_matched_by_email_case_insensitively(db):
    import_addressbook(csv_text(row(email="alice@cci.example")))
    report = import_addressbook(csv_text(row(email="Alice@CCI.example")))
    assert report.experts.unchanged == 1
    assert count(Expert) == 1


def test_file_is_authoritative_for_the_subjects_it_lists(db):
    import_addressbook(csv_text(row(subjects="export;recrutement")))

    report = import_addressbook(csv_text(row(subjects="tresorerie;recrutement")))

    assert report.experts.updated == 1
    expert = db.session.scalar(select(Expert))
    assert sorted(link.institution_subject.subject.slug for link in expert.subjects) == ["recrutement", "tresorerie"]
    # The institution keeps its offer of export: other experts may take it.
    assert count(InstitutionSubject) == 3


def test_antenne_zone_replaced_when_given_and_kept_when_empty(db):
    import_addressbook(csv_text(row(antenne_zone="departement:69 commune:75056")))

    kept = import_addressbook(csv_text(row(antenne_zone="")))
    assert kept.antennes.unchanged == 1
    antenne = db.session.scalar(select(Antenne))
    assert sorted(z.reference for z in antenne.zones) == ["commune:75056", "departement:69"]

    replaced = import_addressbook(csv_text(row(antenne_zone="national")))
    assert replaced.antennes.updated == 1
    db.session.expire_all()
    antenne = db.session.scalar(select(Antenne))
    assert antenne.national and antenne.zones == []
    assert count(Zone) == 0


def test_empty_expert_zone_clears_the_override(db):
    import_addressbook(csv_text(row(expert_zone="region:84")))
    expert = db.session.scalar(select(Expert))
    assert [z.reference for z in expert.zones] == ["region:84"]

    report = import_addressbook(csv_text(row(expert_zone="")))

    assert report.rows[0].changes["zone propre"] == ("region:84", "aucune")
    db.session.expire_all()
    expert = db.session.scalar(select(Expert))
    assert not expert.has_own_zone
    assert count(Zone) == 0


def test_existing_institution_matched_by_slug_and_experts_absent_from_file_left_alone(db):
    institution = InstitutionFactory(name="CCI Auvergne Rhône Alpes", slug="cci-auvergne-rhone-alpes")
    antenne = AntenneFactory(institution=institution, name="CCI Lyon Métropole")
    other = ExpertFactory(antenne=antenne, email="autre@cci.example")

    report = import_addressbook(csv_text(row(institution="CCI Auvergne-Rhône-Alpes")))

    assert report.institutions.created == 0 and report.antennes.created == 0
    assert report.experts.created == 1
    assert count(Institution) == 1
    db.session.expire_all()
    assert db.session.get(Expert, other.id).deleted_at is None


def test_import_does_not_query_per_row(db, count_queries):
    rows = [row(expert=f"Expert {n}", email=f"expert{n}@cci.example", expert_zone="commune:69123") for n in range(60)]
    import_addressbook(csv_text(*rows))
    with count_queries() as few:
        import_addressbook(csv_text(*rows[:5]), dry_run=True)
    with count_queries() as many:
        import_addressbook(csv_text(*rows), dry_run=True)
    assert many.count == few.count


# ---------------------------------------------------------------- errors, each with its line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (row(email="foo@"), "ligne 2 : adresse email invalide « foo@ »"),
        (row(institution=""), "ligne 2 : la colonne « institution » est vide"),
        (row(antenne=""), "ligne 2 : la colonne « antenne » est vide"),
        (row(expert=""), "ligne 2 : la colonne « expert » est vide"),
        (row(email=""), "ligne 2 : la colonne « email » est vide"),
        (row(subjects="export;jardinage"), "ligne 2 : sujet inconnu « jardinage »"),
        (row(antenne_zone="commune:99999"), "ligne 2 : antenne_zone : territoire inconnu « commune:99999 »"),
        (row(expert_zone="epci:123456789"), "ligne 2 : expert_zone : territoire inconnu « epci:123456789 »"),
        (row(antenne_zone="canton:12"), "ligne 2 : antenne_zone : Territoire mal formé : « canton:12 »"),
        (row(expert_zone="departement:6"), "ligne 2 : expert_zone : Code de département mal formé"),
        (row(antenne_zone="national region:84"), "ligne 2 : antenne_zone : « national » s'emploie seul"),
        (row() + ",en trop", "ligne 2 : 10 colonne(s) au lieu de 9"),
    ],
)
def test_row_errors_carry_their_line_number(db, content, expected):
    report = import_addressbook(csv_text(content))
    assert any(message.startswith(expected) for message in messages(report)), messages(report)
    assert count(Expert) == 0


def test_archived_subject_is_an_error(db):
    from app.services.reference.catalog import archive_subject

    archive_subject(subject("export"))
    report = import_addressbook(csv_text(row(subjects="export")))
    assert messages(report) == ["ligne 2 : le sujet « export » est archivé"]


def test_two_zones_for_one_antenne_name_both_lines(db):
    report = import_addressbook(
        csv_text(
            row(antenne_zone="departement:69"),
            row(email="b@cci.example", antenne_zone=""),
            row(email="c@cci.example", antenne_zone="departement:69"),
            row(email="d@cci.example", antenne_zone="region:84"),
        )
    )
    (error,) = report.errors
    assert error.line == 5
    assert "ligne 2" in error.message and "region:84" in error.message and "departement:69" in error.message


def test_same_email_twice_in_one_antenne(db):
    report = import_addressbook(
        csv_text(
            row(email="alice@cci.example"),
            row(email="bob@cci.example"),
            row(email="ALICE@cci.example", antenne="Autre antenne"),  # another antenne: fine
            row(email="Alice@cci.example", expert="Alice M."),
        )
    )
    assert messages(report) == [
        "ligne 5 : l'email « alice@cci.example » figure déjà ligne 2 pour l'antenne « CCI Lyon Métropole »"
    ]


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "Le fichier est vide"),
        ("\n\n", "Le fichier est vide"),
        (HEADER + "\n", "Le fichier ne contient aucune ligne d'expert"),
    ],
)
def test_empty_files(db, content, expected):
    report = import_addressbook(content.encode())
    assert len(report.errors) == 1
    assert str(report.errors[0]).startswith(expected)


def test_missing_and_extra_header_columns(db):
    header = HEADER.replace(",phone", "").replace("expert_zone", "expert_zone,commentaire")
    report = import_addressbook(header + "\n" + row() + "\n")
    assert messages(report) == [
        "ligne 1 : colonne(s) manquante(s) dans l'en-tête : phone",
        "ligne 1 : colonne(s) inconnue(s) dans l'en-tête : commentaire",
    ]


def test_non_utf8_file_is_a_clear_error(db):
    report = import_addressbook((DATA / "addressbook_latin1.csv").read_bytes())
    (error,) = report.errors
    assert error.line == 2
    assert "UTF-8" in str(error)


def test_nul_bytes_are_refused_before_the_database_sees_them(db):
    report = import_addressbook(csv_text(row(), row(email="b@cci.example", expert="B\x00b")).encode())
    assert messages(report) == [
        "ligne 3 : le fichier contient des caractères binaires (octet nul) : ce n'est pas un fichier CSV texte"
    ]


def test_binary_garbage_is_an_error_not_a_crash(db):
    report = import_addressbook(bytes(range(256)) * 4)
    assert report.errors
    assert count(Expert) == 0


def test_deleted_institution_or_antenne_is_not_resurrected(db):
    institution = InstitutionFactory(name="CCI Auvergne-Rhône-Alpes")
    antenne = AntenneFactory(institution=institution, name="CCI Lyon Métropole")
    delete_antenne(antenne)

    report = import_addressbook(csv_text(row(), row(email="b@cci.example")))
    assert messages(report) == [
        "ligne 2 : l'antenne « CCI Lyon Métropole » a été supprimée : restaurez-la avant d'importer"
    ]

    delete_institution(institution)
    report = import_addressbook(csv_text(row()))
    assert messages(report) == [
        "ligne 2 : l'institution « CCI Auvergne-Rhône-Alpes » a été supprimée : restaurez-la avant d'importer"
    ]


def test_every_error_is_collected_and_nothing_is_written(db):
    events = count(AuditEvent)
    report = import_addressbook((DATA / "addressbook_invalid.csv").read_bytes())

    assert messages(report) == [
        "ligne 3 : adresse email invalide « foo@ »",
        "ligne 4 : sujet inconnu « n-existe-pas »",
    ]
    assert report.rows == []
    for model in (Institution, Antenne, Expert, InstitutionSubject):
        assert count(model) == 0
    assert count(AuditEvent) == events


def test_one_bad_row_leaves_an_existing_address_book_untouched(db):
    import_addressbook(csv_text(row(phone="04 00 00 00 00")))
    events = count(AuditEvent)

    report = import_addressbook(csv_text(row(phone="04 99 99 99 99"), row(email="nouveau@cci.example", subjects="x")))

    assert report.errors
    db.session.expire_all()
    assert db.session.scalar(select(Expert.phone)) == "04 00 00 00 00"
    assert count(Expert) == 1
    assert count(AuditEvent) == events


# ---------------------------------------------------------------- CLI


def test_cli_dry_run(app):
    result = app.test_cli_runner().invoke(
        args=["addressbook", "import", str(DATA / "addressbook_valid.csv"), "--dry-run"]
    )
    assert result.exit_code == 0, result.output
    assert "experts : 4 créé(s)" in result.output
    assert "Simulation" in result.output
    with app.app_context():
        assert count(Expert) == 0


def test_cli_import_then_failing_file(app):
    runner = app.test_cli_runner()
    ok = runner.invoke(args=["addressbook", "import", str(DATA / "addressbook_valid.csv")])
    assert ok.exit_code == 0, ok.output
    with app.app_context():
        assert count(Expert) == 4
        assert db_actor() == {"import addressbook_valid.csv"}

    failed = runner.invoke(args=["addressbook", "import", str(DATA / "addressbook_invalid.csv")])
    assert failed.exit_code != 0
    assert "ligne 3 : adresse email invalide « foo@ »" in failed.output
    assert "ligne 4 : sujet inconnu « n-existe-pas »" in failed.output
    assert "rien n'a été importé" in failed.output


def db_actor() -> set[str]:
    from app.extensions import db

    return set(db.session.scalars(select(AuditEvent.actor).where(AuditEvent.object_type == "Expert")))


# ---------------------------------------------------------------- zones and soft deletion verbs


def test_set_zone_validates_and_replaces(db):
    antenne = AntenneFactory()
    zone(antenne, "region:84")

    set_zone(antenne, "departement:69 commune:75056")
    assert sorted(z.reference for z in antenne.zones) == ["commune:75056", "departement:69"]
    assert not antenne.national

    set_zone(antenne, "national")
    assert antenne.national and antenne.zones == []

    with pytest.raises(ServiceError, match=r"inconnu.*commune:99999"):
        set_zone(antenne, "commune:99999")
    with pytest.raises(ServiceError, match="mal formé"):
        set_zone(antenne, "pays:FR")
    assert antenne.national


def test_delete_expert_blanks_personal_data(db):
    expert = ExpertFactory(phone="06 00 00 00 00", job_title="Conseiller")
    offer(expert, "export")

    delete_expert(expert)

    db.session.expire_all()
    expert = db.session.get(Expert, expert.id)
    assert expert.deleted_at is not None
    assert (expert.full_name, expert.email, expert.phone, expert.job_title) == ("Expert supprimé", None, None, None)


def test_deleted_expert_frees_its_email_for_a_newcomer(db):
    institution = InstitutionFactory(name="CCI Auvergne-Rhône-Alpes")
    antenne = AntenneFactory(institution=institution, name="CCI Lyon Métropole")
    delete_expert(ExpertFactory(antenne=antenne, email="alice@cci.example"))

    report = import_addressbook(csv_text(row()))

    assert report.experts.created == 1
    assert count(Expert) == 2


def test_delete_and_restore_institution_and_antenne(db):
    antenne = AntenneFactory()
    institution = antenne.institution
    delete_institution(institution)
    delete_antenne(antenne)
    assert institution.is_deleted and antenne.is_deleted

    with pytest.raises(ServiceError, match="restaurez-la avant son antenne"):
        restore_antenne(antenne)
    restore_institution(institution)
    restore_antenne(antenne)
    assert not institution.is_deleted and not antenne.is_deleted


def test_slugify():
    assert slugify("Chambre de Métiers d'Île-de-France") == "chambre-de-metiers-d-ile-de-france"
    assert slugify("  Œuvre  & Co ") == "oeuvre-co"


def test_real_import_writes_in_bulk(db, count_queries):
    if db.engine.dialect.name != "postgresql":
        # SQLite cannot tie RETURNING rows back to the objects of a multi-row INSERT, so SQLAlchemy
        # inserts them one by one there; production and CI run PostgreSQL.
        pytest.skip("SQLite insère ligne à ligne ; PostgreSQL en CI")

    def rows(prefix: str, n: int) -> list[str]:
        return [
            row(antenne=f"Antenne {prefix}", expert=f"E{i}", email=f"{prefix}{i}@cci.example", expert_zone="region:84")
            for i in range(n)
        ]

    with transaction():  # the institution and one antenne exist for both imports below
        import_addressbook(csv_text(row()))
    with count_queries() as few, transaction():
        import_addressbook(csv_text(*rows("a", 3)))
    with count_queries() as many, transaction():
        import_addressbook(csv_text(*rows("b", 80)))
    assert count(Expert) == 84
    assert many.count == few.count
