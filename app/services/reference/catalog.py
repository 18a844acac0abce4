"""The catalog of themes and subjects: loading it from CSV, archiving subjects."""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from app.extensions import db
from app.models import Subject, SubjectQuestion, Theme
from app.models.base import utcnow
from app.services.errors import ServiceError
from app.services.reference.questions import parse_questions_cell

CATALOG_COLUMNS = ["theme_slug", "theme", "subject_slug", "subject"]
# Optional: the subject's questions (issue 14), ``clé|Question|Réponse|Réponse`` separated by « ; »;
# when the column is there, it is the whole set of the subject's questions.
QUESTIONS_COLUMN = "questions"
_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@dataclass
class CatalogLoadReport:
    themes_created: int = 0
    themes_updated: int = 0
    subjects_created: int = 0
    subjects_updated: int = 0
    questions_written: int = 0
    errors: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        lines = [
            f"thèmes : {self.themes_created} créé(s), {self.themes_updated} mis à jour",
            f"sujets : {self.subjects_created} créé(s), {self.subjects_updated} mis à jour",
        ]
        if self.questions_written:
            lines.append(f"questions : {self.questions_written} créée(s) ou mise(s) à jour")
        return lines


def _read_rows(text: str) -> list[dict[str, str]]:
    reader = csv.DictReader(io.StringIO(text))
    missing = [c for c in CATALOG_COLUMNS if c not in (reader.fieldnames or [])]
    if missing:
        raise ServiceError(f"Colonnes manquantes dans le catalogue : {', '.join(missing)}.")
    rows = list(reader)
    errors: list[str] = []
    for number, row in enumerate(rows, start=2):
        for key in CATALOG_COLUMNS:
            if not (row.get(key) or "").strip():
                errors.append(f"ligne {number} : la colonne « {key} » est vide.")
        for key in ("theme_slug", "subject_slug"):
            value = (row.get(key) or "").strip()
            if value and not _SLUG.match(value):
                errors.append(
                    f"ligne {number} : « {value} » n'est pas un identifiant valide (minuscules, chiffres, tirets)."
                )
        try:
            row["_questions"] = parse_questions_cell(row.get(QUESTIONS_COLUMN) or "")
        except ServiceError as error:
            errors.append(f"ligne {number} : {error}.")
    if errors:
        raise ServiceError("Catalogue invalide :\n" + "\n".join(errors))
    return rows


def load_catalog(path: str | Path) -> CatalogLoadReport:
    """Create or update themes and subjects by slug, in file order; idempotent.

    Subjects absent from the file are left as they are: archiving is a deliberate act.
    """
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise ServiceError(f"Fichier introuvable : {path}.") from None
    rows = _read_rows(text)
    has_questions = bool(rows) and QUESTIONS_COLUMN in rows[0]
    report = CatalogLoadReport()
    themes = {t.slug: t for t in db.session.scalars(select(Theme))}
    subjects = {s.slug: s for s in db.session.scalars(select(Subject))}
    theme_positions: dict[str, int] = {}
    for position, row in enumerate(rows):
        theme_slug = row["theme_slug"].strip()
        theme_label = row["theme"].strip()
        if theme_slug not in theme_positions:
            theme_positions[theme_slug] = len(theme_positions)
            theme = themes.get(theme_slug)
            if theme is None:
                theme = themes[theme_slug] = Theme(
                    slug=theme_slug, label=theme_label, position=theme_positions[theme_slug]
                )
                db.session.add(theme)
                report.themes_created += 1
            elif (theme.label, theme.position) != (theme_label, theme_positions[theme_slug]):
                theme.label, theme.position = theme_label, theme_positions[theme_slug]
                report.themes_updated += 1
        theme = themes[theme_slug]
        subject_slug = row["subject_slug"].strip()
        subject_label = row["subject"].strip()
        found = subjects.get(subject_slug)
        if found is None:
            subjects[subject_slug] = Subject(slug=subject_slug, label=subject_label, theme=theme, position=position)
            db.session.add(subjects[subject_slug])
            report.subjects_created += 1
        elif (found.label, found.theme_id, found.position) != (subject_label, theme.id, position):
            found.label, found.theme, found.position = subject_label, theme, position
            report.subjects_updated += 1
        if has_questions:
            db.session.flush()
            report.questions_written += _set_questions(subjects[subject_slug], row["_questions"])
    db.session.flush()
    return report


def _set_questions(subject: Subject, wanted: list[tuple[str, str, list[str]]]) -> int:
    """Make the subject's questions those of the file (by key); how many were written."""
    existing = {
        q.key: q for q in db.session.scalars(select(SubjectQuestion).where(SubjectQuestion.subject_id == subject.id))
    }
    written = 0
    for position, (key, label, choices) in enumerate(wanted):
        question = existing.pop(key, None)
        if question is None:
            db.session.add(
                SubjectQuestion(subject_id=subject.id, key=key, label=label, choices=choices, position=position)
            )
            written += 1
        elif (question.label, question.choices, question.position) != (label, choices, position):
            question.label, question.choices, question.position = label, choices, position
            written += 1
    for question in existing.values():
        db.session.delete(question)
    return written


def archive_subject(subject: Subject) -> None:
    """Hide a subject from the form and from routing; past needs keep it."""
    if subject.archived_at is None:
        subject.archived_at = utcnow()
        db.session.flush()


def unarchive_subject(subject: Subject) -> None:
    if subject.archived_at is not None:
        subject.archived_at = None
        db.session.flush()
