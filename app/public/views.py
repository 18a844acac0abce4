"""Public pages (no account): the catalog, one request form per subject, its confirmation,
and the health check. Views only translate HTTP to the services and back."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from flask import current_app, jsonify, make_response, redirect, render_template, request, url_for
from flask_wtf.csrf import CSRFError
from sqlalchemy import select, text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import contains_eager
from werkzeug.exceptions import NotFound

from app.extensions import db, limiter, rq
from app.models import Landing, Subject, Theme
from app.public import bp
from app.public.forms import BOT_MESSAGE, SolicitationForm, embedded_post_allowed, sign_served_at, submission_key
from app.services.errors import ServiceError
from app.services.reference.questions import clean_answers, questions_of
from app.services.requests.solicitations import SolicitationInput, already_submitted, submit_solicitation
from app.services.requests.validation import clean_tracking
from app.services.transactions import transaction

log = logging.getLogger(__name__)

TRACKING_PARAMS = ("mtm_campaign", "mtm_kwd", "mtm_source")


def _form_rate_limit() -> str:
    return current_app.config.get("PUBLIC_FORM_RATE_LIMIT") or "5 per minute; 20 per hour"


# ---------------------------------------------------------------- catalog


@bp.route("/")
def index():
    themes = db.session.scalars(
        select(Theme).where(Theme.archived_at.is_(None)).order_by(Theme.position, Theme.label)
    ).all()
    subjects = db.session.scalars(
        select(Subject).where(Subject.is_offered).order_by(Subject.position, Subject.label)
    ).all()
    by_theme: dict[int, list[Subject]] = {}
    for subject in subjects:
        by_theme.setdefault(subject.theme_id, []).append(subject)
    return render_template("public/index.html", themes=themes, by_theme=by_theme)


def _offered_subject(slug: str) -> Subject:
    """The subject of a form, while it is offered (neither it nor its theme archived)."""
    subject = db.session.scalar(
        select(Subject)
        .join(Subject.theme)
        .options(contains_eager(Subject.theme))
        .where(Subject.slug == slug, Subject.is_offered)
    )
    if subject is None:
        raise NotFound()
    return subject


# ---------------------------------------------------------------- the request form


def _tracking() -> dict[str, str]:
    """Campaign parameters of the page's address, kept through the form's action URL."""
    values = {name: clean_tracking(request.args.get(name)) for name in TRACKING_PARAMS}
    return {name: value for name, value in values.items() if value}


def _posted_answers() -> dict[str, str]:
    """The radios of the subject's questions, named ``q-<key>``."""
    return {name[2:]: value for name, value in request.form.items() if name.startswith("q-")}


@dataclass
class FormPlace:
    """Where a request form is shown: the site's own page, a partner's landing page, or a
    partner's frame (issue 16). The same flow serves them all; only this differs."""

    # What the form's signed copy is bound to (its subject, and a landing's slug).
    form_key: str
    confirmation_url: str
    layout: str = "base_public.html"
    back_url: str | None = None
    # Parameters kept through the form's action URL (campaign, embedding page).
    carried: dict[str, str] = field(default_factory=dict)
    title: str | None = None
    landing: Landing | None = None
    channel: str = "site"
    origin_url: str | None = None
    # A frame cannot count on our cookies (``partners.views``): CSRF is checked without them.
    embedded: bool = False
    prefill: dict[str, str] = field(default_factory=dict)


def _render_form(
    subject: Subject,
    form: SolicitationForm,
    place: FormPlace,
    *,
    status: int = 200,
    general_errors=(),
    answer_errors=None,
):
    questions = questions_of(subject.id)
    answer_errors = answer_errors or {}
    return render_template(
        "public/request_form.html",
        subject=subject,
        form=form,
        place=place,
        layout=place.layout,
        action=url_for(request.endpoint, **(request.view_args or {}), **place.carried),
        general_errors=list(general_errors),
        questions=questions,
        posted_answers=_posted_answers(),
        answer_errors=answer_errors,
        # The summary links each unanswered question to its first radio button.
        answer_error_items=[(f"q-{q.key}-0", answer_errors[q.key]) for q in questions if q.key in answer_errors],
    ), status


@bp.route("/demande/<subject_slug>", methods=["GET", "POST"])
@limiter.limit(_form_rate_limit, methods=["POST"])
def request_form(subject_slug: str):
    subject = _offered_subject(subject_slug)
    place = FormPlace(
        form_key=subject.slug,
        confirmation_url=url_for("public.confirmation", subject_slug=subject.slug),
        back_url=url_for("public.index"),
        carried=_tracking(),
    )
    return form_flow(subject, place)


