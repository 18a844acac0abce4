"""Replies by email: the expert answers an email and the reply becomes a comment on the thread.

Expert emails carry a Reply-To address ``reponse+<token>@<INBOUND_EMAIL_DOMAIN>`` bound to
the match. A raw RFC 5322 message received (``flask inbound deliver`` or ``POST
/inbound/email``) is posted as the expert's comment only when the token is genuine and recent,
the match and its expert still exist, and the sender is that expert's address. Anything else is
kept as an ``InboundMessage`` held with its reason, for staff: never a comment from an
unverified sender, never an exception on a malformed message.

The token is lowercase on purpose: some mail servers lowercase the local part of an address,
and a base64 signature (itsdangerous' usual alphabet) would not survive it. It is
``<match id>-<expert id>-<issue time>`` in base 36 followed by an 80-bit HMAC in base 32, all
lowercase, so verification lowercases whatever arrives and still checks every bit.

The From header is only a claim (anyone can write it); the token is what an outsider cannot
forge, and the sender check keeps a forwarded email from speaking for the expert. Together
they are the same trust as the expert's signed link.
"""

from __future__ import annotations

import base64
import email
import email.policy
import hashlib
import hmac
import logging
import re
import time
from dataclasses import dataclass
from email.message import Message as EmailMessageBase
from email.utils import getaddresses
from html.parser import HTMLParser

from flask import current_app
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from app.extensions import db
from app.models import Comment, InboundMessage, Match
from app.services.errors import ServiceError

log = logging.getLogger(__name__)

LOCAL_PART_PREFIX = "reponse"
_SALT = b"inbound-reply"
_SIGNATURE_BYTES = 10  # 80 bits: 16 base-32 characters
DEFAULT_MAX_AGE_DAYS = 180
# Larger than any reply an expert writes with its attachments; the files are not kept anyway.
MAX_MESSAGE_BYTES = 30 * 1024 * 1024
# What a held message keeps of its text for staff to read.
MAX_STORED_TEXT = 100_000
RECIPIENT_HEADERS = ("Delivered-To", "X-Original-To", "To", "Cc")

_TOKEN_RE = re.compile(r"^([0-9a-z]{1,13})-([0-9a-z]{1,13})-([0-9a-z]{1,13})-([a-z2-7]{16})$")
_ADDRESS_RE = re.compile(rf"^{LOCAL_PART_PREFIX}\+([^@\s]+)@([^@\s]+)$", re.IGNORECASE)


# ---------------------------------------------------------------- the reply address


