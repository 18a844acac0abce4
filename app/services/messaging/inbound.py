"""Replies by email: the expert answers an email and the reply becomes a comment on the thread.

A raw RFC 5322 message received (``flask inbound deliver`` or ``POST /inbound/email``) is posted
as the expert's comment only when its reply address (``reply_addresses``) is genuine and
recent, the match and its expert still exist, and the sender is that expert's address. Anything
else is kept as an ``InboundMessage`` held with its reason, for staff: never a comment from an
unverified sender, never an exception on a malformed message. What the reply says, without its
quoted history and signature, is ``reply_parsing``'s work.

The From header is only a claim (anyone can write it); the token is what an outsider cannot
forge, and the sender check keeps a forwarded email from speaking for the expert. Together
they are the same trust as the expert's signed link.
"""

from __future__ import annotations

import email
import email.policy
import hashlib
import logging
import re
from email.message import Message as EmailMessageBase
from email.utils import getaddresses

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Comment, InboundMessage, Match
from app.models.discussion import InboundState
from app.services.errors import ServiceError
from app.services.messaging.discussion import post_comment
from app.services.messaging.reply_addresses import ADDRESS_RE, ReplyRefused, TokenClaim, verify_token
from app.services.messaging.reply_parsing import clean_reply, extract_body, without_controls

log = logging.getLogger(__name__)

# Larger than any reply an expert writes with its attachments; the files are not kept anyway.
MAX_MESSAGE_BYTES = 30 * 1024 * 1024
# What a held message keeps of its text for staff to read.
MAX_STORED_TEXT = 100_000
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "To", "Cc")


# What is read of a header: the first few of its occurrences, each cut to a length no real
# header reaches, so a message with 20,000 addresses in « To: » costs what a normal one does.
MAX_HEADER_VALUES = 10
MAX_HEADER_LENGTH = 4_000
MAX_ADDRESSES = 50


def _header(message: EmailMessageBase, name: str) -> list[str]:
    """The values of header ``name``, capped, without control characters: whatever is kept of
    a header can be stored (a NUL cannot) and shown."""
    try:
        values = message.get_all(name) or []
    except Exception:  # noqa: BLE001 - a header the policy cannot parse
        return []
    cleaned = []
    for value in values[:MAX_HEADER_VALUES]:
        try:
            text = str(value)
        except Exception:  # noqa: BLE001, S112 - one unreadable value, the others are kept
            continue
        cleaned.append(without_controls(text[:MAX_HEADER_LENGTH]))
    return cleaned


def _addresses(values: list[str]) -> list[str]:
    try:
        found = [address.strip() for _name, address in getaddresses(values) if address and "@" in address]
    except Exception:  # noqa: BLE001
        return []
    return found[:MAX_ADDRESSES]


def _reply_tokens(message: EmailMessageBase) -> list[tuple[str, str]]:
    """(address, token) of our reply addresses among the recipients, envelope headers first."""
    domain = (current_app.config.get("INBOUND_EMAIL_DOMAIN") or "").lower()
    found: list[tuple[str, str]] = []
    for name in RECIPIENT_HEADERS:
        for address in _addresses(_header(message, name)):
            match = ADDRESS_RE.match(address)
            token = match.group(1).lower() if match else ""
            domain_ok = match is not None and (not domain or match.group(2).lower() == domain)
            if domain_ok and all(token != seen for _address, seen in found):
                found.append((address, token))
    return found


def _message_id(message: EmailMessageBase | None, raw: bytes) -> str:
    """The Message-ID, or a digest of the raw bytes: a redelivered message is recognised either way."""
    values = _header(message, "Message-ID") if message is not None else []
    value = values[0].strip() if values else ""
    if value and len(value) <= 400:
        return value
    return f"<sha256-{hashlib.sha256(raw).hexdigest()}@inbound.invalid>"


def _match_for(claim: TokenClaim, sender: str | None) -> Match:
    match = db.session.get(Match, claim.match_id)
    if match is None or match.expert_id != claim.expert_id:
        raise ReplyRefused("Mise en relation introuvable : elle a été supprimée ou attribuée à un autre expert.")
    if match.expert is None or match.expert.deleted_at is not None:
        raise ReplyRefused("L'expert de cette mise en relation a été retiré de l'annuaire.")
    expected = (match.expert.email or "").strip().casefold()
    if not sender or not expected or sender.strip().casefold() != expected:
        raise ReplyRefused(
            f"Expéditeur non reconnu : {sender or 'adresse absente'} n'est pas l'adresse de l'expert "
            f"({match.expert.email or 'aucune adresse'})."
        )
    return match


