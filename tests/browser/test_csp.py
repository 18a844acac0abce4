"""The Content-Security-Policy blocks nothing the service's own pages need: Chromium reports
no violation on the public form, the back office's lists, a need's page and the simulator."""

from __future__ import annotations

import pytest

from app.models import Need
from tests.browser import log_in

pytestmark = pytest.mark.browser


def test_no_page_trips_the_content_security_policy(page, live_server, admin_user, scope_world):
    violations = []
    page.on(
        "console",
        lambda message: (
            violations.append(f"{page.url} {message.location} {message.text[:60]}")
            if "Content Security Policy" in message.text
            else None
        ),
    )
    for path in ("/", "/demande/recrutement"):
        page.goto(live_server + path)
        page.wait_for_load_state("networkidle")
    log_in(page, live_server, admin_user.email)
    for path in (
        "/admin/",
        "/admin/need/",
        f"/admin/need/details/?id={scope_world.ids[Need]['A1']}",
        "/admin/routing/",
        "/admin/relances/besoins",
        "/admin/expert/",
    ):
        page.goto(live_server + path)
        page.wait_for_load_state("networkidle")
    assert violations == [], "\n".join(f"{v[:300]}" for v in violations)
