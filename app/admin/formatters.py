"""How the back office shows values: dates in Paris time, booleans in words, long text cut in
lists and kept whole in details."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask_admin.contrib.sqla.typefmt import DEFAULT_FORMATTERS
from markupsafe import Markup, escape

from app.dates import paris_text


def paris_time(value: datetime | None) -> str:
    """Dates as staff read them: Paris time, day first (stored in UTC)."""
    return paris_text(value)


def shortened(text: str | None, limit: int) -> str:
    """Long free text (errors, reasons, notes) cut for a list cell; the details page shows it whole."""
    text = text or ""
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def preview_formatter(limit: int):
    """A list formatter showing the column's text shortened to ``limit`` characters."""
    return lambda _view, _context, model, name: shortened(getattr(model, name), limit)


def preformatted_formatter(_view: Any, _context: Any, model: Any, name: str) -> Markup:
    """Plain text (email bodies, replies) shown as written, escaped, lines kept."""
    return Markup('<pre style="white-space:pre-wrap">{}</pre>').format(escape(getattr(model, name) or ""))


def _format_datetime(_view: Any, value: datetime, *_args: Any) -> str:
    return paris_time(value)


def _format_bool(_view: Any, value: bool, *_args: Any) -> str:
    return "oui" if value else "non"


# French dates everywhere; booleans as words (readable in lists and in CSV exports alike).
FORMATTERS = {**DEFAULT_FORMATTERS, datetime: _format_datetime, bool: _format_bool}
