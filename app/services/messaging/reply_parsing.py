"""What an expert's email reply says: its visible text without the quoted history, the
signature or the HTML, and the names of its attachments (which are not kept).

Mail clients quote the history each their own way (Gmail, Outlook, Apple Mail, Thunderbird, in
French and in English); these rules keep what the expert wrote above it.
"""

from __future__ import annotations

import logging
import re
from email.message import Message as EmailMessageBase
from html.parser import HTMLParser

log = logging.getLogger(__name__)


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


def without_controls(text: str) -> str:
    """``text`` without control and invisible characters (tab and newline kept): what an email
    brings (headers, attachment names, text) is stored and sent on this way — a NUL cannot be."""
    return _CONTROL.sub("", text)


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
    """The name staff and experts see for an attached file, without control characters (a NUL
    cannot be stored, nor sent on in a notification); inline images (logos) are not listed."""
    try:
        disposition = (part.get_content_disposition() or "").lower()
        filename = part.get_filename()
    except Exception:  # noqa: BLE001
        return None
    name = without_controls(str(filename or "")).strip()[:200]
    if disposition == "attachment":
        return name or "pièce jointe sans nom"
    if name and disposition != "inline":
        return name
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
