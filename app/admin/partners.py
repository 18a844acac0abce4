"""Back-office views of the partners' channels (issue 16), under « Partenaires »:

- « Partenaires » and « Landings » (staff): the origins allowed to embed are typed one per line
  and normalised by ``services.partners.landings``; a landing's page shows the snippet to paste
  for each of its four embedded shapes, and can be paused;
- « Clés d'API »: staff and an institution's referent create (shown once), list and revoke keys;
- « Saisir une demande »: staff and referents file a request for a business, through the same
  service verb and checks as the public form, optionally to experts they choose (within their scope).
"""

from __future__ import annotations

from typing import Any

from flask import abort, flash, redirect, request, url_for
from flask_admin import Admin, expose
from flask_admin.actions import action
from flask_admin.contrib.sqla.fields import QuerySelectMultipleField
from flask_login import current_user
from sqlalchemy import select
from sqlalchemy.orm import selectinload
from wtforms import TextAreaField
from wtforms.validators import URL, Optional, ValidationError

from app import policy
from app.admin.base import SecureBaseView, SecureModelView
from app.admin.catalog import SLUG_VALIDATOR
from app.extensions import db
from app.models import (
    ApiKey,
    Expert,
    ExpertSubject,
    Institution,
    InstitutionSubject,
    Landing,
    LandingSubject,
    Partner,
    Subject,
    Theme,
)
from app.models.base import INTEGER_MAX
from app.services.audit import acting_as, actor_label
from app.services.errors import ServiceError
from app.services.partners.apikeys import DEFAULT_VALID_DAYS, MAX_VALID_DAYS, create_key, key_state, revoke
from app.services.partners.landings import parse_origins, pause, resume
from app.services.reference.questions import questions_of
from app.services.requests.solicitations import (
    ANSWER_PREFIX,
    InvalidSolicitation,
    SolicitationInput,
    submit_solicitation,
)
from app.services.requests.validation import FIELDS
from app.services.transactions import transaction


def _origins_validator(_form: Any, field: Any) -> None:
    try:
        field.data = "\n".join(parse_origins(field.data or ""))
    except ServiceError as error:
        raise ValidationError(str(error)) from error


def _logo_validator(_form: Any, field: Any) -> None:
    value = (field.data or "").strip()
    if value and not (value.startswith("https://") or value.startswith("/static/")):
        raise ValidationError("Le logo est une adresse https:// (ou un fichier /static/ de ce site).")


class PartnerView(SecureModelView):
    column_list = ["name", "institution", "origins", "landings"]
    column_details_list = ["name", "institution", "logo_url", "origins", "landings", "created_at"]
    column_labels = {
        "name": "Nom",
        "institution": "Institution",
        "logo_url": "Logo",
        "origins": "Sites autorisés à intégrer",
        "landings": "Landings",
        "created_at": "Créé le",
    }
    column_searchable_list = ["name"]
    column_formatters = {
        "origins": lambda v, c, m, n: ", ".join(m.origins or []) or "Aucun (intégration refusée partout)",
        "landings": lambda v, c, m, n: ", ".join(landing.slug for landing in m.landings) or "—",
    }
    list_loader_options = (lambda: selectinload(Partner.institution), lambda: selectinload(Partner.landings))
    form_columns = ["name", "institution", "logo_url", "origins_text"]
    form_args = {
        "name": {"label": "Nom"},
        "institution": {
            "label": "Institution (facultatif)",
            "query_factory": lambda: (
                db.session.query(Institution).filter(Institution.deleted_at.is_(None)).order_by(Institution.name)
            ),
        },
        "logo_url": {
            "label": "Logo (adresse https)",
            "validators": [Optional(), URL(message="Adresse invalide."), _logo_validator],
        },
    }
    form_extra_fields = {
        "origins_text": TextAreaField(
            "Sites autorisés à intégrer les landings",
            validators=[_origins_validator],
            description="Une origine par ligne, par exemple https://www.exemple.fr (sans chemin). "
            "Seuls ces sites peuvent afficher les formulaires dans une iframe.",
        )
    }

    def on_form_prefill(self, form: Any, id: Any) -> None:
        super().on_form_prefill(form, id)
        if request.method == "GET":
            form.origins_text.data = "\n".join(self.get_one(id).origins or [])

    def on_model_change(self, form: Any, model: Partner, is_created: bool) -> None:
        model.origins = [line for line in (form.origins_text.data or "").splitlines() if line]
        model.name = (model.name or "").strip()