# ---------------------------------------------------------------- the sender's authentication

_RESULT = re.compile(r"\b(dkim|spf|dmarc)\s*=\s*(\w+)([^;]*)", re.IGNORECASE)
_PROPERTY = re.compile(r"\b(header\.d|header\.i|header\.from|smtp\.mailfrom)\s*=\s*\"?([^\s;\"]+)", re.IGNORECASE)


def _aligned(domain: str, sender_domain: str) -> bool:
    """Relaxed alignment: the same domain, or one a subdomain of the other."""
    domain = domain.lower().lstrip("@").split("@")[-1].rstrip(".")
    return bool(domain) and (
        domain == sender_domain or domain.endswith("." + sender_domain) or sender_domain.endswith("." + domain)
    )


def _authentication_refusal(message: EmailMessageBase, sender: str) -> str | None:
    """Why a reply cannot be trusted on its ``From`` alone, or None.

    The receiving MTA records what it checked in « Authentication-Results » (RFC 8601): a
    reply passes when DKIM, SPF or DMARC passed for the expert's own domain. Without such a
    header, ``INBOUND_REQUIRE_AUTH=auto`` trusts the token and the sender as before (an MTA
    that does not check cannot say more); ``on`` holds the reply."""
    config = current_app.config
    mode = config.get("INBOUND_REQUIRE_AUTH", "auto")
    if mode == "off":
        return None
    authserv = config.get("INBOUND_AUTHSERV_ID")
    headers = _header(message, "Authentication-Results")
    if authserv:
        headers = [h for h in headers if h.split(";", 1)[0].strip().lower() == authserv]
    if not headers:
        if mode == "on":
            return "Authentification absente : le serveur de réception n'a pas indiqué de résultat DKIM ou SPF."
        return None
    sender_domain = sender.rsplit("@", 1)[-1].strip().lower()
    for header in headers:
        for _method, result, properties in _RESULT.findall(header):
            if result.lower() != "pass":
                continue
            for _name, value in _PROPERTY.findall(properties):
                if _aligned(value, sender_domain):
                    return None
    return (
        f"Authentification non vérifiée : ni DKIM ni SPF ne valident le domaine {sender_domain} "
        "de l'expéditeur (message peut-être usurpé)."
    )


# ---------------------------------------------------------------- receiving


def _clip(value: str | None, size: int) -> str | None:
    if value is None:
        return None
    value = value.replace("\x00", "")
    return value[:size]


def receive_email(raw: bytes) -> InboundMessage:
    """Store a received reply and, when it checks out, post it as the expert's comment.

    Never raises for what the message contains (only for a database failure): a malformed,
    forged, expired, misaddressed or empty reply is stored held with its French reason. A
    message already received (same Message-ID, or same bytes without one) is not posted twice:
    the row of the first delivery is returned.
    """
    raw = bytes(raw or b"")
    if len(raw) > MAX_MESSAGE_BYTES:
        return _store(
            _message_id(None, raw),
            reason=f"Message trop volumineux ({len(raw) // (1024 * 1024)} Mo) : il n'a pas été lu.",
        )
    try:
        message = email.message_from_bytes(raw, policy=email.policy.default)
    except Exception as error:  # noqa: BLE001
        return _store(_message_id(None, raw), reason=f"Message illisible : {type(error).__name__}.")
    message_id = _message_id(message, raw)
    existing = db.session.scalar(select(InboundMessage).where(InboundMessage.message_id == message_id))
    if existing is not None:
        return existing

    senders = _addresses(_header(message, "From"))
    sender = senders[0] if len(senders) == 1 else (", ".join(senders) or None)
    subjects = _header(message, "Subject")
    subject = subjects[0] if subjects else None
    tokens = _reply_tokens(message)
    try:
        text, attachments = extract_body(message)
    except Exception as error:  # noqa: BLE001 - a structure the parser could not walk
        text, attachments = "", []
        log.warning("réponse par courriel illisible (%s)", error)
    fields = {
        "message_id": message_id,
        "sender": sender,
        "recipient": tokens[0][0] if tokens else ", ".join(_addresses(_header(message, "To"))) or None,
        "subject": subject,
        "attachments": attachments,
    }
    if not tokens:
        return _store(
            reason="Aucune adresse de réponse Place des Entreprises parmi les destinataires.", text=text, **fields
        )
    if len(senders) != 1:
        reason = "Expéditeur absent ou multiple : impossible de vérifier qui répond."
        return _store(reason=reason, text=text, **fields)

    match: Match | None = None
    first_refusal: ReplyRefused | None = None
    for address, token in tokens:
        try:
            match = _match_for(verify_token(token), sender)
        except ReplyRefused as refusal:
            first_refusal = first_refusal or refusal
            continue
        fields["recipient"] = address
        break
    if match is None:
        return _store(reason=str(first_refusal), text=text, **fields)

    refusal = _authentication_refusal(message, sender)
    if refusal is not None:
        return _store(reason=refusal, text=text, **fields)

    body = clean_reply(text)
    if not body:
        return _store(reason="Réponse vide une fois l'historique et la signature retirés.", text=text, **fields)
    return _post(match, body=body, raw_text=text, fields=fields)


