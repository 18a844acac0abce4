"""The one place that answers "may this user do that" and "which rows may this user see"
(one place, so no view can decide otherwise). Every back-office view asks it, through the secure base of ``app/admin/base.py``;
a refusal is a 403, and a record outside the user's scope is a 404 (its existence is private).

Who is who
----------
- **staff** (``role == "admin"``, not deleted): every view, every record, every right.
- **referent** (``role == "referent"``, not deleted, attached to a live institution): a
  partner who maintains their own part of the address book. An *institution referent* has
  only ``institution_id``; an *antenne referent* also has ``antenne_id`` (``services.users
  .check_scope`` fills the institution from the antenne) and sees that antenne only.
- **anonymous**, or anyone else: nothing (the views send them to the login page).

Each view declares ``referent_access`` (``"none"``, the default, ``"read"`` or ``"write"``):
the most a referent may do there. The rights per model below narrow it further, so a view
declared ``"write"`` by mistake cannot make institutions writable.

=========================  ==================  ===========================  =====================
view (endpoint)            referent_access     institution referent         antenne referent
=========================  ==================  ===========================  =====================
home (``admin``)           read                their page (scoped counts)   same
institution                read                their institution, read      their institution, read
antenne                    write               their institution's          their antenne:
                                               antennes: create, edit,      edit only
                                               delete / restore
expert                     write               experts of those antennes:   experts of their
                                               create, edit (subjects,      antenne: same rights
                                               zone), delete
institution_subject        write               their institution's offer:   read only
                                               create, edit, delete
theme, subject             read                the whole catalog, read      same
need                       read                needs with a match for one   same, their antenne's
                                               of their experts             experts
match                      read                matches of their experts     same
addressbook_import         write               their institution's experts  their antenne's
coverage, exports          read                their own (the pages scope   same
                                               through the services)
solicitation, user,        none                —                            —
journal, outbox,
inbound_messages,
routing
=========================  ==================  ===========================  =====================

Endpoints: on a model view, Flask-Admin's reading endpoints (list, details, export,
autocomplete) need access and its writing ones (create, edit, delete, actions, in-list edit)
``"write"`` plus the right. An endpoint a view adds of its own (a desk button, a suggestion
list) is staff's unless the view names it in ``referent_endpoints``. On a page of its own (no
model), GET needs access and any other method ``"write"``, unless named the same way.

"Delete" covers the views' soft-delete and restore actions: a referent may run a view's
actions only where they may delete. Writes are checked twice: the view must allow the right
(:func:`can_create`, :func:`can_edit`, :func:`can_delete`), and the record as it would be
saved must stay inside the scope (:func:`check_record`), so a forged form cannot move an expert
into another institution's antenne. Lists, counts, exports, autocompletes, select options and
direct URLs all read rows through :func:`scope_query`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from sqlalchemy import event, false, func, or_, select

from app.extensions import db
from app.models import (
    Antenne,
    Expert,
    ExpertSubject,
    Institution,
    InstitutionSubject,
    Match,
    Need,
    OfferExpectation,
    RoutingFilter,
    RoutingFilterSubject,
    Subject,
    Theme,
    Zone,
)
from app.services.errors import ServiceError

NONE, READ, WRITE = "none", "read", "write"
ACCESS_LEVELS = (NONE, READ, WRITE)
CREATE, EDIT, DELETE = "create", "edit", "delete"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_ALL = frozenset({CREATE, EDIT, DELETE})
# What a referent may write, per model and kind of referent ("institution" or "antenne").
# A model absent from this table is read-only (or invisible) for every referent.
REFERENT_RIGHTS: dict[type, dict[str, frozenset[str]]] = {
    Antenne: {"institution": _ALL, "antenne": frozenset({EDIT})},
    Expert: {"institution": _ALL, "antenne": _ALL},
    InstitutionSubject: {"institution": _ALL, "antenne": frozenset()},
    # Written through the expert and antenne forms (subjects, zones), never from a view of their own.
    ExpertSubject: {"institution": _ALL, "antenne": _ALL},
    Zone: {"institution": _ALL, "antenne": _ALL},
    # Routing filters (issue 14): an antenne referent writes its antenne's and its experts'.
    RoutingFilter: {"institution": _ALL, "antenne": _ALL},
    RoutingFilterSubject: {"institution": _ALL, "antenne": _ALL},
    # The answers an institution takes on a subject belong to its offer.
    OfferExpectation: {"institution": _ALL, "antenne": frozenset()},
}

# The models whose rows carry a scope: every one a referent's request writes is checked.
SCOPED_MODELS = (
    Institution,
    Antenne,
    Expert,
    InstitutionSubject,
    ExpertSubject,
    Zone,
    RoutingFilter,
    RoutingFilterSubject,
    OfferExpectation,
)

# Reference data every referent reads whole: they pick subjects for their experts.
_SHARED_READ_ONLY = (Theme, Subject)


# ---------------------------------------------------------------- who is who


def is_staff(user: Any) -> bool:
    return bool(user is not None and user.is_authenticated and getattr(user, "is_admin", False))


def is_referent(user: Any) -> bool:
    """An active referent whose institution (and antenne, if any) still exists.

    A referent left without a live scope sees nothing rather than something unexpected.
    """
    if user is None or not user.is_authenticated or getattr(user, "role", None) != "referent":
        return False
    if not getattr(user, "is_active", False) or user.institution_id is None:
        return False
    if user.institution is None or user.institution.deleted_at is not None:
        return False
    if user.antenne_id is not None:
        antenne = user.antenne
        if antenne is None or antenne.deleted_at is not None or antenne.institution_id != user.institution_id:
            return False
    return True


def referent_kind(user: Any) -> str | None:
    """``"institution"`` or ``"antenne"`` for a referent, ``None`` for anyone else."""
    if not is_referent(user):
        return None
    return "antenne" if user.antenne_id is not None else "institution"


def referent_scope(user: Any) -> Institution | Antenne | None:
    """The part of the address book ``user`` looks after: ``None`` (all of it) for staff, the
    antenne of an antenne referent, the institution of an institution referent. Anyone else,
    a referent whose institution or antenne is gone included, is refused."""
    if is_staff(user):
        return None
    if not is_referent(user):
        raise ServiceError("Votre compte n'est rattaché à aucune institution active : contactez l'équipe support.")
    return user.antenne if user.antenne_id is not None else user.institution


def can_access_backoffice(user: Any) -> bool:
    """May ``user`` enter the back office at all (staff, and referents for their own part)."""
    return is_staff(user) or is_referent(user)


def can_manage(user: Any, model: type) -> bool:
    """Staff manage every record of the back office; referents only through the rights above."""
    return is_staff(user)


# ---------------------------------------------------------------- views


def access_level(user: Any, view: Any) -> str:
    """``"write"`` for staff, the view's ``referent_access`` for a referent, else ``"none"``."""
    if is_staff(user):
        return WRITE
    if is_referent(user):
        declared = getattr(view, "referent_access", NONE)
        return declared if declared in ACCESS_LEVELS else NONE
    return NONE


