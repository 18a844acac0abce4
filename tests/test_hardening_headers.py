"""Finding 5 of the security review: the security headers of a government service on every
route, for an anonymous visitor and for staff, whatever the answer (page, redirect, refusal)."""

from __future__ import annotations

import re

import pytest

from app.headers import HSTS

EVERYWHERE = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=()",
}


def _urls(app) -> list[str]:
    """One concrete URL per GET route, its arguments filled with a plausible value."""
    urls = []
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods:
            continue
        url = re.sub(r"<(?:[^:>]+:)?([^>]+)>", lambda m: "1" if "id" in m.group(1) else "x", rule.rule)
        urls.append(url)
    return sorted(set(urls))


def _check(response, url: str) -> list[str]:
    problems = []
    headers = response.headers
    for name, expected in EVERYWHERE.items():
        if expected not in headers.get(name, ""):
            problems.append(f"{url} ({response.status_code}): {name} = {headers.get(name)!r}")
    policy = headers.get("Content-Security-Policy", "")
    for directive in ("default-src 'self'", "frame-ancestors 'none'", "object-src 'none'", "base-uri 'self'"):
        if directive not in policy:
            problems.append(f"{url}: CSP without {directive}")
    if "script-src 'self' 'nonce-" not in policy or "unsafe-inline" in policy.split("style-src")[0]:
        problems.append(f"{url}: scripts not limited to our origin and the nonce: {policy}")
    if not headers.get("Referrer-Policy"):
        problems.append(f"{url}: no Referrer-Policy")
    if url.startswith("/admin") and "/static/" not in url and "no-store" not in headers.get("Cache-Control", ""):
        problems.append(f"{url}: a back-office answer the browser may keep ({headers.get('Cache-Control')!r})")
    return problems


@pytest.mark.parametrize("who", ["anonymous", "staff"])
def test_every_route_sends_the_security_headers(app, db, client, admin_user, who):
    from tests.helpers import login

    if who == "staff":
        assert login(client, admin_user.email).status_code == 302
    problems = []
    urls = _urls(app)
    assert len(urls) > 60
    for url in urls:
        problems += _check(client.get(url), url)
    assert problems == []


def test_the_inline_scripts_carry_the_nonce_of_their_page(admin_client, db, scope_world):
    from app.models import Need
    from tests.helpers import body

    response = admin_client.get(f"/admin/need/details/?id={scope_world.ids[Need]['A1']}")
    nonce = re.search(r"'nonce-([^']+)'", response.headers["Content-Security-Policy"]).group(1)
    scripts = re.findall(r"<script(?![^>]*\bsrc=)([^>]*)>", body(response))
    assert scripts, "the need's page has an inline script"
    assert all(f'nonce="{nonce}"' in attributes for attributes in scripts)
    again = admin_client.get("/admin/").headers["Content-Security-Policy"]
    assert nonce not in again  # a new nonce for every response


def test_hsts_in_production_only(make_app, app):
    assert "Strict-Transport-Security" not in app.test_client().get("/").headers
    production = make_app(ENV_NAME="production", REDIS_URL="redis://127.0.0.1:6379/15", RATELIMIT_ENABLED=False)
    assert production.test_client().get("/").headers["Strict-Transport-Security"] == HSTS
