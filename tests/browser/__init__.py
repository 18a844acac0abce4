"""Browser tests (Playwright on Debian's Chromium), and what they share."""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe

TEST_PASSWORD = "motdepasse-tres-long"


def axe_violations(page) -> list[str]:
    """Every axe-core violation of the whole page (its frame included), as readable lines: a
    page is accessible as a whole or not at all."""
    results = Axe().run(page)
    return [
        f"{v['id']} ({v['impact']}): {v['help']} — {[n['target'] for n in v['nodes']][:3]}"
        + (f" ({v['nodes'][0].get('failureSummary', '')})" if v["id"] == "color-contrast" else "")
        for v in results.response["violations"]
    ]


def log_in(page, live_server: str, email: str, password: str = TEST_PASSWORD) -> None:
    """Log in through the real /connexion form and wait for the back office."""
    page.goto(live_server + "/connexion")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/admin/")