def can_access_view(user: Any, view: Any) -> bool:
    """May ``user`` open this back-office view at all (its ``referent_access`` says for referents)."""
    return access_level(user, view) != NONE


def _model_of(target: Any) -> type | None:
    return target if isinstance(target, type) else getattr(target, "model", None)


def _may(user: Any, target: Any, right: str) -> bool:
    """``right`` on a view (its declaration caps it) or on a model (the table alone decides)."""
    if is_staff(user):
        return True
    kind = referent_kind(user)
    if kind is None:
        return False
    if not isinstance(target, type) and access_level(user, target) != WRITE:
        return False
    model = _model_of(target)
    return right in REFERENT_RIGHTS.get(model, {}).get(kind, frozenset())


def can_create(user: Any, target: Any) -> bool:
    return _may(user, target, CREATE)


def can_edit(user: Any, target: Any) -> bool:
    return _may(user, target, EDIT)


def can_delete(user: Any, target: Any) -> bool:
    return _may(user, target, DELETE)


def can_export(user: Any, view: Any) -> bool:
    """Whoever reads a list may export it: the export goes through the same scoped query."""
    return can_access_view(user, view)


def can_run_action(user: Any, view: Any, name: str | None) -> bool:
    """The list actions are soft deletes and their undo (or staff verbs): a referent needs
    the delete right on the view."""
    if is_staff(user):
        return True
    return can_delete(user, view)