def _subjects_query():
    return (
        db.session.query(Subject)
        .join(Subject.theme)
        .filter(Subject.archived_at.is_(None), Theme.archived_at.is_(None))
        .order_by(Theme.position, Subject.position)
    )


def _parse_titles(text: str, slugs: set[str]) -> dict[str, str]:
    titles: dict[str, str] = {}
    for number, line in enumerate((text or "").splitlines(), start=1):
        if not line.strip():
            continue
        slug, sep, title = line.partition("=")
        slug, title = slug.strip(), title.strip()
        if not sep or not title:
            raise ValidationError(f"Ligne {number} : écrivez « identifiant-du-sujet = Titre ».")
        if slug not in slugs:
            raise ValidationError(f"Ligne {number} : « {slug} » n'est pas un sujet choisi pour cette landing.")
        if len(title) > 200:
            raise ValidationError(f"Ligne {number} : le titre dépasse 200 caractères.")
        titles[slug] = title
    return titles


class LandingView(SecureModelView):
    details_template = "admin/landing_details.html"
    column_list = ["slug", "title", "partner", "subjects", "paused_at"]
    column_details_list = ["slug", "title", "partner", "intro", "banner", "subjects", "paused_at", "created_at"]
    column_labels = {
        "slug": "Identifiant",
        "title": "Titre",
        "partner": "Partenaire",
        "intro": "Introduction",
        "banner": "Bandeau",
        "subjects": "Sujets",
        "paused_at": "En pause depuis",
        "created_at": "Créée le",
    }
    column_searchable_list = ["slug", "title"]
    column_formatters = {"subjects": lambda v, c, m, n: ", ".join(item.label for item in m.subjects)}
    list_loader_options = (
        lambda: selectinload(Landing.partner),
        lambda: selectinload(Landing.subjects).selectinload(LandingSubject.subject),
    )
    form_columns = ["partner", "slug", "title", "intro", "banner", "landing_subjects", "subject_titles"]
    form_args = {
        "partner": {"label": "Partenaire", "query_factory": lambda: db.session.query(Partner).order_by(Partner.name)},
        "slug": {"label": "Identifiant (dans l'adresse)", "validators": [SLUG_VALIDATOR]},
        "title": {"label": "Titre"},
        "intro": {"label": "Introduction (facultatif)"},
        "banner": {"label": "Bandeau d'information (facultatif)"},
    }
    form_extra_fields = {
        "landing_subjects": QuerySelectMultipleField(
            "Sujets proposés",
            query_factory=_subjects_query,
            get_label=lambda s: f"{s.theme.label} — {s.label}",
        ),
        "subject_titles": TextAreaField(
            "Titres propres au partenaire (facultatif)",
            description="Une ligne par sujet renommé : identifiant-du-sujet = Titre.",
        ),
    }

    def on_form_prefill(self, form: Any, id: Any) -> None:
        super().on_form_prefill(form, id)
        if request.method == "GET":
            landing = self.get_one(id)
            form.landing_subjects.data = [item.subject for item in landing.subjects]
            form.subject_titles.data = "\n".join(f"{i.subject.slug} = {i.title}" for i in landing.subjects if i.title)

    def validate_form(self, form: Any) -> bool:
        valid = super().validate_form(form)
        if valid and hasattr(form, "landing_subjects"):
            chosen = list(form.landing_subjects.data or [])
            if not chosen:
                form.landing_subjects.errors = ["Choisissez au moins un sujet."]
                return False
            try:
                form.parsed_titles = _parse_titles(form.subject_titles.data, {s.slug for s in chosen})
            except ValidationError as error:
                form.subject_titles.errors = [str(error)]
                return False
        return valid

    def on_model_change(self, form: Any, model: Landing, is_created: bool) -> None:
        chosen = list(form.landing_subjects.data or [])
        titles = getattr(form, "parsed_titles", {})
        kept = {item.subject_id: item for item in model.subjects}
        model.subjects = []
        for position, subject in enumerate(chosen):
            item = kept.get(subject.id) or LandingSubject(subject=subject)
            item.position = position
            item.title = titles.get(subject.slug)
            model.subjects.append(item)

    @action(
        "pause",
        "Mettre en pause",
        "Mettre en pause les landings choisies ? Leurs formulaires ne recevront plus de demandes.",
    )
    def action_pause(self, ids: list[str]) -> None:
        self.run_action(ids, pause, "{count} landing(s) en pause.")

    @action("reprendre", "Remettre en route")
    def action_resume(self, ids: list[str]) -> None:
        self.run_action(ids, resume, "{count} landing(s) remise(s) en route.")

    def render(self, template: str, **kwargs: Any):
        if template == self.details_template and "model" in kwargs:
            landing = kwargs["model"]
            kwargs["embeds"] = embed_shapes(landing)
        return super().render(template, **kwargs)


