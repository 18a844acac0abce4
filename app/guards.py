"""What no page of the service accepts, refused in one place before any view runs.

A NUL byte cannot be stored in PostgreSQL text and means nothing in a URL or a form: anywhere
in the path, the query string or a posted field it gets a 400 with a French page, instead of
each view (Flask-Admin's search and filters, the public form's subject) failing its own way.
A file posted where no page expects one is refused the same way. The mail gateway's endpoint
takes raw email, whose content is cleaned where it is stored; the public form refuses a NUL
itself, next to the field, keeping what was typed.
"""

from __future__ import annotations

from flask import Flask, abort, request

# The endpoints that read a posted file.
FILE_ENDPOINTS = frozenset({"addressbook_import.index", "inbound.receive"})
# The endpoints that read raw bytes, cleaned by their own service.
RAW_ENDPOINTS = frozenset({"inbound.receive"})
# The pages that clean their own query string and refuse a NUL in a field themselves, next to
# the field (nothing typed is lost): the public form.
SELF_CHECKED = frozenset({"public.request_form"})

NUL_MESSAGE = "La requête contient un caractère invalide (octet nul) : corrigez la saisie puis réessayez."
FILE_MESSAGE = "Ce formulaire n'accepte pas de fichier : saisissez le texte dans le champ prévu."


def _has_nul(values) -> bool:
    return any("\x00" in key or any("\x00" in value for value in values.getlist(key)) for key in values)


def refuse_unusable_input() -> None:
    if request.endpoint in RAW_ENDPOINTS:
        return
    if "\x00" in request.path:
        abort(400, description=NUL_MESSAGE)
    if request.endpoint in SELF_CHECKED:
        if request.files:
            abort(400, description=FILE_MESSAGE)
        return
    if _has_nul(request.args):
        abort(400, description=NUL_MESSAGE)
    if request.method in ("POST", "PUT", "PATCH"):
        if request.files and request.endpoint not in FILE_ENDPOINTS:
            abort(400, description=FILE_MESSAGE)
        if _has_nul(request.form):
            abort(400, description=NUL_MESSAGE)


def init_app(app: Flask) -> None:
    app.before_request(refuse_unusable_input)
