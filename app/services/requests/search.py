"""Full-text search of the request lists (solicitations, needs, matches).

Each need and each solicitation carries a ``search_document``: the words staff search on
(company name, SIRET and SIREN, contact name, email, phone, description), lower-cased and
without accents. A ``before_flush`` listener keeps it current whatever the write path (the
public form, a staff action, a job), and ``reindex_all`` fills it for rows written before it
existed (``flask desk reindex``).

Why accents are removed in Python and not in SQL: PostgreSQL's ``unaccent`` is an extension
(not installed everywhere, and not ``IMMUTABLE``, so an expression index cannot call it).
Removing them with ``unicodedata`` from both the stored document and the typed query gives
the same words on both sides, so the plain GIN index on
``to_tsvector('french'::regconfig, search_document)`` answers the search, and « societe
generale » finds « Société Générale ». The French configuration then stems the words
(« recruter » finds « recrutement »), ignores stop words, and keeps emails and numbers whole.

Numbers are searched as prefixes (``to_tsquery('simple', '123456789:*')``, still through the
index): a SIREN finds its SIRET, the start of a phone number finds it, and a SIRET typed with
spaces (« 123 456 789 00012 ») is read as one number. Emails are stored whole and also as their
two halves, so a full address, its local part or its domain finds the row.

SQLite (the embedded default) has no full-text index: every word of the query must appear in
the document (``LIKE``), which on its volumes is instant.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cache, reduce
from typing import Any

from flask import Flask
from sqlalchemy import and_, event, func, inspect, literal_column, or_, select, update
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from app.extensions import db
from app.models import Company, Contact, Expert, Facility, Match, Need, Solicitation
from app.services.transactions import transaction

# Longest query read, and most terms kept from it: a pasted page must not become a
# thousand-term query.
MAX_QUERY_LENGTH = 200
MAX_TERMS = 12
REINDEX_BATCH = 2_000

_LIGATURES = str.maketrans({"œ": "oe", "æ": "ae"})
# Control characters (NUL included, which PostgreSQL refuses in text) read as spaces.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_SPACES = re.compile(r"\s+")
# A query made only of digits and the separators people type in numbers (SIRET with
# spaces, phone with dots) is one number.
_NUMBER_ONLY = re.compile(r"^\+?[\d\s./-]+$")
_DIGITS = re.compile(r"^\d+$")
_NON_DIGITS = re.compile(r"\D")


@cache
def _marks() -> re.Pattern:
    """The combining marks NFKD splits accents into, as one character class (the Basic
    Multilingual Plane holds every mark a name or an address uses)."""
    codes = [code for code in range(0x300, 0x10000) if unicodedata.combining(chr(code))]
    ranges = []
    for code in codes:
        if ranges and ranges[-1][1] == code - 1:
            ranges[-1][1] = code
        else:
            ranges.append([code, code])
    return re.compile("[" + "".join(f"{re.escape(chr(a))}-{re.escape(chr(b))}" for a, b in ranges) + "]")


def normalize(text: str | None) -> str:
    """Lower-case, accent-free, single-spaced text: how documents and queries compare."""
    if not text:
        return ""
    decomposed = unicodedata.normalize("NFKD", _CONTROL.sub(" ", text))
    stripped = decomposed if decomposed.isascii() else _marks().sub("", decomposed)
    return _SPACES.sub(" ", stripped.casefold().translate(_LIGATURES)).strip()


# ---------------------------------------------------------------- documents


def _email_words(email: str | None) -> list[str]:
    email = (email or "").strip()
    if "@" not in email:
        return [email]
    local, _, domain = email.rpartition("@")
    return [email, local, domain]


def _phone_words(phone: str | None) -> list[str]:
    """The phone as digits, and in its national form when written +33…."""
    digits = _NON_DIGITS.sub("", phone or "")
    if not digits:
        return []
    words = [digits]
    if digits.startswith("33") and len(digits) == 11:
        words.append("0" + digits[2:])
    return words


def _siret_words(siret: str | None) -> list[str]:
    digits = _NON_DIGITS.sub("", siret or "")
    return [digits, digits[:9]] if len(digits) > 9 else [digits]


def build_document(
    *,
    names: Iterable[str | None] = (),
    siret: str | None = None,
    email: str | None = None,
    phone: str | None = None,
    description: str | None = None,
) -> str:
    """The searchable text of one row, from plain values (the benchmark builds it this way too)."""
    parts: list[str | None] = [*names, *_siret_words(siret), *_email_words(email), *_phone_words(phone), description]
    return normalize(" ".join(part for part in parts if part))


def need_document(need: Any) -> str:
    facility = need.facility
    company = facility.company if facility is not None else None
    contact = need.contact
    return build_document(
        names=(company.name if company is not None else None, contact.full_name if contact is not None else None),
        siret=facility.siret if facility is not None else None,
        email=contact.email if contact is not None else None,
        phone=contact.phone if contact is not None else None,
        description=need.description,
    )


def solicitation_document(solicitation: Any) -> str:
    """The document of a request, or of any row carrying the same fields by name (the batch
    reindex selects needs' columns under these names)."""
    return build_document(
        names=(solicitation.company_name, solicitation.full_name),
        siret=solicitation.siret,
        email=solicitation.email,
        phone=solicitation.phone,
        description=solicitation.description,
    )


# What each document is made of: a change to one of these attributes recomputes it.
_NEED_FIELDS = ("description", "facility", "facility_id", "contact", "contact_id")
_SOLICITATION_FIELDS = ("full_name", "email", "phone", "siret", "company_name", "description")
_CONTACT_FIELDS = ("full_name", "email", "phone")
_FACILITY_FIELDS = ("siret", "company", "company_id")
_COMPANY_FIELDS = ("name",)


def _changed(obj: Any, fields: tuple[str, ...]) -> bool:
    attrs = inspect(obj).attrs
    return any(attrs[name].history.has_changes() for name in fields)


def _before_flush(session: Session, _flush_context: Any, _instances: Any) -> None:
    """Recompute the documents the pending changes make stale, inside the same flush.

    Related rows are read with autoflush off: a lazy load must not start the flush we are
    preparing. Needs whose contact, facility or company changed are looked up by id (rare:
    a contact's new phone, a company's registry name).
    """
    needs: set[Any] = set()
    solicitations: set[Any] = set()
    contact_ids: set[int] = set()
    facility_ids: set[int] = set()
    company_ids: set[int] = set()
    related_fields = {
        Contact: (_CONTACT_FIELDS, contact_ids),
        Facility: (_FACILITY_FIELDS, facility_ids),
        Company: (_COMPANY_FIELDS, company_ids),
    }
    with session.no_autoflush:
        for obj in session.new:
            if isinstance(obj, Need):
                needs.add(obj)
            elif isinstance(obj, Solicitation):
                solicitations.add(obj)
        for obj in session.dirty:
            if obj in session.deleted:
                continue
            if isinstance(obj, Need) and _changed(obj, _NEED_FIELDS):
                needs.add(obj)
            elif isinstance(obj, Solicitation) and _changed(obj, _SOLICITATION_FIELDS):
                solicitations.add(obj)
            elif obj.__class__ in related_fields and getattr(obj, "id", None) is not None:
                fields, ids = related_fields[obj.__class__]
                if _changed(obj, fields):
                    ids.add(obj.id)
        if contact_ids or facility_ids or company_ids:
            related = []
            if contact_ids:
                related.append(Need.contact_id.in_(contact_ids))
            if facility_ids:
                related.append(Need.facility_id.in_(facility_ids))
            if company_ids:
                related.append(Need.facility_id.in_(select(Facility.id).where(Facility.company_id.in_(company_ids))))
            needs.update(session.scalars(select(Need).where(or_(*related))))
        for need in needs:
            document = need_document(need)
            if need.search_document != document:
                need.search_document = document
        for solicitation in solicitations:
            document = solicitation_document(solicitation)
            if solicitation.search_document != document:
                solicitation.search_document = document


def init_app(app: Flask) -> None:
    # Listen on the Session class Flask-SQLAlchemy uses, once per process.
    session_cls = db.session.session_factory.class_
    if not event.contains(session_cls, "before_flush", _before_flush):
        event.listen(session_cls, "before_flush", _before_flush)


def reindex_all(
    batch_size: int = REINDEX_BATCH, progress: Callable[[str, int, int], None] | None = None
) -> dict[str, int]:
    """Recompute every document, ``batch_size`` rows per transaction; returns the rows changed.

    Rows are read as plain columns and written back with bulk UPDATEs by primary key, so a
    national volume neither fills the session nor writes an audit event per row (only the
    index changes). ``progress(table, done, total)`` is called after each batch.
    """

    def run(model: Any, label: str, columns: list[Any], joins: Callable[[Any], Any], build: Callable) -> int:
        total = db.session.scalar(select(func.count()).select_from(model)) or 0
        changed = done = 0
        last_id = 0
        while True:
            rows = db.session.execute(
                joins(select(model.id, model.search_document, *columns))
                .where(model.id > last_id)
                .order_by(model.id)
                .limit(batch_size)
            ).all()
            if not rows:
                break
            updates = []
            for row in rows:
                document = build(row)
                if document != row.search_document:
                    updates.append({"id": row.id, "search_document": document})
            if updates:
                with transaction():  # one batch, one commit: the command resumes where it stopped
                    db.session.execute(update(model), updates)
            changed += len(updates)
            done += len(rows)
            last_id = rows[-1].id
            if progress is not None:
                progress(label, done, total)
        return changed

    needs = run(
        Need,
        "besoins",
        [
            Company.name.label("company_name"),
            Facility.siret,
            Contact.full_name,
            Contact.email,
            Contact.phone,
            Need.description,
        ],
        lambda stmt: (
            stmt.join(Facility, Need.facility_id == Facility.id)
            .join(Company, Facility.company_id == Company.id)
            .join(Contact, Need.contact_id == Contact.id)
        ),
        solicitation_document,
    )
    solicitations = run(
        Solicitation,
        "sollicitations",
        [
            Solicitation.company_name,
            Solicitation.full_name,
            Solicitation.siret,
            Solicitation.email,
            Solicitation.phone,
            Solicitation.description,
        ],
        lambda stmt: stmt,
        solicitation_document,
    )
    return {"needs": needs, "solicitations": solicitations}


# ---------------------------------------------------------------- queries


@dataclass(frozen=True)
class SearchTerms:
    """A typed query, normalised like the documents: words, and numbers searched as prefixes."""

    words: tuple[str, ...]
    numbers: tuple[str, ...]
    # The typed terms lower-cased but with their accents, for columns stored as typed
    # (an expert's name).
    raw: tuple[str, ...]

    @property
    def all(self) -> tuple[str, ...]:
        return self.words + self.numbers


def parse_query(text: str | None) -> SearchTerms | None:
    """``None`` when nothing searchable was typed."""
    text = _CONTROL.sub(" ", (text or "")[:MAX_QUERY_LENGTH]).strip()
    if not text:
        return None
    if _NUMBER_ONLY.match(text) and any(char.isdigit() for char in text):
        digits = _NON_DIGITS.sub("", text)
        return SearchTerms(words=(), numbers=(digits,), raw=(digits,))
    words: list[str] = []
    numbers: list[str] = []
    for term in normalize(text).split(" ")[:MAX_TERMS]:
        (numbers if _DIGITS.match(term) else words).append(term)
    raw = tuple(_SPACES.sub(" ", text.casefold()).split(" ")[:MAX_TERMS])
    if not words and not numbers:
        return None
    return SearchTerms(words=tuple(words), numbers=tuple(numbers), raw=raw)


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def _like_pattern(term: str) -> str:
    escaped = term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def document_matches(column: Any, terms: SearchTerms) -> ColumnElement[bool]:
    """The condition on a ``search_document`` column, in the form its index answers."""
    if _dialect() == "postgresql":
        # The configuration is a literal, not a bound parameter: the planner matches the
        # expression of the GIN index only when it is spelled the same way.
        french = literal_column("'french'::regconfig")
        vector = func.to_tsvector(french, column)
        queries = []
        if terms.words:
            queries.append(func.plainto_tsquery(french, " ".join(terms.words)))
        queries.extend(
            func.to_tsquery(literal_column("'simple'::regconfig"), f"{number}:*") for number in terms.numbers
        )
        tsquery = reduce(lambda left, right: left.op("&&")(right), queries)
        return vector.op("@@")(tsquery)
    return and_(*(column.like(_like_pattern(term), escape="\\") for term in terms.all))


def _expert_matches(terms: SearchTerms) -> ColumnElement[bool]:
    conditions = []
    for raw in terms.raw:
        variants = {raw, normalize(raw)}
        conditions.append(
            or_(
                *(Expert.full_name.ilike(_like_pattern(v), escape="\\") for v in variants),
                *(Expert.email.ilike(_like_pattern(v), escape="\\") for v in variants),
            )
        )
    return and_(*conditions)


def _found_first(pk: Any, found: Any, name: str) -> ColumnElement[bool]:
    """``pk IN (the ids the search finds)``, found before anything else on PostgreSQL.

    A list is sorted by date and cut to a page. Asked for both at once, the planner may walk
    the date index and test the full-text condition row by row, recomputing ``to_tsvector``
    for each (15 s for a SIRET among 400,000 needs), because it cannot tell how rare a typed
    word is (a prepared statement's generic plan never can). A MATERIALIZED CTE makes it read
    the GIN index first, then fetch and sort only the rows found.
    """
    hits = found.cte(name).prefix_with("MATERIALIZED")
    return pk.in_(select(next(iter(hits.c))))


def search_condition(model: type, text: str | None) -> ColumnElement[bool] | None:
    """The WHERE condition of a list search on ``model``, or ``None`` when nothing was typed.

    Needs and solicitations search their document. Matches search their need's document, or
    the expert's name and email; the two are united as match ids, so PostgreSQL reads each
    side through its index instead of scanning every match.
    """
    terms = parse_query(text)
    if terms is None:
        return None
    postgresql = _dialect() == "postgresql"
    if model in (Need, Solicitation):
        condition = document_matches(model.search_document, terms)
        if not postgresql:
            return condition
        return _found_first(model.id, select(model.id).where(condition), f"{model.__tablename__}_found")
    if model is Match:
        by_need = select(Match.id).where(
            Match.need_id.in_(select(Need.id).where(document_matches(Need.search_document, terms)))
        )
        by_expert = select(Match.id).where(Match.expert_id.in_(select(Expert.id).where(_expert_matches(terms))))
        if not postgresql:
            return Match.id.in_(by_need.union(by_expert))
        return _found_first(Match.id, by_need.union(by_expert), "matches_found")
    raise ValueError(f"no search for {model!r}")
