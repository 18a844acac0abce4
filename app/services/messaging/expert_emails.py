"""The « nouvelle demande » email an expert receives for a match, whoever created the match
(automatic routing, staff sending a request, staff adding or reassigning an expert), and the
fresh links an expert asks for from an expired link's page."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy import select

from app.dates import paris_text
from app.extensions import db
from app.models import Expert, Match, OutboundEmail
from app.models.base import utcnow
from app.services.messaging import links
from app.services.messaging.outbox import queue_email
from app.services.messaging.reply_addresses import reply_address
from app.services.reference.questions import need_answers

log = logging.getLogger(__name__)


def need_context(match: Match) -> dict:
    """What every expert email says of the need: subject, place, business and its words."""
    need = match.need
    facility = need.facility
    commune = facility.commune
    postal_code = need.solicitation.postal_code if need.solicitation else None
    place = commune.name if commune else facility.commune_code
    return {
        "subject": need.subject.label,
        "commune": f"{place} ({postal_code})" if postal_code else place,
        "company_name": facility.company.name,
        "siret": facility.siret,
        "contact_name": need.contact.full_name,
        "contact_email": need.contact.email,
        "contact_phone": need.contact.phone,
        "description": need.description,
        # The answers to the subject's questions (issue 14): what its institution filtered on.
        "answers": need_answers(need),
    }


def queue_new_match_email(match: Match, *, other_count: int, key_suffix: str = "new") -> bool:
    """Queue the expert's email with their signed link; False (and a log line) when the expert
    has no address. ``key_suffix`` distinguishes a second email for the same match row."""
    expert = match.expert
    if not expert.email:
        log.warning("expert #%s sans adresse : mise en relation #%s créée sans email", expert.id, match.id)
        return False
    queue_email(
        f"match:{match.id}:{key_suffix}",
        to=expert.email,
        template="match_new",
        context={
            **need_context(match),
            "expert_name": expert.full_name,
            "institution": expert.antenne.institution.name,
            "expert_url": links.expert_url(match),
            "inbox_url": links.inbox_url(expert),
            "other_count": other_count,
        },
        reply_to=reply_address(match),
    )
    return True


def send_fresh_link(expert: Expert, match: Match | None, *, now: datetime | None = None) -> bool:
    """« Recevoir un nouveau lien », asked from an expired link's page: fresh links to the
    expert's inbox (and to the need the old link opened), sent to the address in the address
    book, never to one typed on the page. Once a day at most; False when already sent today."""
    now = now or utcnow()
    key = f"expert:{expert.id}:nouveau-lien:{paris_text(now, '%Y-%m-%d')}"
    if db.session.scalar(select(OutboundEmail.id).where(OutboundEmail.key == key)) is not None:
        return False
    queue_email(
        key,
        to=expert.email,
        template="expert_fresh_link",
        context={
            "expert_name": expert.full_name,
            "inbox_url": links.inbox_url(expert),
            "need_url": links.expert_url(match) if match is not None else None,
            "subject": match.need.subject.label if match is not None else None,
        },
    )
    return True
