"""Expert absences: the wording, what the other experts of a need see on their page, and the
back-office form that records them (an absence cannot end before it starts)."""

from __future__ import annotations

import html as html_lib
import re
from datetime import date, timedelta
from types import SimpleNamespace

import pytest
from sqlalchemy import select

from app.experts import _paris_today
from app.extensions import db as _db
from app.models import Expert
from app.services.addressbook.absences import absence_text
from app.services.messaging.links import expert_token
from tests.factories import AntenneFactory, ExpertFactory, InstitutionFactory, make_need, offer
from tests.helpers import csrf_token_from

TODAY = date(2026, 6, 15)


def expert(start: date | None, end: date | None):
    return SimpleNamespace(absent_from=start, absent_until=end)


@pytest.mark.parametrize(
    ("start", "end", "expected"),
    [
        (None, None, None),
        (None, date(2026, 6, 20), "Absent jusqu'au 20/06/2026"),
        (date(2026, 6, 1), date(2026, 6, 20), "Absent jusqu'au 20/06/2026"),
        (date(2026, 6, 15), date(2026, 6, 15), "Absent jusqu'au 15/06/2026"),
        (date(2026, 7, 1), date(2026, 7, 14), "Absent du 01/07/2026 au 14/07/2026"),
        (date(2026, 6, 1), None, "Absent"),
        (date(2026, 7, 1), None, "Absent à partir du 01/07/2026"),
        # Over: nothing to say.
        (date(2026, 5, 1), date(2026, 6, 14), None),
        (None, date(2026, 6, 14), None),
    ],
)
def test_absence_wording(start, end, expected):
    assert absence_text(expert(start, end), TODAY) == expected


# ---------------------------------------------------------------- the expert's page


def page_of(client, match) -> str:
    response = client.get(f"/expert/{expert_token(match)}")
    assert response.status_code == 200
    return html_lib.unescape(response.get_data(as_text=True))


def _item(html: str, name: str) -> str:
    """The « Experts sollicités » list item of ``name``."""
    found = re.search(rf"<li[^>]*>\s*<strong>{re.escape(name)}</strong>.*?</li>", html, re.S)
    assert found, f"{name} is not listed"
    return found.group(0)


def test_the_other_experts_see_an_absence_next_to_the_name(client, db):
    need = make_need(3)
    first, away, later = (m.expert for m in need.matches)
    first.full_name, away.full_name, later.full_name = "Claire Présente", "Paul Absent", "Léa Bientôt"
    today = _paris_today()
    away.absent_from, away.absent_until = today - timedelta(days=2), today + timedelta(days=5)
    later.absent_from, later.absent_until = today + timedelta(days=10), today + timedelta(days=20)
    _db.session.commit()

    html = page_of(client, need.matches[0])
    assert f"Absent jusqu'au {(today + timedelta(days=5)).strftime('%d/%m/%Y')}" in _item(html, "Paul Absent")
    assert (
        f"Absent du {(today + timedelta(days=10)).strftime('%d/%m/%Y')} au {(today + timedelta(days=20)).strftime('%d/%m/%Y')}"
        in _item(html, "Léa Bientôt")
    )
    # Paul sees Claire, who is not away, without any absence.
    assert "Absent" not in _item(page_of(client, need.matches[1]), "Claire Présente")


def test_a_past_absence_is_not_shown(client, db):
    need = make_need(2)
    need.matches[1].expert.full_name = "Paul Revenu"
    need.matches[1].expert.absent_until = _paris_today() - timedelta(days=1)
    _db.session.commit()
    assert "Absent" not in _item(page_of(client, need.matches[0]), "Paul Revenu")


# ---------------------------------------------------------------- the back office


@pytest.fixture
def staff_expert(db):
    antenne = AntenneFactory(institution=InstitutionFactory(name="CMA Bretagne"), name="CMA Rennes")
    found = ExpertFactory(antenne=antenne, full_name="Anne Rennes", email="anne@cma.example")
    offer(found, "tresorerie")
    return found


def edit(client, expert: Expert, **changes):
    url = f"/admin/expert/edit/?id={expert.id}"
    page = client.get(url).get_data(as_text=True)
    subject_ids = re.findall(r'<option selected value="(\d+)">', page) or re.findall(
        r'<option value="(\d+)" selected>', page
    )
    data = {
        "csrf_token": csrf_token_from(page),
        "antenne": str(expert.antenne_id),
        "full_name": expert.full_name,
        "email": expert.email,
        "phone": "",
        "job_title": "",
        "offered_subjects": subject_ids,
        "zone": "",
        "absent_from": "",
        "absent_until": "",
        **changes,
    }
    return client.post(url, data=data)


def test_staff_record_an_absence_and_see_it_in_the_list(admin_client, db, staff_expert):
    response = edit(admin_client, staff_expert, absent_from="2026-12-20", absent_until="2027-01-04")
    assert response.status_code == 302, response.get_data(as_text=True)
    _db.session.expire_all()
    saved = _db.session.get(Expert, staff_expert.id)
    assert (saved.absent_from, saved.absent_until) == (date(2026, 12, 20), date(2027, 1, 4))
    assert [link.institution_subject.subject.slug for link in saved.subjects] == ["tresorerie"]

    listing = html_lib.unescape(admin_client.get("/admin/expert/").get_data(as_text=True))
    assert "Absent jusqu'au" in listing
    assert "20/12/2026" in listing and "04/01/2027" in listing


def test_an_absence_ending_before_it_starts_is_refused_in_french(admin_client, db, staff_expert):
    response = edit(admin_client, staff_expert, absent_from="2026-12-20", absent_until="2026-12-01")
    html = html_lib.unescape(response.get_data(as_text=True))
    assert response.status_code == 200
    assert "La fin de l'absence doit être le jour de son début ou après." in html
    _db.session.expire_all()
    saved = _db.session.get(Expert, staff_expert.id)
    assert saved.absent_from is None and saved.absent_until is None


def test_an_end_date_alone_is_accepted_and_clearing_removes_the_absence(admin_client, db, staff_expert):
    assert edit(admin_client, staff_expert, absent_until="2026-12-01").status_code == 302
    _db.session.expire_all()
    assert _db.session.get(Expert, staff_expert.id).absent_until == date(2026, 12, 1)
    assert edit(admin_client, staff_expert).status_code == 302
    _db.session.expire_all()
    assert _db.session.scalar(select(Expert.absent_until).where(Expert.id == staff_expert.id)) is None


def test_a_date_that_is_not_one_is_refused_without_a_crash(admin_client, db, staff_expert):
    response = edit(admin_client, staff_expert, absent_from="demain")
    html = html_lib.unescape(response.get_data(as_text=True))
    assert response.status_code == 200
    assert "N'est pas une date valide." in html
    assert _db.session.get(Expert, staff_expert.id).absent_from is None
