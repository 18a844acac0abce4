"""A partner's landing embedded in a real Chromium (issue 16): a page served from another local
origin pastes the documented snippet, the frame loads, resizes to its content, takes a request
(with no cookie of ours), and shows the confirmation naming the partner; an undeclared origin
gets no frame at all; the embedded pages are axe-clean."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from sqlalchemy import select

from app.extensions import db as _db
from app.models import Solicitation
from tests.browser import axe_violations
from tests.factories import covering_expert, make_landing

pytestmark = pytest.mark.browser

FILLED = [
    ("full_name", "Marie Dupont"),
    ("email", "marie.dupont@entreprise.fr"),
    ("phone", "06 12 34 56 78"),
    ("siret", "123 456 782 00028"),
    ("postal_code", "69002"),
    ("description", "Nous cherchons à recruter deux boulangers en CDI avant l'été."),
]


class PartnerSite:
    """A partner's page on its own origin, holding the snippet of one landing."""

    def __init__(self, host: str, app_url: str, path: str) -> None:
        snippet = (
            f'<div data-pde-iframe="{app_url}{path}"><a href="{app_url}{path}">Place des Entreprises</a></div>'
            f'<script src="{app_url}/static/js/pde-embed.js" defer></script>'
        )
        page = (
            "<!doctype html><html lang='fr'><head><meta charset='utf-8'><title>Partenaire</title></head>"
            f"<body><h1>Site du partenaire</h1>{snippet}</body></html>"
        ).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "text/html; charset=utf-8")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)

            def log_message(self, *_args) -> None:
                return

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.origin = f"http://{host}:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@pytest.fixture
def partner_site(live_server):
    # « localhost » is another origin (and another site) than the app's 127.0.0.1: the frame is
    # cross-site, as on a real partner's site.
    site = PartnerSite("localhost", live_server, "/iframe/portail")
    yield site
    site.close()


@pytest.fixture
def declared(db, partner_site):
    covering_expert("departement:69", full_name="Camille Martin", email="camille@cci.example")
    return make_landing(origins=(partner_site.origin,), partner_name="Portail de l'entrepreneur")


def frame_height(page) -> float:
    return page.evaluate("document.querySelector('iframe').getBoundingClientRect().height")


def test_a_landing_embedded_from_a_declared_origin_resizes_and_takes_a_request(page, partner_site, declared, app):
    page.goto(partner_site.origin + "/")
    frame = page.frame_locator("iframe")
    frame.get_by_role("heading", level=1).wait_for()
    # The frame announced its height and the snippet applied it (the catalog is taller than 400 px).
    page.wait_for_function("document.querySelector('iframe').style.height !== ''")
    catalog_height = frame_height(page)
    assert catalog_height > 0
    frame.get_by_role("link", name="Recruter un ou plusieurs salariés").click()
    frame.locator("#full_name").wait_for()
    page.wait_for_function(f"document.querySelector('iframe').getBoundingClientRect().height !== {catalog_height}")
    form_height = frame_height(page)
    assert form_height > catalog_height  # the form is longer: the frame grew with it
    assert axe_violations(page.frames[1]) == []
    for field, value in FILLED:
        frame.locator(f"#{field}").fill(value)
    frame.get_by_role("button", name="Envoyer ma demande").click()
    frame.get_by_text("Merci, votre demande a bien été envoyée").wait_for()
    frame.get_by_text("Portail de l'entrepreneur").first.wait_for()
    page.wait_for_function(f"document.querySelector('iframe').getBoundingClientRect().height < {form_height}")
    with app.app_context():
        solicitation = _db.session.scalar(select(Solicitation))
        assert solicitation.channel == "iframe"
        # The snippet gave the frame the partner's page address: the request keeps it.
        assert solicitation.origin_url == partner_site.origin + "/"


def test_an_undeclared_origin_gets_no_frame(page, live_server, db):
    make_landing(origins=("https://partenaire.example",))
    site = PartnerSite("localhost", live_server, "/iframe/portail")
    try:
        page.goto(site.origin + "/")
        page.wait_for_function("document.querySelector('iframe') !== null")
        page.wait_for_function("window.frames.length === 1")
        frame = page.frames[1]
        frame.wait_for_load_state("load")
        # The browser refused to show our page: an error document instead, and no height message.
        assert frame.url.startswith("chrome-error://") or "Les aides de" not in frame.content()
        assert page.evaluate("document.querySelector('iframe').style.height") == ""
    finally:
        site.close()