def form_flow(subject: Subject, place: FormPlace):
    """Show the form, or check and store what was posted, for any place the form is shown."""
    form = SolicitationForm(meta={"csrf": not place.embedded})
    if request.method == "GET":
        form.served_at.data = sign_served_at(place.form_key)
        for name, value in place.prefill.items():
            form[name].data = value
        return _render_form(subject, form, place)

    if place.embedded and not embedded_post_allowed(form.served_at.data, place.form_key):
        return csrf_error(None)
    if form.looks_like_a_bot(place.form_key):
        log.info("Formulaire public : envoi refusé (piège à robots) pour le sujet %s", subject.slug)
        form.telecopie.data = ""
        form.served_at.data = sign_served_at(place.form_key)
        return _render_form(subject, form, place, status=422, general_errors=[BOT_MESSAGE])

    # The subject's questions (issue 14): required radios, checked by the service's own rule.
    _answers, answer_errors = clean_answers(questions_of(subject.id), _posted_answers())
    if not form.validate() or answer_errors:
        form.telecopie.data = ""
        return _render_form(subject, form, place, status=422, answer_errors=answer_errors)

    values = form.cleaned.values
    key = submission_key(form.served_at.data, place.form_key)
    done = redirect(place.confirmation_url, 303)
    if already_submitted(key) is not None:
        return done  # this copy of the form was sent already: its confirmation, nothing stored
    try:
        with transaction():
            submit_solicitation(
                SolicitationInput(
                    subject_slug=subject.slug,
                    **values,
                    **_tracking(),
                    submission_key=key,
                    answers=_answers,
                    channel=place.channel,
                    landing_id=place.landing.id if place.landing else None,
                    origin_url=place.origin_url,
                )
            )
    except ServiceError as error:
        return _render_form(subject, form, place, status=422, general_errors=[str(error)])
    except IntegrityError:
        # The same copy posted twice at once: the other post stored it; this one stores nothing.
        if already_submitted(key) is None:
            raise
        return done
    # 303: the browser follows with a GET, so reloading the confirmation does not post again.
    return done


@bp.route("/demande/<subject_slug>/merci")
def confirmation(subject_slug: str):
    """What happens next. Nothing personal in the address: only the subject."""
    return confirmation_page(_offered_subject(subject_slug))


def confirmation_page(subject: Subject, *, layout: str = "base_public.html", partner=None, back_url: str | None = None):
    jdma_url = current_app.config.get("JDMA_URL") or ""
    parts = urlsplit(jdma_url)
    jdma_image = f"{parts.scheme}://{parts.netloc}/static/bouton-bleu.svg" if parts.netloc else None
    return render_template(
        "public/confirmation.html",
        subject=subject,
        jdma_url=jdma_url,
        jdma_image=jdma_image,
        layout=layout,
        partner=partner,
        back_url=back_url or url_for("public.index"),
    )


# ---------------------------------------------------------------- errors, in French


def _error_page(status: int, title: str, message: str, *, back_to_form: str | None = None):
    if request.path.startswith("/api/"):
        # The partners' API answers its errors as problem details, never as a page.
        from app.api.views import problem

        return problem(status, title, message)
    return render_template(
        "public/error.html", status=status, title=title, message=message, back_to_form=back_to_form
    ), status


@bp.app_errorhandler(400)
def bad_request(error):
    """A request no form can produce (``app.guards``), or one a view refused with a reason."""
    description = getattr(error, "description", "") or ""
    french = description if description and not description.startswith("The browser") else None
    return _error_page(
        400, "Requête invalide", french or "La requête envoyée n'est pas valide : revenez en arrière et réessayez."
    )


@bp.app_errorhandler(403)
def forbidden(_error):
    return _error_page(403, "Accès refusé", "Votre compte ne donne pas accès à cette page.")


@bp.app_errorhandler(405)
def method_not_allowed(error):
    body, status = _as_pair(_error_page(405, "Action impossible", "Cette adresse ne permet pas cette action."))
    response = make_response(body, status)
    if getattr(error, "valid_methods", None):
        response.headers["Allow"] = ", ".join(error.valid_methods)
    return response


def _as_pair(result):
    return result if isinstance(result, tuple) else (result, result.status_code)


@bp.app_errorhandler(500)
def internal_error(_error):
    db.session.rollback()
    return _error_page(
        500,
        "Une erreur est survenue",
        "Le service a rencontré un problème inattendu ; l'équipe est prévenue. Réessayez dans quelques instants.",
    )


@bp.app_errorhandler(404)
def not_found(_error):
    return _error_page(
        404,
        "Page introuvable",
        "Cette page n'existe pas ou n'est plus proposée. Choisissez un sujet sur la page d'accueil.",
    )


@bp.app_errorhandler(429)
def too_many_requests(_error):
    return _error_page(
        429,
        "Trop de demandes envoyées",
        "Vous avez envoyé beaucoup de demandes en peu de temps depuis cette connexion. "
        "Patientez quelques minutes avant de réessayer.",
        back_to_form=request.path if request.endpoint == "public.request_form" else None,
    )


@bp.app_errorhandler(CSRFError)
def csrf_error(_error):
    return _error_page(
        400,
        "Formulaire expiré",
        "Ce formulaire a expiré ou a été ouvert dans une autre session. "
        "Rechargez le formulaire, puis envoyez votre demande à nouveau.",
        back_to_form=request.full_path.rstrip("?") if request.endpoint == "public.request_form" else None,
    )


# ---------------------------------------------------------------- health


@bp.route("/healthz")
def healthz():
    checks: dict[str, str] = {}
    try:
        db.session.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception:  # noqa: BLE001 - any failure means "down" to the load balancer
        db.session.rollback()
        checks["database"] = "down"
    try:
        rq.queue.connection.ping()
        checks["queue"] = "ok"
    except Exception:  # noqa: BLE001
        checks["queue"] = "down"
    healthy = all(value == "ok" for value in checks.values())
    return jsonify(status="ok" if healthy else "down", **checks), 200 if healthy else 503
