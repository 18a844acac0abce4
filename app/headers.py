"""The security headers of every response, set in one place.

- ``Content-Security-Policy``: everything from our own origin (the DSFR and Flask-Admin assets
  are served by the app), scripts only from there or carrying this response's nonce (the few
  inline scripts of the back office's templates), no plugin, no ``<base>`` elsewhere, forms
  posting only here, and no page framed by another site (``frame-ancestors 'none'``), except a
  partner's embedded landing, framed by its declared origins only (``allow_framing_by``). Inline styles stay allowed: the emails'
  previews and a few templates set ``style`` attributes, and a style cannot run code.
  Flask-Admin's templates still carry a few inline event handlers (« return false; » on its
  filter menu, ``modelActions.execute('…')`` on the list actions): exactly those texts are
  allowed by their hashes (``'unsafe-hashes'``), computed from the registered views, so an
  injected handler of any other text does not run.
- ``X-Content-Type-Options``, ``Referrer-Policy`` (a page may set a stricter one: the expert's
  pages send none), ``Permissions-Policy`` (no camera, microphone, location or payment),
  ``X-Frame-Options`` for older browsers, and ``Strict-Transport-Security`` in production.
- ``Cache-Control: no-store`` on every back-office page and file: what staff and referents
  read there is personal data, and a shared computer's cache must not keep it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets

from flask import Flask, Response, current_app, has_request_context, request

PERMISSIONS_POLICY = "camera=(), microphone=(), geolocation=(), payment=(), usb=()"
HSTS = "max-age=63072000; includeSubDomains"
# Paths whose pages or files hold personal data for logged-in people.
PRIVATE_PREFIXES = ("/admin", "/mon-compte", "/connexion", "/deconnexion")


def csp_nonce() -> str:
    """This response's nonce, the same for every inline script of the page. Kept with the
    request itself (``g`` may outlive a request where an app context is reused)."""
    if not has_request_context():
        return secrets.token_urlsafe(16)
    return request.environ.setdefault("pde.csp_nonce", secrets.token_urlsafe(16))


def _hash(text: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


def _handler_hashes() -> str:
    """The hashes of Flask-Admin's inline handlers in this app (computed once)."""
    cached = current_app.extensions.get("pde_csp_handlers")
    if cached is None:
        handlers = {"return false;"}
        admin = current_app.extensions.get("pde_admin")
        for view in getattr(admin, "_views", ()):
            for name, _label in getattr(view, "_actions", ()) or ():
                handlers.add(f"return modelActions.execute('{name}');")
        cached = " ".join(["'unsafe-hashes'", *sorted(_hash(text) for text in handlers)])
        current_app.extensions["pde_csp_handlers"] = cached
    return cached


_FRAMERS = "pde.frame_ancestors"


def allow_framing_by(origins: list[str]) -> None:
    """Let this response be framed by exactly these origins (a partner's declared ones, already
    normalised); none leaves ``'none'``. Only the embedded landings call it."""
    request.environ[_FRAMERS] = [origin for origin in origins if origin]


def _frame_ancestors() -> str:
    allowed = request.environ.get(_FRAMERS) if has_request_context() else None
    return " ".join(allowed) if allowed else "'none'"


def content_security_policy(nonce: str) -> str:
    return "; ".join(
        (
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}' {_handler_hashes()}",
            "style-src 'self' 'unsafe-inline'",
            "img-src 'self' data:",
            "font-src 'self' data:",
            "connect-src 'self'",
            "object-src 'none'",
            "base-uri 'self'",
            "form-action 'self'",
            f"frame-ancestors {_frame_ancestors()}",
        )
    )


def secure_headers(response: Response) -> Response:
    headers = response.headers
    headers["Content-Security-Policy"] = content_security_policy(csp_nonce())
    headers["X-Content-Type-Options"] = "nosniff"
    # ``X-Frame-Options`` cannot name origins: a page partners may frame relies on CSP alone.
    if not request.environ.get(_FRAMERS):
        headers["X-Frame-Options"] = "DENY"
    headers.setdefault("Referrer-Policy", "strict-origin-when-cross-origin")
    headers["Permissions-Policy"] = PERMISSIONS_POLICY
    if current_app.config.get("ENV_NAME") == "production":
        headers["Strict-Transport-Security"] = HSTS
    is_asset = (request.endpoint or "").endswith("static")
    if request.path.startswith(PRIVATE_PREFIXES) and not is_asset:
        headers["Cache-Control"] = "no-store"
    return response


def init_app(app: Flask) -> None:
    app.after_request(secure_headers)
    app.add_template_global(csp_nonce, "csp_nonce")