def _b36(number: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        number, rest = divmod(number, 36)
        out = digits[rest] + out
        if not number:
            return out


def _signature(payload: str) -> str:
    key = hashlib.sha256(_SALT + b"\0" + str(current_app.config["SECRET_KEY"]).encode()).digest()
    digest = hmac.new(key, payload.encode("ascii"), hashlib.sha256).digest()[:_SIGNATURE_BYTES]
    return base64.b32encode(digest).decode("ascii").lower()


def reply_token(match: Match, *, issued_at: float | None = None) -> str:
    """The signed, case-insensitive token of ``match`` (``issued_at``: Unix time, default now)."""
    issued = int(time.time() if issued_at is None else issued_at)
    payload = f"{_b36(match.id)}-{_b36(match.expert_id)}-{_b36(issued)}"
    return f"{payload}-{_signature(payload)}"


def reply_address(match: Match, *, issued_at: float | None = None) -> str | None:
    """The Reply-To of an expert email about ``match``; None when replies by email are off."""
    domain = current_app.config.get("INBOUND_EMAIL_DOMAIN")
    if not domain:
        return None
    return f"{LOCAL_PART_PREFIX}+{reply_token(match, issued_at=issued_at)}@{domain}"


class ReplyRefused(ServiceError):
    """Why a reply is held; the message is the French reason staff read."""


@dataclass(frozen=True)
class TokenClaim:
    match_id: int
    expert_id: int


def verify_token(token: str, *, now: float | None = None) -> TokenClaim:
    """The match and expert a token was issued for; raises ReplyRefused when forged or expired."""
    token = token.strip().lower()
    found = _TOKEN_RE.match(token)
    if not found:
        raise ReplyRefused("Adresse de réponse falsifiée ou tronquée : le jeton n'a pas la forme attendue.")
    payload = token.rsplit("-", 1)[0]
    if not hmac.compare_digest(_signature(payload), found.group(4)):
        raise ReplyRefused("Adresse de réponse falsifiée : la signature du jeton ne correspond pas.")
    max_days = int(current_app.config.get("INBOUND_REPLY_MAX_AGE_DAYS") or DEFAULT_MAX_AGE_DAYS)
    issued = int(found.group(3), 36)
    if (time.time() if now is None else now) - issued > max_days * 86400:
        raise ReplyRefused(f"Adresse de réponse expirée : elle date de plus de {max_days} jours.")
    return TokenClaim(match_id=int(found.group(1), 36), expert_id=int(found.group(2), 36))


# ---------------------------------------------------------------- reading the message


class _HtmlToText(HTMLParser):
    """Visible text of an HTML email, with its line breaks, without the quoted history.

    Gmail puts the history in ``div.gmail_quote``, Apple Mail and Thunderbird in
    ``<blockquote>``, Outlook after ``div#appendonsend`` / ``div#divRplyFwdMsg``: everything
    inside them is skipped, so is everything after Outlook's markers.
    """

    BREAKS = {"br", "p", "div", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6", "table", "ul", "ol", "pre", "hr"}
    INVISIBLE = {"style", "script", "head", "title"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_tag: str | None = None
        self._skip_depth = 0
        self._stop = False

    def _starts_quote(self, tag: str, attrs: list[tuple[str, str | None]]) -> bool:
        if tag in self.INVISIBLE or tag == "blockquote":
            return True
        values = dict(attrs)
        classes = (values.get("class") or "").lower().split()
        return tag == "div" and ("gmail_quote" in classes or "moz-cite-prefix" in classes)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._stop:
            return
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth += 1
            return
        values = dict(attrs)
        if (values.get("id") or "").lower() in {"appendonsend", "divrplyfwdmsg"}:
            self._stop = True
            return
        if self._starts_quote(tag, attrs):
            self._skip_tag, self._skip_depth = tag, 1
            return
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._stop or self._skip_tag is not None:
            return
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._stop:
            return
        if self._skip_tag is not None:
            if tag == self._skip_tag:
                self._skip_depth -= 1
                if self._skip_depth <= 0:
                    self._skip_tag = None
            return
        if tag in self.BREAKS and tag != "br":
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if self._stop or self._skip_tag is not None:
            return
        self.parts.append(re.sub(r"\s+", " ", data))


def html_to_text(html: str) -> str:
    parser = _HtmlToText()
    try:
        parser.feed(html)
        parser.close()
    except Exception:
        log.warning("réponse par courriel : HTML illisible", exc_info=True)
    lines = [line.strip() for line in "".join(parser.parts).replace("\xa0", " ").split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


_QUOTE_HEADER_FR = re.compile(r"^\s*le\s.{0,300}\sa\s+écrit\s*:\s*$", re.IGNORECASE | re.DOTALL)
_QUOTE_HEADER_EN = re.compile(r"^\s*on\s.{0,300}\swrote\s*:\s*$", re.IGNORECASE | re.DOTALL)
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*-{2,}\s*(original message|message d'origine|message original|forwarded message|message transféré)\s*-{2,}",
    re.IGNORECASE,
)
_OUTLOOK_FROM = re.compile(r"^\s*\*?(de|from)\s*\*?\s*:\s*\S", re.IGNORECASE)
_OUTLOOK_NEXT = re.compile(r"^\s*\*?(envoyé|sent|date|à|to|objet|subject)\s*\*?\s*:", re.IGNORECASE)
_UNDERSCORES = re.compile(r"^\s*_{10,}\s*$")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\ufeff]")
_SIGNATURE = re.compile(r"^--\s*$")
_MOBILE_SIGNATURE = re.compile(
    r"^\s*(envoyé (de|depuis|à partir de) (mon|ma|mon appareil|l'application)\b|sent from my\b|sent from\s+\S+\s+for\b"
    r"|get outlook for\b|obtenir outlook pour\b|télécharger outlook pour\b)",
    re.IGNORECASE,
)


def _history_starts(lines: list[str], index: int) -> bool:
    """Whether the quoted history (or the signature) starts at ``lines[index]``."""
    line = lines[index]
    if _SIGNATURE.match(line) or _ORIGINAL_MESSAGE.match(line):
        return True
    if len(line) < 100 and _MOBILE_SIGNATURE.match(line):
        return True
    stripped = line.strip()
    # « Le jeu. 27 nov. 2026 à 10:12, X <x@y> a écrit : » — clients wrap it over up to 3 lines.
    if re.match(r"^(le|on)\s", stripped, re.IGNORECASE):
        for end in range(index + 1, min(index + 4, len(lines)) + 1):
            joined = " ".join(part.strip() for part in lines[index:end])
            if _QUOTE_HEADER_FR.match(joined) or _QUOTE_HEADER_EN.match(joined):
                return True
    if _UNDERSCORES.match(line):
        following = [item for item in lines[index + 1 : index + 4] if item.strip()]
        if following and _OUTLOOK_FROM.match(following[0]):
            return True
    if _OUTLOOK_FROM.match(line):
        following = [item for item in lines[index + 1 : index + 5] if item.strip()]
        if any(_OUTLOOK_NEXT.match(item) for item in following):
            return True
    return False


def clean_reply(text: str) -> str:
    """The expert's own words: no quoted history, no signature, no surrounding blank lines."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    # Control characters (form feeds, stray NULs from broken encodings) are not part of a reply.
    text = _CONTROL.sub("", text.expandtabs(4))
    lines = text.split("\n")
    kept: list[str] = []
    for index, line in enumerate(lines):
        if _history_starts(lines, index):
            break
        if line.lstrip().startswith(">"):
            continue
        kept.append(line.rstrip())
    body = "\n".join(kept).strip("\n")
    return re.sub(r"\n{3,}", "\n\n", body).strip()


def _part_text(part: EmailMessageBase) -> str:
    try:
        content = part.get_content()
    except Exception:  # noqa: BLE001 - unknown charset, broken transfer encoding…
        payload = part.get_payload(decode=True) or b""
        content = payload.decode("utf-8", errors="replace") if isinstance(payload, bytes) else str(payload)
    if isinstance(content, bytes):
        content = content.decode("utf-8", errors="replace")
    return content if isinstance(content, str) else ""


def _attachment_name(part: EmailMessageBase) -> str | None:
    """The name staff and experts see for an attached file; inline images (logos) are not listed."""
    try:
        disposition = (part.get_content_disposition() or "").lower()
        filename = part.get_filename()
    except Exception:  # noqa: BLE001
        return None
    if disposition == "attachment":
        return str(filename or "pièce jointe sans nom")[:200]
    if filename and disposition != "inline":
        return str(filename)[:200]
    return None


def extract_body(message: EmailMessageBase) -> tuple[str, list[str]]:
    """The reply's text (the text part, else its HTML as text) and the attachments' names."""
    plain: str | None = None
    html: str | None = None
    attachments: list[str] = []
    for part in message.walk():
        if part.is_multipart():
            continue
        name = _attachment_name(part)
        if name is not None:
            attachments.append(name)
            continue
        content_type = part.get_content_type()
        if content_type == "text/plain" and plain is None:
            plain = _part_text(part)
        elif content_type == "text/html" and html is None:
            html = _part_text(part)
    if plain is not None and plain.strip():
        return plain, attachments
    if html is not None:
        return html_to_text(html), attachments
    return plain or "", attachments


def _header(message: EmailMessageBase, name: str) -> list[str]:
    try:
        return [str(value) for value in (message.get_all(name) or [])]
    except Exception:  # noqa: BLE001 - a header the policy cannot parse
        return []


def _addresses(values: list[str]) -> list[str]:
    try:
        return [address.strip() for _name, address in getaddresses(values) if address and "@" in address]
    except Exception:  # noqa: BLE001
        return []


def _reply_tokens(message: EmailMessageBase) -> list[tuple[str, str]]:
    """(address, token) of our reply addresses among the recipients, envelope headers first."""
    domain = (current_app.config.get("INBOUND_EMAIL_DOMAIN") or "").lower()
    found: list[tuple[str, str]] = []
    for name in RECIPIENT_HEADERS:
        for address in _addresses(_header(message, name)):
            match = _ADDRESS_RE.match(address)
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
        state="held",
        reason=reason,
    )
    log.info("réponse par courriel retenue : %s", reason)
    return _save(row)


def _save(row: InboundMessage) -> InboundMessage:
    db.session.add(row)
    try:
        db.session.commit()
    except IntegrityError:
        # The same message delivered twice at once: the other delivery stored it first.
        db.session.rollback()
        existing = db.session.scalar(select(InboundMessage).where(InboundMessage.message_id == row.message_id))
        if existing is None:
            raise
        return existing
    return row


def _post(match: Match, *, body: str, raw_text: str, fields: dict) -> InboundMessage:
    """Post the comment and record the reply, in one transaction (post_comment commits)."""
    from app.services.messaging.discussion import post_comment

    row = InboundMessage(
        message_id=fields["message_id"],
        sender=_clip(fields.get("sender"), 320),
        recipient=_clip(fields.get("recipient"), 320),
        subject=_clip(fields.get("subject"), 500),
        attachments=list(fields.get("attachments") or []),
        text=_clip(body, MAX_STORED_TEXT),
        state="posted",
    )
    db.session.add(row)
    try:
        # Claims the Message-ID first, so a concurrent duplicate fails here, before any comment.
        db.session.flush()
    except IntegrityError:
        db.session.rollback()
        return db.session.scalar(select(InboundMessage).where(InboundMessage.message_id == fields["message_id"]))
    try:
        comment = post_comment(
            match.need, body=body, expert=match.expert, source="email", attachments=list(row.attachments)
        )
    except ServiceError as refusal:
        db.session.rollback()
        return _store(reason=f"Commentaire refusé : {refusal}", text=raw_text, **fields)
    row.comment_id = comment.id
    db.session.add(row)
    db.session.commit()
    log.info("réponse par courriel publiée : commentaire #%s (mise en relation #%s)", comment.id, match.id)
    return row


# ---------------------------------------------------------------- staff


def discard_inbound(message: InboundMessage) -> InboundMessage:
    """Staff's « Écarter »: a held reply is set aside for good (a posted one stays posted)."""
    if message.state == "posted":
        raise ServiceError("Cette réponse a déjà été publiée comme commentaire : elle ne peut pas être écartée.")
    message.state = "discarded"
    db.session.commit()
    return message


def outcome_text(message: InboundMessage) -> str:
    """One French line saying what became of a received reply (CLI and logs)."""
    if message.state == "posted":
        comment = db.session.get(Comment, message.comment_id) if message.comment_id else None
        where = f" sur le besoin #{comment.need_id}" if comment is not None else ""
        return f"Réponse publiée : commentaire #{message.comment_id}{where}."
    if message.state == "discarded":
        return "Réponse déjà reçue et écartée par l'équipe."
    return f"Réponse retenue pour l'équipe (réponse reçue #{message.id}) : {message.reason}"
