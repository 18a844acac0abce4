"""What tests do to pages: read them, post their forms with the CSRF token they carry, find a
list's filter argument, read the emails an action wrote. One definition each, for every module."""

from __future__ import annotations

import html as html_lib
import re

from flask import current_app
from sqlalchemy import select

from app.extensions import db
from app.models import OutboundEmail

PASSWORD = "motdepasse-tres-long"
INBOUND_DOMAIN = "reponses.place-des-entreprises.example"


def body(response) -> str:
    return response.get_data(as_text=True)


def text(response) -> str:
    """The page as a reader sees it (apostrophes are escaped in the HTML)."""
    return html_lib.unescape(body(response))


def csrf_token_from(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        r'value="([^"]+)"[^>]*name="csrf_token"', html
    )
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client, email: str, password: str = PASSWORD):
    """Log in through the real form, CSRF token included."""
    page = client.get("/connexion")
    return client.post(
        "/connexion", data={"email": email, "password": password, "csrf_token": csrf_token_from(body(page))}
    )


def post_form(client, url: str, data: dict, *, token_from: str | None = None):
    """POST a back-office form with the CSRF token of the page it comes from."""
    page = client.get(token_from or url)
    assert page.status_code == 200, body(page)
    return client.post(url, data={**data, "csrf_token": csrf_token_from(body(page))})


def post_action(
    client, endpoint: str, action: str, ids: list[int], *, page_url: str | None = None, follow_redirects=False
):
    """Run a list action on ``ids`` as the list page's checkboxes would."""
    page = client.get(page_url or f"/admin/{endpoint}/")
    return client.post(
        f"/admin/{endpoint}/action/",
        data={"action": action, "rowid": [str(i) for i in ids], "csrf_token": csrf_token_from(body(page))},
        follow_redirects=follow_redirects,
    )


def admin_view(endpoint: str):
    return next(v for v in current_app.extensions["pde_admin"]._views if getattr(v, "endpoint", "") == endpoint)


def filter_arg(endpoint: str, name: str, operation: str | None = None) -> str:
    """The URL argument (``flt3_12``) of the list filter called ``name``."""
    return next(
        key
        for key, (_i, flt) in admin_view(endpoint)._filter_args.items()
        if flt.name == name and (operation is None or str(flt.operation()) == operation)
    )


def expert_links(text: str, base_url: str) -> list[str]:
    return [url for url in re.findall(r"https?://\S+", text) if url.startswith(f"{base_url}/expert/")]


def emails_by_key(prefix: str = "") -> dict[str, OutboundEmail]:
    rows = db.session.scalars(select(OutboundEmail).where(OutboundEmail.key.startswith(prefix)))
    return {row.key: row for row in rows}


# What a business types in the public form for a recruitment need in Lyon (one commune).
VALID_FORM = {
    "full_name": "  Marie   Dupont ",
    "email": "Marie.Dupont@Entreprise.FR",
    "phone": "06 12 34 56 78",
    "siret": "123 456 782 00028",
    "postal_code": "69002",  # Lyon: one commune
    "insee_code": "",
    "description": "Nous cherchons à recruter deux boulangers en CDI d'ici l'été, sans succès jusqu'ici.",
}


def served_at_from(html: str) -> str:
    return re.search(r'name="served_at" value="([^"]*)"', html).group(1)
