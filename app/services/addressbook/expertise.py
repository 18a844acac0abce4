"""What an expert takes on: its subjects, through its institution's offers."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select

from app.extensions import db
from app.models import Expert, ExpertSubject, InstitutionSubject, Subject
from app.services.errors import ServiceError


def set_expert_subjects(expert: Expert, subjects: Iterable[Subject]) -> None:
    """Make ``expert`` take exactly ``subjects``; its institution's offer of each is created when missing.

    Routing goes through the institution's offer (an expert takes a subject only as its
    institution offers it), so picking a subject the
    institution does not offer yet opens that offer rather than refusing. Links kept keep their
    intervention criteria. Does not commit: the caller's save does.
    """
    antenne = expert.antenne
    if antenne is None:
        raise ServiceError("Choisissez d'abord l'antenne de l'expert.")
    institution = antenne.institution
    wanted = {s.id: s for s in subjects}
    offers = (
        {
            o.subject_id: o
            for o in db.session.scalars(
                select(InstitutionSubject).where(InstitutionSubject.institution_id == institution.id)
            )
        }
        if institution.id is not None
        else {}
    )
    for link in list(expert.subjects):
        if link.institution_subject.subject_id not in wanted:
            expert.subjects.remove(link)
    taken = {link.institution_subject.subject_id for link in expert.subjects}
    for subject_id, subject in wanted.items():
        if subject_id in taken:
            continue
        offer = offers.get(subject_id)
        if offer is None:
            offer = offers[subject_id] = InstitutionSubject(institution=institution, subject=subject)
            db.session.add(offer)
        expert.subjects.append(ExpertSubject(institution_subject=offer))