def embed_shapes(landing: Landing) -> list[tuple[str, str]]:
    """The four embedded shapes of a landing: (what it shows, its address)."""
    items = [item for item in landing.subjects if item.subject.is_offered]
    shapes = [("Toute la landing", url_for("partners.embedded_landing", landing_slug=landing.slug, _external=True))]
    if items:
        first = items[0].subject
        shapes.append(
            (
                f"Un thème ({first.theme.label})",
                url_for(
                    "partners.embedded_theme", landing_slug=landing.slug, theme_slug=first.theme.slug, _external=True
                ),
            )
        )
        shapes.append(
            (
                "Une liste de sujets",
                url_for(
                    "partners.embedded_subjects",
                    landing_slug=landing.slug,
                    sujet=[item.subject.slug for item in items[:3]],
                    _external=True,
                ),
            )
        )
        shapes.append(
            (
                f"Le formulaire d'un sujet ({items[0].label})",
                url_for("partners.embedded_form", landing_slug=landing.slug, subject_slug=first.slug, _external=True),
            )
        )
    return shapes


# ---------------------------------------------------------------- API keys


def _may_manage_keys() -> bool:
    return policy.is_staff(current_user) or policy.referent_kind(current_user) == "institution"


class ApiKeysView(SecureBaseView):
    """Keys of the API. A referent of an institution manages its own; an antenne's referent has none."""

    referent_access = "write"

    def is_visible(self) -> bool:
        return _may_manage_keys()

    def _keys(self) -> list[ApiKey]:
        query = select(ApiKey).options(selectinload(ApiKey.institution), selectinload(ApiKey.created_by))
        if not policy.is_staff(current_user):
            query = query.where(ApiKey.institution_id == current_user.institution_id)
        return list(db.session.scalars(query.order_by(ApiKey.created_at.desc())))

    def _institutions(self) -> list[Institution]:
        if not policy.is_staff(current_user):
            return [current_user.institution]
        return list(
            db.session.scalars(select(Institution).where(Institution.deleted_at.is_(None)).order_by(Institution.name))
        )

    def _page(self, *, created=None, error: str | None = None, status: int = 200, values=None):
        return self.render(
            "admin/api_keys.html",
            keys=self._keys(),
            institutions=self._institutions(),
            created=created,
            error=error,
            values=values or {"valid_days": DEFAULT_VALID_DAYS},
            key_state=key_state,
            max_days=MAX_VALID_DAYS,
        ), status

    @expose("/")
    def index(self):
        if not _may_manage_keys():
            abort(403)
        return self._page()

    @expose("/creer", methods=["POST"])
    def create(self):
        if not _may_manage_keys():
            abort(403)
        values = {name: request.form.get(name, "").strip() for name in ("institution", "valid_days", "label")}
        try:
            institution = next((i for i in self._institutions() if str(i.id) == values["institution"]), None)
            if institution is None:
                raise ServiceError("Choisissez l'institution de la clé.")
            try:
                days = int(values["valid_days"])
            except ValueError:
                raise ServiceError(f"La durée de validité est un nombre de jours, de 1 à {MAX_VALID_DAYS}.") from None
            with transaction(), acting_as(actor_label(current_user), current_user.id):
                made = create_key(institution, valid_days=days, label=values["label"], created_by_id=current_user.id)
        except ServiceError as error:
            return self._page(error=str(error), status=422, values=values)
        # Shown here once (never put in a flash message or a redirect: nothing keeps it).
        return self._page(created=made)

    @expose("/<int:key_id>/revoquer", methods=["POST"])
    def revoke_key(self, key_id: int):
        if not _may_manage_keys():
            abort(403)
        if key_id > INTEGER_MAX:
            abort(404)
        key = next((k for k in self._keys() if k.id == key_id), None)
        if key is None:
            abort(404)
        with transaction(), acting_as(actor_label(current_user), current_user.id):
            changed = revoke(key)
        flash(f"Clé {key.prefix}… révoquée." if changed else "Cette clé était déjà révoquée.", "success")
        return redirect(url_for(".index"), 303)