# Flask-Admin's own endpoints of a model view: those that read, and those that write (each
# write then asks its right: create, edit, delete or an action).
_READ_ENDPOINTS = frozenset({"index", "index_view", "details_view", "export", "ajax_lookup"})
_WRITE_ENDPOINTS = frozenset({"create_view", "edit_view", "delete_view", "action_view", "ajax_update"})


def can_call(user: Any, view: Any, endpoint: str, method: str) -> bool:
    """The last word on any request to a view, before the view runs.

    For a referent: Flask-Admin's reading endpoints need access, its writing ones ``"write"``.
    Any other endpoint (a desk button, a suggestion list added to a model view) is staff's
    unless the view names it in ``referent_endpoints``; on a page of its own (no model), GET
    needs access and other methods ``"write"``, again unless the page names the endpoint.
    """
    level = access_level(user, view)
    if level == NONE:
        return False
    if is_staff(user):
        return True
    if endpoint in getattr(view, "referent_endpoints", ()):
        return True
    safe = method.upper() in _SAFE_METHODS
    if getattr(view, "model", None) is None:
        return safe or level == WRITE
    if endpoint in _READ_ENDPOINTS:
        return safe
    if endpoint in _WRITE_ENDPOINTS:
        return level == WRITE
    return False


# ---------------------------------------------------------------- rows


def _antenne_condition(user: Any):
    if user.antenne_id is not None:
        return Antenne.id == user.antenne_id
    return Antenne.institution_id == user.institution_id


def _antenne_ids(user: Any):
    return select(Antenne.id).where(_antenne_condition(user))


def _expert_condition(user: Any):
    if user.antenne_id is not None:
        return Expert.antenne_id == user.antenne_id
    return Expert.antenne_id.in_(_antenne_ids(user))


def _expert_ids(user: Any):
    return select(Expert.id).where(_expert_condition(user))


def _filter_condition(user: Any):
    """The filters a referent holds: their antennes' and experts', and their institution's
    for an institution referent (an antenne referent does not write the institution's rule)."""
    held = [RoutingFilter.antenne_id.in_(_antenne_ids(user)), RoutingFilter.expert_id.in_(_expert_ids(user))]
    if user.antenne_id is None:
        held.append(RoutingFilter.institution_id == user.institution_id)
    return or_(*held)


def _referent_condition(user: Any, model: type):
    """The WHERE clause of the rows of ``model`` a referent sees, or ``None`` for all of them."""
    if model is Institution:
        return Institution.id == user.institution_id
    if model is Antenne:
        return _antenne_condition(user)
    if model is Expert:
        return _expert_condition(user)
    if model is InstitutionSubject:
        return InstitutionSubject.institution_id == user.institution_id
    if model is ExpertSubject:
        return ExpertSubject.expert_id.in_(_expert_ids(user))
    if model is Zone:
        return or_(Zone.antenne_id.in_(_antenne_ids(user)), Zone.expert_id.in_(_expert_ids(user)))
    if model is RoutingFilter:
        return _filter_condition(user)
    if model is RoutingFilterSubject:
        return RoutingFilterSubject.routing_filter_id.in_(select(RoutingFilter.id).where(_filter_condition(user)))
    if model is OfferExpectation:
        return OfferExpectation.institution_subject_id.in_(
            select(InstitutionSubject.id).where(InstitutionSubject.institution_id == user.institution_id)
        )
    if model is Match:
        return Match.expert_id.in_(_expert_ids(user))
    if model is Need:
        return Need.id.in_(select(Match.need_id).where(Match.expert_id.in_(_expert_ids(user))))
    if model in _SHARED_READ_ONLY:
        return None
    return false()


