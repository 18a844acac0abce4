"""Browser tests (Playwright on Debian's Chromium), and what they share."""

from __future__ import annotations

TEST_PASSWORD = "motdepasse-tres-long"


def log_in(page, live_server: str, email: str, password: str = TEST_PASSWORD) -> None:
    """Log in through the real /connexion form and wait for the back office."""
    page.goto(live_server + "/connexion")
    page.fill("#email", email)
    page.fill("#password", password)
    page.click("button[type=submit]")
    page.wait_for_url(live_server + "/admin/")
