"""The « nouvelle demande » email an expert receives for a match, whoever created the match
(automatic routing, staff sending a request, staff adding or reassigning an expert)."""

from __future__ import annotations

import logging

from app.models import Match
from app.services.messaging import links
from app.services.messaging.outbox import queue_email
from app.services.messaging.reply_addresses import reply_address

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