# ---------------------------------------------------------------- filing for a business


class FileRequestView(SecureBaseView):
    """« Saisir une demande »: what a business said on the phone or at a desk, filed for it."""

    referent_access = "write"

    def _experts(self, subject: Subject | None) -> list[Expert]:
        """The experts one may choose directly: active, offering the subject, in one's scope."""
        if subject is None:
            return []
        query = (
            select(Expert)
            .where(
                Expert.deleted_at.is_(None),
                Expert.id.in_(
                    select(ExpertSubject.expert_id)
                    .join(InstitutionSubject, InstitutionSubject.id == ExpertSubject.institution_subject_id)
                    .where(InstitutionSubject.subject_id == subject.id)
                ),
            )
            .options(selectinload(Expert.antenne))
            .order_by(Expert.full_name)
            .limit(300)
        )
        return list(db.session.scalars(policy.scope_query(current_user, Expert, query)))

    def _subject(self, slug: str) -> Subject | None:
        if not slug or len(slug) > 80:
            return None
        found = db.session.scalar(select(Subject).where(Subject.slug == slug))
        return found if found is not None and found.is_offered else None

    def _themes(self) -> list[tuple[Theme, list[Subject]]]:
        grouped: dict[int, tuple[Theme, list[Subject]]] = {}
        for subject in _subjects_query().options(selectinload(Subject.theme)):
            grouped.setdefault(subject.theme_id, (subject.theme, []))[1].append(subject)
        return list(grouped.values())

    def _page(self, subject, *, values=None, errors=None, answers=None, chosen=(), status=200, created=None):
        return self.render(
            "admin/file_request.html",
            themes=self._themes(),
            subject=subject,
            experts=self._experts(subject),
            questions=questions_of(subject.id) if subject else [],
            values=values or {},
            errors=errors or {},
            answers=answers or {},
            chosen={str(i) for i in chosen},
            created=created,
            fields=FIELDS,
        ), status

    @expose("/", methods=["GET", "POST"])
    def index(self):
        subject = self._subject(request.values.get("subject", "").strip())
        if request.method == "GET":
            return self._page(subject)
        if subject is None:
            return self._page(None, errors={"subject": "Choisissez un sujet proposé."}, status=422)
        values = {name: request.form.get(name, "") for name in FIELDS}
        answers = {key[2:]: value for key, value in request.form.items() if key.startswith("q-")}
        chosen = request.form.getlist("experts")
        allowed = {str(expert.id): expert.id for expert in self._experts(subject)}
        if any(ident not in allowed for ident in chosen):
            return self._page(
                subject,
                values=values,
                answers=answers,
                errors={"experts": "Un expert choisi ne fait pas partie de votre périmètre pour ce sujet."},
                status=422,
            )
        try:
            with transaction(), acting_as(actor_label(current_user), current_user.id):
                solicitation = submit_solicitation(
                    SolicitationInput(
                        subject_slug=subject.slug,
                        **values,
                        answers=answers,
                        channel="backoffice",
                        filed_by_id=current_user.id,
                        expert_ids=[allowed[ident] for ident in chosen] or None,
                    )
                )
                created = (solicitation.id, solicitation.status)
        except InvalidSolicitation as invalid:
            errors = {
                (f"q-{name[len(ANSWER_PREFIX) :]}" if name.startswith(ANSWER_PREFIX) else name): message
                for name, message in invalid.errors.items()
            }
            return self._page(subject, values=values, answers=answers, chosen=chosen, errors=errors, status=422)
        except ServiceError as error:
            return self._page(
                subject, values=values, answers=answers, chosen=chosen, errors={"general": str(error)}, status=422
            )
        return self._page(None, created=created)


def register(admin: Admin) -> None:
    admin.add_view(PartnerView(Partner, db, name="Partenaires", category="Partenaires", endpoint="partner"))
    admin.add_view(LandingView(Landing, db, name="Landings", category="Partenaires", endpoint="landing"))
    admin.add_view(ApiKeysView(name="Clés d'API", category="Partenaires", endpoint="api_keys", url="cles-api"))
    admin.add_view(
        FileRequestView(
            name="Saisir une demande", category="Demandes", endpoint="file_request", url="saisir-une-demande"
        )
    )
