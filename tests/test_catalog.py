"""The catalog: default load, updates by slug, idempotence, errors, archiving."""

from __future__ import annotations

import csv

import pytest
from sqlalchemy import func, select

from app.models import AuditEvent, Subject, Theme
from app.services.errors import ServiceError
from app.services.reference.catalog import archive_subject, load_catalog, unarchive_subject


def _rows(path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_default_catalog_is_the_shared_one(app, db):
    shared = _rows(app.config["CATALOG_DEFAULT_PATH"])
    assert db.session.scalar(select(func.count()).select_from(Subject)) == len(shared) == 25
    assert db.session.scalar(select(func.count()).select_from(Theme)) == len({r["theme_slug"] for r in shared})
    export = db.session.scalar(select(Subject).where(Subject.slug == "export"))
    assert export.label == "Vendre à l'international"
    assert export.theme.slug == "developpement-commercial"


def test_reload_is_idempotent(app, db):
    before = db.session.scalar(select(func.count()).select_from(AuditEvent))
    report = load_catalog(app.config["CATALOG_DEFAULT_PATH"])
    assert (report.themes_created, report.themes_updated, report.subjects_created, report.subjects_updated) == (
        0,
        0,
        0,
        0,
    )
    assert db.session.scalar(select(func.count()).select_from(AuditEvent)) == before


def test_load_updates_labels_and_adds_subjects(db, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text(
        "theme_slug,theme,subject_slug,subject\n"
        "developpement-commercial,Développement commercial,export,Exporter\n"
        "energie,Énergie,renovation-energetique,Rénover mes locaux\n",
        encoding="utf-8",
    )
    report = load_catalog(path)
    assert report.subjects_created == 1 and report.subjects_updated >= 1 and report.themes_created == 1
    assert db.session.scalar(select(Subject.label).where(Subject.slug == "export")) == "Exporter"
    assert db.session.scalar(select(Subject).where(Subject.slug == "renovation-energetique")).theme.label == "Énergie"
    # Subjects absent from the file stay as they are.
    assert db.session.scalar(select(Subject).where(Subject.slug == "recrutement")).archived_at is None


def test_invalid_catalog_is_refused_with_line_numbers(db, tmp_path):
    path = tmp_path / "catalog.csv"
    path.write_text("theme_slug,theme,subject_slug,subject\nrh,RH,Mauvais Slug,Recruter\nrh,,x,\n", encoding="utf-8")
    with pytest.raises(ServiceError) as error:
        load_catalog(path)
    assert "ligne 2" in str(error.value) and "ligne 3" in str(error.value)
    assert db.session.scalar(select(func.count()).select_from(Subject).where(Subject.slug == "x")) == 0
    missing = tmp_path / "bad.csv"
    missing.write_text("slug,label\n", encoding="utf-8")
    with pytest.raises(ServiceError, match="Colonnes manquantes"):
        load_catalog(missing)


def test_archiving_hides_the_subject_from_the_home_page(db, client):
    subject = db.session.scalar(select(Subject).where(Subject.slug == "cybersecurite"))
    archive_subject(subject)
    assert "Sécuriser mes outils numériques" not in client.get("/").get_data(as_text=True)
    unarchive_subject(subject)
    assert "Sécuriser mes outils numériques" in client.get("/").get_data(as_text=True)


def test_catalog_cli(app):
    result = app.test_cli_runner().invoke(args=["catalog", "load"])
    assert result.exit_code == 0, result.output
    assert "sujets : 0 créé(s), 0 mis à jour" in result.output
    failed = app.test_cli_runner().invoke(args=["catalog", "load", "/nonexistent.csv"])
    assert failed.exit_code == 1
    assert "Fichier introuvable" in failed.output


def test_the_catalog_file_may_carry_the_subjects_questions(app, db, tmp_path):
    """Issue 14: a ``questions`` column, ``clé|Question|Réponse|Réponse`` separated by « ; »; the
    column is the whole set of each subject's questions; an unreadable question is refused."""
    from app.models import SubjectQuestion

    path = tmp_path / "catalog.csv"
    header = "theme_slug,theme,subject_slug,subject,questions\n"
    path.write_text(
        header
        + "ressources-humaines,Ressources humaines,recrutement,Recruter,"
        + "apprentis|Recrutez-vous des apprentis ?;taille|Combien de postes ?|1|2 à 5|Plus de 5\n",
        encoding="utf-8",
    )
    report = load_catalog(path)
    assert report.questions_written == 2
    stored = {q.key: q for q in db.session.scalars(select(SubjectQuestion))}
    assert stored["apprentis"].choices == ["Oui", "Non"]
    assert stored["taille"].choices == ["1", "2 à 5", "Plus de 5"] and stored["taille"].position == 1
    assert load_catalog(path).questions_written == 0
    path.write_text(header + "ressources-humaines,Ressources humaines,recrutement,Recruter,taille|Combien ?|1|2\n")
    load_catalog(path)
    assert [q.key for q in db.session.scalars(select(SubjectQuestion))] == ["taille"]
    path.write_text(header + "ressources-humaines,Ressources humaines,recrutement,Recruter,Clé invalide|Question\n")
    with pytest.raises(ServiceError, match="clé de question illisible"):
        load_catalog(path)