def _store(message_id: str, *, reason: str, text: str | None = None, **fields) -> InboundMessage:
    """Keep a held reply for staff (idempotent on its Message-ID)."""
    row = InboundMessage(
        message_id=message_id,
        sender=_clip(fields.get("sender"), 320),
        recipient=_clip(fields.get("recipient"), 320),
        subject=_clip(fields.get("subject"), 500),
        attachments=list(fields.get("attachments") or []),
        text=_clip(text, MAX_STORED_TEXT),
        state=InboundState.HELD,
        reason=reason,
    )
    log.info("réponse par courriel retenue : %s", reason)
    return _save(row)


def _save(row: InboundMessage) -> InboundMessage:
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError:
        # The same message delivered twice at once: the other delivery stored it first.
        existing = db.session.scalar(select(InboundMessage).where(InboundMessage.message_id == row.message_id))
        if existing is None:
            raise
        return existing
    return row


def _post(match: Match, *, body: str, raw_text: str, fields: dict) -> InboundMessage:
    """Post the comment and record the reply, together (a refused comment leaves a held reply)."""
    row = InboundMessage(
        message_id=fields["message_id"],
        sender=_clip(fields.get("sender"), 320),
        recipient=_clip(fields.get("recipient"), 320),
        subject=_clip(fields.get("subject"), 500),
        attachments=list(fields.get("attachments") or []),
        text=_clip(body, MAX_STORED_TEXT),
        state=InboundState.POSTED,
    )
    try:
        with db.session.begin_nested():
            db.session.add(row)
            # Claims the Message-ID first, so a concurrent duplicate fails here, before any comment.
            db.session.flush()
            comment = post_comment(
                match.need, body=body, expert=match.expert, source="email", attachments=list(row.attachments)
            )
            row.comment_id = comment.id
    except IntegrityError:
        return db.session.scalar(select(InboundMessage).where(InboundMessage.message_id == fields["message_id"]))
    except ServiceError as refusal:
        return _store(reason=f"Commentaire refusé : {refusal}", text=raw_text, **fields)
    log.info("réponse par courriel publiée : commentaire #%s (mise en relation #%s)", comment.id, match.id)
    return row


# ---------------------------------------------------------------- staff


def discard_inbound(message: InboundMessage) -> InboundMessage:
    """Staff's « Écarter »: a held reply is set aside for good (a posted one stays posted)."""
    if message.state == InboundState.POSTED:
        raise ServiceError("Cette réponse a déjà été publiée comme commentaire : elle ne peut pas être écartée.")
    message.state = InboundState.DISCARDED
    db.session.flush()
    return message


def outcome_text(message: InboundMessage) -> str:
    """One French line saying what became of a received reply (CLI and logs)."""
    if message.state == InboundState.POSTED:
        comment = db.session.get(Comment, message.comment_id) if message.comment_id else None
        where = f" sur le besoin #{comment.need_id}" if comment is not None else ""
        return f"Réponse publiée : commentaire #{message.comment_id}{where}."
    if message.state == InboundState.DISCARDED:
        return "Réponse déjà reçue et écartée par l'équipe."
    return f"Réponse retenue pour l'équipe (réponse reçue #{message.id}) : {message.reason}"
