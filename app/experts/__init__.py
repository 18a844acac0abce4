"""The expert's page: one need, opened from the signed link of the expert's email
(no account: the link is the credential).

No account and no password: the token in the URL is the credential, so every response says
not to send it on (``Referrer-Policy``), not to keep it (``Cache-Control``) and not to index it.
A token that is tampered with, expired or revoked gets a French page that shows nothing of the
need. Status changes go through ``services.matches``; this module only turns them into pages.
"""

from __future__ import annotations

from datetime import date, datetime

import phonenumbers
from flask import Blueprint, flash, redirect, render_template, request, url_for
from flask_babel import format_datetime
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import TooManyRequests

from app.dates import PARIS
from app.extensions import limiter
from app.models import Match
from app.models.requests import MATCH_STATUS_LABELS, NEED_STATUS_LABELS, MatchStatus
from app.services.addressbook.absences import absence_text
from app.services.audit import acting_as
from app.services.errors import ServiceError
from app.services.messaging.discussion import author_label, comment_date, linkify, post_comment, thread
from app.services.messaging.expert_emails import send_fresh_link
from app.services.messaging.links import (
    ExpiredLink,
    LinkError,
    expert_for_expired_token,
    inbox_token,
    link_origin,
    match_for_token,
)
from app.services.reference.questions import need_answers
from app.services.reference.registry import company_facts
from app.services.requests.matches import allowed_transitions, change_match_status
from app.services.transactions import transaction

bp = Blueprint("experts", __name__, url_prefix="/expert")
# Guessing tokens is hopeless (they are signed), but a link pasted in a script should not be
# able to hammer the database either. Applies only when RATELIMIT_ENABLED.
limiter.limit("60 per minute")(bp)
# The thread is rendered the same way here and in the back office: app-wide helpers.
bp.add_app_template_filter(linkify, "linkify")
bp.add_app_template_global(author_label, "comment_author")
bp.add_app_template_global(comment_date, "comment_date")

# What the expert clicks to reach each status, when it is a step forward.
ACTION_LABELS = {
    MatchStatus.TAKING_CARE: "Je prends en charge",
    MatchStatus.DONE: "Aide proposée",
    MatchStatus.DONE_NO_HELP: "Pas d'aide disponible",
    MatchStatus.DONE_NOT_REACHABLE: "Entreprise injoignable",
    MatchStatus.NOT_FOR_ME: "Ce n'est pas pour moi",
}
# What each closure means, shown under its button (the wording experts already know).
ACTION_HINTS = {
    MatchStatus.DONE: "Après l'échange, un conseil, un accompagnement ou une aide financière a pu être proposé.",
    MatchStatus.DONE_NO_HELP: "Après l'échange, mon institution ne peut pas accompagner l'entreprise.",
    MatchStatus.DONE_NOT_REACHABLE: "Le dirigeant ne répond pas, mais il a mes coordonnées pour me rappeler.",
}
DONE_STATUSES = (MatchStatus.DONE, MatchStatus.DONE_NO_HELP, MatchStatus.DONE_NOT_REACHABLE)
STATUS_BADGES = {
    MatchStatus.QUO: "new",
    MatchStatus.TAKING_CARE: "info",
    MatchStatus.DONE: "success",
    MatchStatus.DONE_NO_HELP: "warning",
    MatchStatus.DONE_NOT_REACHABLE: "warning",
    MatchStatus.NOT_FOR_ME: "error",
}


def _button(current: str, target: str) -> dict[str, str]:
    """A form's button: undoing is named after what it undoes, so each label says what happens."""
    if target == MatchStatus.QUO:
        label = "Annuler mon refus" if current == MatchStatus.NOT_FOR_ME else "Annuler ma prise en charge"
        return {"status": target, "label": label, "kind": "undo"}
    if target == MatchStatus.TAKING_CARE and current in DONE_STATUSES:
        return {"status": target, "label": "Annuler la clôture", "kind": "undo"}
    kind = "close" if target in DONE_STATUSES else ("decline" if target == MatchStatus.NOT_FOR_ME else "take")
    return {"status": target, "label": ACTION_LABELS[target], "kind": kind, "hint": ACTION_HINTS.get(target, "")}


def _tel_href(phone: str) -> str:
    """``tel:`` wants an international number; keep the typed digits when it cannot be parsed."""
    try:
        number = phonenumbers.parse(phone, "FR")
    except phonenumbers.NumberParseException:
        return "tel:" + "".join(ch for ch in phone if ch.isdigit() or ch == "+")
    return "tel:" + phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _postal_code(match: Match) -> str:
    """The postal code the business typed, else the commune's first one."""
    need = match.need
    if need.solicitation is not None and need.solicitation.postal_code:
        return need.solicitation.postal_code
    codes = need.facility.commune.postal_codes
    return codes[0].postal_code if codes else ""