def scope_query(user: Any, model: type, query: Any) -> Any:
    """Restrict ``query`` (a ``Select`` or a legacy ``Query`` over ``model``) to the rows
    ``user`` may see: staff everything, a referent their part, anyone else nothing."""
    if is_staff(user):
        return query
    if not is_referent(user):
        return query.where(false())
    condition = _referent_condition(user, model)
    return query if condition is None else query.where(condition)


def in_scope(user: Any, record: Any) -> bool:
    """Whether ``record`` (already stored) is one ``user`` may see."""
    model = type(record)
    pk = model.__mapper__.primary_key[0]
    ident = getattr(record, pk.key)
    if ident is None:
        return False
    return db.session.scalar(scope_query(user, model, select(pk).where(pk == ident))) is not None


def count_visible(user: Any, model: type, *conditions: Any) -> int:
    """How many rows of ``model`` (matching ``conditions``) ``user`` sees: a referent's figures
    are counted through the same scope as their lists, never globally."""
    query = select(func.count()).select_from(model).where(*conditions)
    return db.session.scalar(scope_query(user, model, query)) or 0


# ---------------------------------------------------------------- writes


_RIGHT_WORDS = {CREATE: "créer", EDIT: "modifier", DELETE: "supprimer"}
_MODEL_WORDS = {
    Institution: "des institutions",
    Antenne: "des antennes",
    RoutingFilter: "des filtres de mise en relation",
    Expert: "des experts",
    InstitutionSubject: "l'offre de l'institution",
}


def _refusal(right: str, model: type) -> ServiceError:
    what = _MODEL_WORDS.get(model, "cet élément")
    return ServiceError(f"Vous n'avez pas le droit de {_RIGHT_WORDS.get(right, right)} {what}.")


def _related_id(record: Any, relation: str) -> Any:
    """The id ``record`` points to through ``relation``, as the next flush will store it: the
    related object when one is set (a form sets the relationship, not the column), else the column."""
    related = getattr(record, relation)
    return related.id if related is not None else getattr(record, f"{relation}_id")


def _check_institution(user: Any, record: Any) -> None:
    if _related_id(record, "institution") != user.institution_id:
        raise ServiceError("Vous ne pouvez rattacher cet élément qu'à votre institution.")


def _check_antenne(user: Any, expert: Any) -> None:
    """The antenne an expert is attached to must be one the referent manages."""
    antenne = expert.antenne
    if antenne is None and expert.antenne_id is not None:
        antenne = db.session.get(Antenne, expert.antenne_id)
    if antenne is None:
        raise ServiceError("Choisissez une antenne de votre périmètre.")
    # A new antenne of the same flush (an import) has its institution set, not yet its column.
    institution_id = _related_id(antenne, "institution")
    if institution_id != user.institution_id or (user.antenne_id is not None and antenne.id != user.antenne_id):
        raise ServiceError(
            "Cette antenne ne fait pas partie de votre périmètre : l'expert ne peut pas y être rattaché."
        )
    if antenne.deleted_at is not None:
        raise ServiceError("Cette antenne est supprimée : choisissez une antenne active.")


