"""Exports in a real Chromium: staff click « Exporter en XLSX » on the needs list, follow the
progress on « Mes exports » and download the file, which opens in a spreadsheet library."""

from __future__ import annotations

import io
import re
from datetime import UTC, datetime
from pathlib import Path

import openpyxl
import pytest

from app.admin.export_builder import build_export
from app.models import Export
from tests.browser import axe_violations
from tests.browser import log_in as _log_in
from tests.factories import ExportFactory, make_need

pytestmark = pytest.mark.browser


def test_export_the_needs_list_to_xlsx_and_download_it(page, live_server, admin_user, db):
    make_need(
        0, company="Boulangerie Durand", statuses=("taking_care",), created_at=datetime(2026, 1, 15, 23, 30, tzinfo=UTC)
    )
    make_need(0, company="Garage Martin", statuses=("quo",), created_at=datetime(2026, 2, 1, 9, tzinfo=UTC))
    _log_in(page, live_server, admin_user.email)
    page.goto(live_server + "/admin/need/?search=boulangerie")
    assert axe_violations(page) == []
    # With the keyboard: the export bar is a plain form with native buttons.
    page.get_by_role("button", name="Exporter en XLSX").focus()
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r".*/admin/exports/.*"))
    row = page.locator("#exports-table tbody tr").first
    # Without Redis the job ran with the request: the file is ready.
    row.locator('[data-role="state"]', has_text="Prêt").wait_for()
    assert "Recherche « boulangerie »" in row.inner_text()
    assert row.locator("progress").get_attribute("value") == "1"
    assert axe_violations(page) == []

    with page.expect_download() as info:
        row.get_by_role("link", name=re.compile("Télécharger")).focus()
        page.keyboard.press("Enter")
    download = info.value
    assert re.fullmatch(r"besoins-\d{4}-\d{2}-\d{2}\.xlsx", download.suggested_filename)
    # Playwright stores the download without its extension: openpyxl gets the bytes.
    book = openpyxl.load_workbook(io.BytesIO(Path(download.path()).read_bytes()), read_only=True)
    rows = [list(values) for values in book.worksheets[0].iter_rows(values_only=True)]
    book.close()
    header, *lines = rows
    assert header[:3] == ["Date", "Sujet", "Entreprise"]
    assert len(lines) == 1
    line = dict(zip(header, lines[0], strict=True))
    assert line["Entreprise"] == "Boulangerie Durand"
    assert line["Date"] == datetime(2026, 1, 16, 0, 30)
    assert line["Statut"] == "Prise en charge"


def test_the_progress_updates_without_reloading(page, live_server, admin_user, db):
    """An export still waiting for its worker: the page polls and shows « Prêt » and the link
    when the file is built, with no reload (the marker set in the page survives)."""
    for n in range(3):
        make_need(0, company=f"Entreprise {n}", statuses=("quo",), created_at=datetime(2026, 2, n + 1, tzinfo=UTC))
    export = ExportFactory(user=admin_user, format="xlsx")
    _log_in(page, live_server, admin_user.email)
    page.set_viewport_size({"width": 375, "height": 740})  # a phone
    page.goto(live_server + "/admin/exports/")
    row = page.locator(f"#export-{export.id}")
    assert "En attente" in row.inner_text()
    assert page.get_by_role("link", name="Actualiser la page").is_visible()
    assert axe_violations(page) == []
    page.evaluate("window.__stillTheSamePage = true")

    assert build_export(export.id) == "done"  # what the worker does

    row.locator('[data-role="state"]', has_text="Prêt").wait_for()
    row.get_by_role("link", name=re.compile("Télécharger")).wait_for()
    assert row.locator('[data-role="progress-text"]').inner_text() == "3 ligne(s)"
    assert page.evaluate("window.__stillTheSamePage") is True
    assert axe_violations(page) == []
    # On a phone the table scrolls inside its frame; the page itself does not overflow.
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    db.session.expire_all()
    assert db.session.get(Export, export.id).rows_done == 3