def _paris_today() -> date:
    """Absences are in days as French experts read them, whatever the server's time zone."""
    return datetime.now(PARIS).date()


def _render(
    token: str,
    match: Match,
    *,
    error: str | None = None,
    comment_error: str | None = None,
    comment_body: str | None = None,
):
    need = match.need
    buttons = [_button(match.status, target) for target in allowed_transitions(match)]
    others = [other for other in need.matches if other.id != match.id]
    today = _paris_today()
    return render_template(
        "experts/need.html",
        token=token,
        # The inbox link shown here carries this link's issue date: it cannot outlive it.
        inbox_href=url_for("inbox.inbox_page", token=inbox_token(match.expert, origin=link_origin(token))),
        match=match,
        need=need,
        company=need.facility.company,
        facility=need.facility,
        facts=company_facts(need.facility),
        answers=need_answers(need),
        commune=need.facility.commune,
        postal_code=_postal_code(match),
        contact=need.contact,
        tel_href=_tel_href(need.contact.phone),
        received_at=format_datetime(match.created_at, "d MMMM y 'à' HH'h'mm"),
        others=others,
        # The other experts' announced absences, so nobody waits on someone who is away.
        absences={other.id: absence_text(other.expert, today) for other in others},
        buttons=[b for b in buttons if b["kind"] != "undo"],
        undo_buttons=[b for b in buttons if b["kind"] == "undo"],
        status_labels=MATCH_STATUS_LABELS,
        need_status_label=NEED_STATUS_LABELS[need.status],
        badges=STATUS_BADGES,
        error=error,
        comments=thread(need),
        comment_error=comment_error,
        comment_body=comment_body,
    )


def link_error_page(error: LinkError, token: str | None = None):
    """The page of a refused link; an expired one offers a fresh link by email."""
    renew = token if isinstance(error, ExpiredLink) and token and len(token) < 1000 else None
    return render_template(
        "experts/link_error.html", title=error.title, message=str(error), renew_token=renew
    ), error.http_status


@bp.after_request
def private_headers(response):
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Robots-Tag"] = "noindex, nofollow"
    return response


@bp.errorhandler(CSRFError)
def _stale_form(_error):
    message = (
        "Votre réponse n'a pas été enregistrée : la page était ouverte depuis trop longtemps. "
        "Rechargez la page, puis cliquez de nouveau."
    )
    return render_template(
        "experts/link_error.html", title="Réponse non enregistrée", message=message, retry_url=request.path
    ), 400


@bp.errorhandler(TooManyRequests)
def too_many_requests_page(_error):
    message = "Trop de demandes en peu de temps depuis votre connexion. Patientez une minute, puis rechargez la page."
    return render_template("experts/link_error.html", title="Merci de patienter", message=message), 429


@bp.route("/nouveau-lien", methods=["POST"])
@limiter.limit("5 per hour")
def fresh_link():
    """« Recevoir un nouveau lien » from an expired link's page: the links go to the expert's
    address in the address book (never to a typed one), once a day; the answer says the same
    whether or not an email left, so the page tells nothing to someone holding an old link."""
    try:
        expert, match = expert_for_expired_token(request.form.get("token", ""))
    except LinkError as error:
        return link_error_page(error)
    with transaction():
        send_fresh_link(expert, match)
    message = (
        "Un nouveau lien vient d'être envoyé à l'adresse de l'expert enregistrée dans l'annuaire "
        "(un seul envoi par jour). Il est valable aussi longtemps qu'un lien reçu avec une nouvelle demande."
    )
    return render_template("experts/link_error.html", title="Nouveau lien envoyé", message=message, sent=True)


@bp.route("/<token>", methods=["GET", "POST"])
def need_page(token: str):
    try:
        match = match_for_token(token)
    except LinkError as error:
        return link_error_page(error, token)
    if request.method == "GET":
        return _render(token, match)

    new_status = request.form.get("status", "")
    try:
        with acting_as(f"expert {match.expert.email} (lien)"), transaction():
            change_match_status(match, new_status)
    except ServiceError as error:
        return _render(token, match, error=str(error)), 422
    flash(f"C'est enregistré : votre statut est maintenant « {MATCH_STATUS_LABELS[match.status]} ».", "info")
    return redirect(url_for(".need_page", token=token), 303)


@bp.route("/<token>/commentaires", methods=["POST"])
def comment(token: str):
    """The thread's form (it posts ``body``, a public field name); the page is shown again on a refusal."""
    try:
        match = match_for_token(token)
    except LinkError as error:
        return link_error_page(error, token)
    body = request.form.get("body", "")
    try:
        with acting_as(f"expert {match.expert.email} (lien)"), transaction():
            post_comment(match.need, body=body, expert=match.expert)
    except ServiceError as error:
        return _render(token, match, comment_error=str(error), comment_body=body), 422
    flash("C'est envoyé : votre message est dans la discussion.", "info")
    return redirect(url_for(".need_page", token=token, _anchor="discussion"), 303)
