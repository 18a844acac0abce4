"""The API's endpoints. Every call but the description is authenticated by its key (expiry and
revocation read each time), counted against the key's rate limit, and recorded in the audit
trail with its status. Errors are ``application/problem+json`` with a French ``detail``."""

from __future__ import annotations

import time
from typing import Any

from flask import current_app, g, jsonify, render_template, request, url_for
from limits import parse_many
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from app.api import bp
from app.api.spec import PROBLEM, openapi_spec
from app.extensions import db, limiter
from app.models import Landing, LandingSubject, Need, Partner, Solicitation, Subject
from app.models.base import INTEGER_MAX
from app.models.requests import NEED_STATUS_LABELS, SOLICITATION_STATUS_LABELS
from app.services.errors import ServiceError
from app.services.partners.apikeys import KeyRefused, authenticate, record_use
from app.services.partners.landings import clean_origin_url, find_landing, item_for, offered_items
from app.services.reference.questions import questions_of
from app.services.requests.solicitations import (
    ANSWER_PREFIX,
    InvalidSolicitation,
    SolicitationInput,
    submit_solicitation,
)
from app.services.requests.validation import FIELDS
from app.services.transactions import transaction

_OPEN_ENDPOINTS = {"api.openapi", "api.docs"}
_TEXT_FIELDS = (*FIELDS, "subject", "landing", "origin_url", "mtm_campaign", "mtm_kwd")
_REQUIRED = ("subject", "full_name", "email", "phone", "siret", "postal_code", "description", "origin_url")


def problem(status: int, title: str, detail: str | None = None, errors: dict[str, str] | None = None, headers=None):
    body: dict[str, Any] = {"type": "about:blank", "title": title, "status": status}
    if detail:
        body["detail"] = detail
    if errors:
        body["errors"] = errors
    response = jsonify(body)
    response.status_code = status
    response.mimetype = PROBLEM
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


# ---------------------------------------------------------------- every call


def _rate_limited(key_prefix: str) -> int | None:
    """Seconds to wait when the key went over ``API_RATE_LIMIT``, else None (and the call counted)."""
    if not limiter.enabled:
        return None
    strategy = limiter.limiter
    for item in parse_many(current_app.config.get("API_RATE_LIMIT") or "120 per minute"):
        if not strategy.hit(item, "api", key_prefix):
            reset_at, _remaining = strategy.get_window_stats(item, "api", key_prefix)
            return max(1, int(reset_at - time.time()))
    return None


@bp.before_request
def _authenticate():
    if request.endpoint in _OPEN_ENDPOINTS:
        return None
    try:
        key = authenticate(request.headers.get("Authorization"))
    except KeyRefused as refused:
        db.session.rollback()
        return problem(
            401, "Authentification requise", str(refused), headers={"WWW-Authenticate": 'Bearer realm="api"'}
        )
    g.api_key = key
    wait = _rate_limited(key.prefix)
    if wait is not None:
        return problem(
            429,
            "Trop d'appels",
            f"Cette clé a dépassé sa limite d'appels : réessayez dans {wait} secondes.",
            headers={"Retry-After": str(wait)},
        )
    return None


@bp.after_request
def _record(response):
    key = g.pop("api_key", None)
    if key is not None:
        try:
            with transaction():
                record_use(db.session.merge(key), request.method, request.path, response.status_code)
        except Exception:
            current_app.logger.exception("Appel d'API non journalisé")
    response.headers["Cache-Control"] = "no-store"
    return response


# ---------------------------------------------------------------- description


@bp.route("/openapi.json")
def openapi():
    return jsonify(openapi_spec(url_for("api.openapi", _external=True).rsplit("/", 1)[0]))


@bp.route("/docs")
def docs():
    spec = openapi_spec(url_for("api.openapi", _external=True).rsplit("/", 1)[0])
    return render_template("api/docs.html", spec=spec, schemas=spec["components"]["schemas"])


# ---------------------------------------------------------------- landings


def _landing_json(landing: Landing) -> dict[str, Any]:
    items = offered_items(landing)
    questions = {item.subject_id: questions_of(item.subject_id) for item in items}
    return {
        "slug": landing.slug,
        "title": landing.title,
        "partner": landing.partner.name,
        "paused": landing.is_paused,
        "url": url_for("partners.landing", landing_slug=landing.slug, _external=True),
        "iframe_url": url_for("partners.embedded_landing", landing_slug=landing.slug, _external=True),
        "subjects": [
            {
                "slug": item.subject.slug,
                "title": item.label,
                "theme": item.subject.theme.label,
                "questions": [
                    {"key": q.key, "label": q.label, "choices": list(q.choices)} for q in questions[item.subject_id]
                ],
            }
            for item in items
        ],
    }


@bp.route("/landings")
def landings():
    found = db.session.scalars(
        select(Landing)
        .join(Landing.partner)
        .where(Partner.institution_id == g.api_key.institution_id)
        .options(
            selectinload(Landing.partner),
            selectinload(Landing.subjects).selectinload(LandingSubject.subject).selectinload(Subject.theme),
        )
        .order_by(Landing.slug)
    ).all()
    return jsonify(landings=[_landing_json(landing) for landing in found])


# ---------------------------------------------------------------- solicitations


