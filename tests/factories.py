"""factory_boy factories for the address book (tests and the benchmark generator share none)."""

from __future__ import annotations

import factory
from factory.alchemy import SQLAlchemyModelFactory
from sqlalchemy import select

from app.extensions import db
from app.models import Antenne, Expert, ExpertSubject, Institution, InstitutionSubject, Subject, Zone


class _Base(SQLAlchemyModelFactory):
    class Meta:
        abstract = True
        sqlalchemy_session_factory = lambda: db.session  # noqa: E731
        sqlalchemy_session_persistence = "commit"


class InstitutionFactory(_Base):
    class Meta:
        model = Institution

    name = factory.Sequence(lambda n: f"Institution {n}")
    slug = factory.Sequence(lambda n: f"institution-{n}")


class AntenneFactory(_Base):
    class Meta:
        model = Antenne

    institution = factory.SubFactory(InstitutionFactory)
    name = factory.Sequence(lambda n: f"Antenne {n}")


class ExpertFactory(_Base):
    class Meta:
        model = Expert

    antenne = factory.SubFactory(AntenneFactory)
    full_name = factory.Sequence(lambda n: f"Expert {n}")
    email = factory.Sequence(lambda n: f"expert{n}@partenaire.example")


def subject(slug: str) -> Subject:
    return db.session.scalar(select(Subject).where(Subject.slug == slug))


def offer(expert: Expert, subject_slug: str) -> ExpertSubject:
    """Make ``expert`` take ``subject_slug`` through its institution's offer (created if missing)."""
    institution = expert.antenne.institution
    found = subject(subject_slug)
    inst_subject = db.session.scalar(
        select(InstitutionSubject).where(
            InstitutionSubject.institution_id == institution.id, InstitutionSubject.subject_id == found.id
        )
    ) or InstitutionSubject(institution=institution, subject=found)
    link = ExpertSubject(expert=expert, institution_subject=inst_subject)
    db.session.add(link)
    db.session.commit()
    return link


def zone(owner: Antenne | Expert, reference: str) -> None:
    """Add ``national`` or one ``kind:code`` to an antenne's or an expert's zone."""
    if reference == "national":
        owner.national = True
    else:
        kind, code = reference.split(":")
        owner.zones.append(Zone(kind=kind, code=code))
    db.session.commit()
