"""The expert's inbox at ``/mes-demandes/<token>``, opened from the link of every expert email.

It lives outside ``/expert/`` on purpose: that prefix is kept for the one link of an email that
opens a need. Otherwise it is protected like the expert's page: the token is the
credential, so the same headers, the same French error pages and the same rate limit apply.
"""

from __future__ import annotations

from flask import Blueprint, render_template, request, url_for
from flask_babel import format_date
from werkzeug.exceptions import TooManyRequests

from app.experts import STATUS_BADGES, link_error_page, private_headers, too_many_requests_page
from app.extensions import limiter
from app.models.requests import MATCH_STATUS_LABELS
from app.services.messaging.inbox import TABS, inbox
from app.services.messaging.links import LinkError, expert_for_inbox_token, expert_token, link_origin
from app.services.requests.satisfaction import answer_summary, answers_for_expert

bp = Blueprint("inbox", __name__)
limiter.limit("60 per minute")(bp)
bp.after_request(private_headers)
bp.register_error_handler(TooManyRequests, too_many_requests_page)


@bp.route("/mes-demandes/<token>")
def inbox_page(token: str):
    try:
        expert = expert_for_inbox_token(token)
    except LinkError as error:
        return link_error_page(error, token)
    box = inbox(expert, request.args.get("onglet"))
    # The need links shown here carry this link's issue date: they cannot outlive it.
    origin = link_origin(token, inbox=True)
    return render_template(
        "experts/inbox.html",
        token=token,
        box=box,
        tabs=TABS,
        need_href=lambda match: url_for("experts.need_page", token=expert_token(match, origin=origin)),
        received_on=lambda match: format_date(match.created_at, "d MMMM y"),
        status_labels=MATCH_STATUS_LABELS,
        badges=STATUS_BADGES,
        # What businesses said of the needs this expert helped, once staff shared it.
        answers=answers_for_expert(expert),
        answer_summary=answer_summary,
        shared_on=lambda answer: format_date(answer.shared_at, "d MMMM y"),
    )