def _body() -> tuple[dict[str, Any] | None, Any]:
    if not request.is_json:
        return None, problem(
            415, "Format non pris en charge", "Envoyez le corps en JSON (Content-Type: application/json)."
        )
    body = request.get_json(silent=True)
    if not isinstance(body, dict):
        return None, problem(400, "Corps invalide", "Le corps de la requête doit être un objet JSON.")
    return body, None


def _shape_errors(body: dict[str, Any]) -> dict[str, str]:
    """What is missing or of the wrong type, before the form's own rules."""
    errors: dict[str, str] = {}
    for name in _TEXT_FIELDS:
        value = body.get(name)
        if value is not None and not isinstance(value, str):
            errors[name] = "Ce champ doit être une chaîne de caractères."
        elif value and "\x00" in value:
            errors[name] = "Ce champ contient un caractère nul, qui n'est pas accepté."
        elif name in _REQUIRED and not (value or "").strip():
            errors[name] = "Ce champ est obligatoire."
    answers = body.get("answers")
    if answers is not None and (not isinstance(answers, dict) or not all(isinstance(v, str) for v in answers.values())):
        errors["answers"] = "Les réponses sont un objet dont chaque valeur est une chaîne de caractères."
    if "origin_url" not in errors and not clean_origin_url(body.get("origin_url")):
        errors["origin_url"] = "Indiquez l'adresse (http ou https) de la page où la demande a été saisie."
    return errors


@bp.route("/solicitations", methods=["POST"])
def create_solicitation():
    body, refused = _body()
    if refused is not None:
        return refused
    errors = _shape_errors(body)
    landing = None
    if body.get("landing") and "landing" not in errors:
        landing = find_landing(body["landing"])
        if landing is None:
            return problem(
                404, "Landing inconnue", f"Aucune landing ne porte l'identifiant « {body['landing'][:80]} »."
            )
        if landing.partner.institution_id != g.api_key.institution_id:
            return problem(
                403, "Landing d'une autre institution", "Cette landing n'appartient pas à votre institution."
            )
        if landing.is_paused:
            return problem(
                409,
                "Landing en pause",
                f"La landing « {landing.slug} » est en pause : elle ne reçoit plus de demandes.",
            )
        if "subject" not in errors and item_for(landing, body["subject"]) is None:
            errors["subject"] = f"La landing « {landing.slug} » ne propose pas ce sujet."
    if "subject" not in errors:
        subject = db.session.scalar(select(Subject).where(Subject.slug == body["subject"].strip()))
        if subject is None or not subject.is_offered:
            errors["subject"] = "Sujet inconnu ou qui n'est plus proposé : voir GET /api/v1/landings."
    if errors:
        return problem(422, "Demande refusée", "Corrigez les champs indiqués.", errors=errors)
    try:
        with transaction():
            solicitation = submit_solicitation(
                SolicitationInput(
                    subject_slug=body["subject"],
                    **{name: body.get(name) or "" for name in FIELDS},
                    mtm_campaign=body.get("mtm_campaign"),
                    mtm_kwd=body.get("mtm_kwd"),
                    answers=body.get("answers") or {},
                    channel="api",
                    landing_id=landing.id if landing else None,
                    api_key_id=g.api_key.id,
                    origin_url=body.get("origin_url"),
                )
            )
            created = solicitation.id
    except InvalidSolicitation as invalid:
        fields = {
            ("answers." + name[len(ANSWER_PREFIX) :] if name.startswith(ANSWER_PREFIX) else name): message
            for name, message in invalid.errors.items()
        }
        return problem(422, "Demande refusée", "Corrigez les champs indiqués.", errors=fields)
    except ServiceError as error:
        return problem(422, "Demande refusée", str(error))
    status_url = url_for("api.solicitation", solicitation_id=created, _external=True)
    response = jsonify(id=created, status_url=status_url)
    response.status_code = 201
    response.headers["Location"] = status_url
    return response


@bp.route("/solicitations/<int:solicitation_id>")
def solicitation(solicitation_id: int):
    """The status of a request posted by one of the institution's keys (any other is a 404:
    whether it exists is not the caller's business)."""
    from app.models import ApiKey

    found = None
    if 0 < solicitation_id <= INTEGER_MAX:
        found = db.session.scalar(
            select(Solicitation)
            .join(ApiKey, ApiKey.id == Solicitation.api_key_id)
            .where(Solicitation.id == solicitation_id, ApiKey.institution_id == g.api_key.institution_id)
            .options(selectinload(Solicitation.needs).selectinload(Need.matches))
        )
    if found is None:
        return problem(404, "Demande introuvable", "Aucune demande de votre institution ne porte ce numéro.")
    return jsonify(
        id=found.id,
        status=found.status,
        status_label=SOLICITATION_STATUS_LABELS[found.status],
        created_at=found.created_at.isoformat(),
        subject=found.subject.slug,
        landing=found.landing.slug if found.landing else None,
        needs=[
            {
                "subject": need.subject.slug,
                "status": need.status,
                "status_label": NEED_STATUS_LABELS[need.status],
                "institutions": sorted({m.expert.antenne.institution.name for m in need.matches}, key=str.casefold),
            }
            for need in found.needs
        ],
    )