def check_record(user: Any, record: Any, right: str = EDIT) -> None:
    """Refuse (``ServiceError``, in French) a write that would leave ``user``'s scope.

    Called with the record as it is about to be saved (the form copied onto it), so what is
    checked is what would be stored, whatever the form offered.
    """
    if is_staff(user):
        return
    model = type(record)
    if referent_kind(user) is None or not _may(user, model, right):
        raise _refusal(right, model)
    with db.session.no_autoflush:
        if isinstance(record, Antenne):
            _check_institution(user, record)
            if user.antenne_id is not None and record.id != user.antenne_id:
                raise ServiceError("Vous ne pouvez modifier que votre antenne.")
        elif isinstance(record, Expert):
            _check_antenne(user, record)
        elif isinstance(record, InstitutionSubject):
            _check_institution(user, record)
        elif isinstance(record, ExpertSubject):
            expert = record.expert or db.session.get(Expert, record.expert_id)
            if expert is None:
                raise _refusal(right, model)
            _check_antenne(user, expert)
        elif isinstance(record, Zone):
            # A zone taken out of its owner's list has lost the relationship, not the column.
            owner = (
                record.antenne
                or record.expert
                or (db.session.get(Antenne, record.antenne_id) if record.antenne_id else None)
                or (db.session.get(Expert, record.expert_id) if record.expert_id else None)
            )
            if owner is None:
                raise _refusal(right, model)
            check_record(user, owner, EDIT)
        elif isinstance(record, RoutingFilter):
            _check_filter_holder(user, record)
        elif isinstance(record, RoutingFilterSubject):
            held = record.routing_filter or db.session.get(RoutingFilter, record.routing_filter_id)
            if held is None:
                raise _refusal(right, model)
            _check_filter_holder(user, held)
        elif isinstance(record, OfferExpectation):
            offer = record.offer or db.session.get(InstitutionSubject, record.institution_subject_id)
            if offer is None:
                raise _refusal(right, model)
            _check_institution(user, offer)
        else:  # pragma: no cover - the rights table names every writable model
            raise _refusal(right, model)


def _check_filter_holder(user: Any, record: Any) -> None:
    """A referent's filter is held by their institution (an institution referent), one of their
    antennes or one of their experts."""
    expert_id, antenne_id = _related_id(record, "expert"), _related_id(record, "antenne")
    if expert_id is not None:
        expert = record.expert or db.session.get(Expert, expert_id)
        if expert is None:
            raise ServiceError("Choisissez un expert de votre périmètre.")
        _check_antenne(user, expert)
    elif antenne_id is not None:
        antenne = record.antenne or db.session.get(Antenne, antenne_id)
        if antenne is None or antenne.institution_id != user.institution_id:
            raise ServiceError("Cette antenne ne fait pas partie de votre périmètre.")
        if user.antenne_id is not None and antenne.id != user.antenne_id:
            raise ServiceError("Vous ne pouvez filtrer que votre antenne et ses experts.")
    else:
        if user.antenne_id is not None:
            raise ServiceError("Les filtres de l'institution sont tenus par ses référents d'institution.")
        _check_institution(user, record)


# ---------------------------------------------------------------- every row a write touches

# The user whose back-office request or import is writing, inside ``guarded_writes``.
_writer: ContextVar[Any] = ContextVar("backoffice_writer", default=None)


def _check_flush(session: Any, _flush_context: Any, _instances: Any) -> None:
    """Each address-book row a referent's save is about to write (the record, and what the
    view's hook or service verb adds: subjects, zones, an institution's offer) must be one the
    policy lets them write, inside their scope."""
    user = _writer.get()
    if user is None:
        return
    for obj in list(session.new):
        if isinstance(obj, SCOPED_MODELS):
            check_record(user, obj, CREATE)
    for obj in list(session.dirty):
        if isinstance(obj, SCOPED_MODELS) and session.is_modified(obj, include_collections=False):
            check_record(user, obj, EDIT)
    for obj in list(session.deleted):
        if isinstance(obj, SCOPED_MODELS):
            check_record(user, obj, DELETE if not isinstance(obj, (Zone, ExpertSubject)) else EDIT)


@contextmanager
def guarded_writes(user: Any) -> Iterator[None]:
    """Check every flush inside the block against ``user``'s rights (staff: nothing to check):
    a view's save or action, and the address-book import, whatever rows they add on the way."""
    if is_staff(user):
        yield
        return
    session_cls = db.session.session_factory.class_
    if not event.contains(session_cls, "before_flush", _check_flush):
        event.listen(session_cls, "before_flush", _check_flush)
    token = _writer.set(getattr(user, "_get_current_object", lambda: user)())
    try:
        yield
    finally:
        _writer.reset(token)
