"""Finding the expert staff mean: the suggestions of the « ajouter un expert » fields and the
reading of what was typed or picked there, shared by the request desk and the need page.

An entry names an expert by a number ending it (« … #12 » or « … (#12) », what the suggestions
post) or by an email address (typed by hand, JavaScript or not). Only active experts (as
routing sees them: expert, antenne and institution not deleted) are offered or found;
``scope`` lets the back office add its policy's restriction to every SELECT.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from sqlalchemy import Select, func, or_, select
from sqlalchemy.orm import selectinload

from app.extensions import db
from app.models import Antenne, Expert, Institution
from app.models.base import INTEGER_MAX
from app.services.errors import ServiceError

Scope = Callable[[Select], Select]

# Ids are 32-bit INTEGER columns: a larger number typed in a form names nothing.
MAX_ENTRY_LENGTH = 500
# The desk's labels end « (#12) », the need page's « #12 » (a longer bare number reads as text).
_NUMBER_AT_END = re.compile(r"\(#\s*(\d+)\)\s*$|#\s*(\d{1,10})\s*$")
_EMAIL = re.compile(r"[^\s<>()\[\],;]+@[^\s<>()\[\],;]+")


def parse_id(value: object) -> int | None:
    """A row id from a form or URL field (ASCII digits, within the column's range), or None."""
    text = str(value if value is not None else "").strip()
    if not text.isascii() or not text.isdigit() or len(text) > 10:
        return None
    ident = int(text)
    return ident if 0 < ident <= INTEGER_MAX else None


def active_experts(stmt: Select | None = None, *, scope: Scope | None = None) -> Select:
    """``stmt`` (default: SELECT experts) kept to experts who may receive a need now."""
    stmt = (
        (stmt if stmt is not None else select(Expert))
        .join(Antenne, Antenne.id == Expert.antenne_id)
        .join(Institution, Institution.id == Antenne.institution_id)
        .where(Expert.deleted_at.is_(None), Antenne.deleted_at.is_(None), Institution.deleted_at.is_(None))
    )
    return scope(stmt) if scope is not None else stmt


def _escape_like(word: str) -> str:
    return word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def search_experts(query: str, *, scope: Scope | None = None, limit: int = 20) -> list[Expert]:
    """Active experts whose name or email holds every word of ``query`` (2 characters at
    least), antenne and institution loaded, by name."""
    words = (query or "").strip().casefold().split()
    if len("".join(words)) < 2:
        return []
    stmt = active_experts(scope=scope)
    for word in words[:5]:
        pattern = f"%{_escape_like(word)}%"
        stmt = stmt.where(
            or_(
                func.lower(Expert.full_name).like(pattern, escape="\\"),
                func.lower(Expert.email).like(pattern, escape="\\"),
            )
        )
    stmt = stmt.options(selectinload(Expert.antenne).selectinload(Antenne.institution))
    return list(db.session.scalars(stmt.order_by(Expert.full_name, Expert.id).limit(limit)))


def resolve_expert(entry: str, *, scope: Scope | None = None) -> Expert:
    """The one active expert ``entry`` names, or a French ServiceError saying why not."""
    text = (entry or "").strip()
    if not text:
        raise ServiceError("Indiquez l'expert : son adresse électronique, ou choisissez-le dans la liste.")
    if len(text) > MAX_ENTRY_LENGTH:
        raise ServiceError("Ce texte est trop long pour désigner un expert.")
    number = _NUMBER_AT_END.search(text)
    if number:
        ident = parse_id(number.group(1) or number.group(2))
        expert = db.session.scalar(active_experts(scope=scope).where(Expert.id == ident)) if ident else None
        if expert is None:
            raise ServiceError(
                "Cet expert n'existe pas ou n'est plus actif : aucun expert actif de l'annuaire ne porte ce numéro."
            )
        return expert
    found = _EMAIL.search(text)
    if not found:
        raise ServiceError(
            f"« {text} » n'est pas une adresse électronique : indiquez l'adresse email de l'expert, "
            "ou choisissez-le dans la liste."
        )
    email = found.group(0).strip(".").casefold()
    experts = list(db.session.scalars(active_experts(scope=scope).where(func.lower(Expert.email) == email).limit(5)))
    if not experts:
        raise ServiceError(f"Aucun expert actif de l'annuaire n'a l'adresse « {email} ».")
    if len(experts) > 1:
        choices = ", ".join(f"#{e.id} ({e.antenne.name})" for e in experts)
        raise ServiceError(
            f"« {email} » : plusieurs experts ont cette adresse (dans des antennes différentes) : {choices}. "
            f"Choisissez le bon dans la liste proposée, ou ajoutez son numéro, par exemple « {email} #{experts[0].id} »."
        )
    return experts[0]


def resolve_experts(text: str, *, scope: Scope | None = None) -> list[int]:
    """Several entries separated by « ; » or lines (an entry may hold several addresses):
    the ids of the experts they name, in order, once each."""
    ids: list[int] = []
    for entry in (part.strip() for part in re.split(r"[;\n]", text or "")):
        if not entry:
            continue
        names = [entry] if _NUMBER_AT_END.search(entry) or len(_EMAIL.findall(entry)) <= 1 else _EMAIL.findall(entry)
        for name in names:
            try:
                ids.append(resolve_expert(name, scope=scope).id)
            except ServiceError as error:
                raise _naming(name, error) from None
    return list(dict.fromkeys(ids))


def _naming(entry: str, error: ServiceError) -> ServiceError:
    """Among several entries, the refusal says which one it is about."""
    message = str(error)
    if message.startswith("«"):
        return error
    return ServiceError(f"« {entry} » : {message[:1].lower()}{message[1:]}")
