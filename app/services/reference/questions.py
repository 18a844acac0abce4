"""The questions a subject asks on its public form, and the answers institutions take.

A question is answered by one of its choices (« Oui » / « Non » when none is given). The same
checks serve the back office, the catalog file and the public form, so a choice refused in one
is refused in the others with the same French words.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from sqlalchemy import select

from app.extensions import db
from app.models import InstitutionSubject, SubjectQuestion
from app.services.errors import ServiceError

YES_NO = ["Oui", "Non"]
_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}$")
MAX_CHOICE = 100
MAX_LABEL = 300  # subject_questions.label


def parse_choices(text: str | None) -> list[str]:
    """``"Moins de 10 | 10 et plus"`` → the list; empty → Oui / Non."""
    choices = list(dict.fromkeys(part.strip() for part in (text or "").split("|") if part.strip()))
    if not choices:
        return list(YES_NO)
    if len(choices) < 2:
        raise ServiceError("Une question propose au moins deux réponses (séparées par « | »).")
    long = [choice for choice in choices if len(choice) > MAX_CHOICE]
    if long:
        raise ServiceError(f"Réponse trop longue (plus de {MAX_CHOICE} caractères) : « {long[0][:40]}… ».")
    return choices


def check_question(question: SubjectQuestion) -> None:
    question.key = (question.key or "").strip().lower()
    question.label = (question.label or "").strip()
    if not _KEY.match(question.key):
        raise ServiceError(
            f"Clé de question illisible : « {question.key} » (lettres minuscules, chiffres et tirets, 60 au plus)."
        )
    if not question.label:
        raise ServiceError("Indiquez la question posée.")
    if len(question.label) > MAX_LABEL:
        raise ServiceError(f"Question trop longue : {MAX_LABEL} caractères au plus.")
    if not question.choices or len(question.choices) < 2:
        question.choices = list(YES_NO)


def questions_of(subject_id: int) -> list[SubjectQuestion]:
    return list(
        db.session.scalars(
            select(SubjectQuestion)
            .where(SubjectQuestion.subject_id == subject_id)
            .order_by(SubjectQuestion.position, SubjectQuestion.id)
        )
    )


def _choice(question: SubjectQuestion, value: str) -> str | None:
    wanted = (value or "").strip().casefold()
    return next((choice for choice in question.choices if choice.casefold() == wanted), None)


def parse_expectation(offer: InstitutionSubject | None, text: str) -> dict[str, str]:
    """``clé = Réponse`` lines → ``{clé: Réponse}``, each key a question of the offer's subject
    and each answer one of its choices."""
    if offer is None:
        raise ServiceError("Choisissez l'offre (sujet et institution).")
    questions = {q.key: q for q in questions_of(offer.subject_id)}
    if not questions:
        raise ServiceError(f"Le sujet « {offer.subject.label} » ne pose aucune question : rien à attendre.")
    answers: dict[str, str] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        key, sep, value = line.partition("=")
        key = key.strip().lower()
        if not sep:
            raise ServiceError(f"Ligne {number} illisible : « {line.strip()} » (attendu : clé = Réponse).")
        question = questions.get(key)
        if question is None:
            raise ServiceError(f"Ligne {number} : « {key} » n'est pas une question du sujet ({', '.join(questions)}).")
        choice = _choice(question, value)
        if choice is None:
            raise ServiceError(
                f"Ligne {number} : « {value.strip()} » n'est pas une réponse de « {question.label} » "
                f"({' / '.join(question.choices)})."
            )
        answers[key] = choice
    if not answers:
        raise ServiceError("Indiquez au moins une réponse attendue (clé = Réponse).")
    return answers


def clean_answers(questions: list[SubjectQuestion], raw: Mapping[str, Any]) -> tuple[dict[str, str], dict[str, str]]:
    """The public form's answers: ``(answers by key, errors by key)``; every question is required."""
    answers: dict[str, str] = {}
    errors: dict[str, str] = {}
    for question in questions:
        value = raw.get(question.key)
        if value is None or not str(value).strip():
            errors[question.key] = f"Répondez à la question « {question.label} »."
            continue
        choice = _choice(question, str(value))
        if choice is None:
            errors[question.key] = f"Choisissez une des réponses proposées : {' / '.join(question.choices)}."
        else:
            answers[question.key] = choice
    return answers, errors


def answers_text(questions: list[SubjectQuestion], answers: Mapping[str, str] | None) -> list[tuple[str, str]]:
    """``[(question, answer)]`` as staff, experts and exports show them; a key without its
    question any more shows as itself."""
    answers = dict(answers or {})
    shown = [(q.label, answers.pop(q.key)) for q in questions if q.key in answers]
    return shown + sorted(answers.items())


def parse_questions_cell(text: str) -> list[tuple[str, str, list[str]]]:
    """The catalog file's ``questions`` cell: questions separated by « ; », each
    ``clé|Question|Réponse 1|Réponse 2…`` (no answer given: Oui / Non)."""
    found: list[tuple[str, str, list[str]]] = []
    for part in (text or "").split(";"):
        if not part.strip():
            continue
        pieces = [piece.strip() for piece in part.split("|")]
        if len(pieces) < 2 or not pieces[1]:
            raise ServiceError(f"question illisible : « {part.strip()} » (attendu : clé|Question|Réponse|Réponse…)")
        key = pieces[0].lower()
        if len(pieces[1]) > MAX_LABEL:
            raise ServiceError(f"question trop longue ({len(pieces[1])} caractères, {MAX_LABEL} au plus)")
        if not _KEY.match(key):
            raise ServiceError(f"clé de question illisible : « {pieces[0]} » (lettres minuscules, chiffres, tirets)")
        found.append((key, pieces[1], parse_choices("|".join(pieces[2:]))))
    return found


def need_answers(need: Any, questions: Callable[[int], list[SubjectQuestion]] | None = None) -> list[tuple[str, str]]:
    """The answers a need's request gave to its subject's questions, as people read them
    (none when staff moved the need to another subject, whose questions were not asked);
    ``questions`` reads a subject's questions (a list or an export passes a cached reader)."""
    solicitation = need.solicitation
    if solicitation is None or not solicitation.subject_answers or solicitation.subject_id != need.subject_id:
        return []
    return answers_text((questions or questions_of)(need.subject_id), solicitation.subject_answers)
