"""The back-office upload: preview, confirmation, and every bad input answered in French."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from sqlalchemy import func, select

from app.models import AuditEvent, Expert
from app.services.transactions import transaction
from tests.helpers import csrf_token_from, text

DATA = Path(__file__).parent / "data"
URL = "/admin/import/"


def experts(app) -> int:
    from app.extensions import db

    with app.app_context(), transaction():
        return db.session.scalar(select(func.count()).select_from(Expert))


def upload(client, content: bytes, filename: str = "annuaire.csv"):
    token = csrf_token_from(text(client.get(URL)))
    return client.post(
        URL,
        data={"csrf_token": token, "file": (io.BytesIO(content), filename)},
        content_type="multipart/form-data",
    )


def confirm_token(html: str) -> str:
    match = re.search(r'name="token" type="hidden" value="([0-9a-f]{32})"', html) or re.search(
        r'id="token" name="token" type="hidden" value="([0-9a-f]{32})"', html
    )
    assert match, "no confirmation form in the page"
    return match.group(1)


def confirm(client, html: str, token: str | None = None):
    return client.post(
        URL + "confirmer",
        data={"csrf_token": csrf_token_from(html), "token": confirm_token(html) if token is None else token},
    )


def test_anonymous_is_sent_to_login(client):
    response = client.get(URL)
    assert response.status_code == 302
    assert "/connexion" in response.headers["Location"]


def test_page_is_in_the_menu_and_offers_the_form(admin_client):
    page = text(admin_client.get(URL))
    assert "Import d'annuaire" in page
    assert 'type="file"' in page
    assert re.search(r'<label[^>]* for="file">Fichier CSV', page)
    assert "institution,antenne,antenne_zone" in page


def test_preview_shows_counts_and_rows_then_confirm_imports(app, admin_client):
    preview = upload(admin_client, (DATA / "addressbook_valid.csv").read_bytes())
    html = text(preview)

    assert preview.status_code == 200
    assert "Confirmer l'import" in html
    assert re.search(r'<th scope="row">Experts</th>\s*<td>4</td><td>0</td><td>0</td>', html)
    assert "Carole Dubois" in html and "création" in html
    assert experts(app) == 0  # the preview writes nothing

    done = confirm(admin_client, html)

    assert done.status_code == 302
    assert experts(app) == 4
    follow = text(admin_client.get(done.headers["Location"]))
    assert "Annuaire importé" in follow and "experts : 4 créé(s)" in follow
    from app.extensions import db

    with app.app_context(), transaction():
        actors = set(db.session.scalars(select(AuditEvent.actor).where(AuditEvent.object_type == "Expert")))
    assert actors == {"support@place.example"}


def test_confirming_twice_imports_once(app, admin_client):
    html = text(upload(admin_client, (DATA / "addressbook_valid.csv").read_bytes()))
    assert confirm(admin_client, html).status_code == 302
    again = confirm(admin_client, html)
    assert again.status_code == 302
    assert "plus valable" in text(admin_client.get(again.headers["Location"]))
    assert experts(app) == 4


def test_preview_lists_every_error_with_its_line_and_offers_no_confirmation(app, admin_client):
    response = upload(admin_client, (DATA / "addressbook_invalid.csv").read_bytes())
    html = text(response)

    assert "2 erreur(s) : rien ne sera importé" in html
    assert re.search(r"<td>3</td><td>adresse email invalide « foo@ »</td>", html)
    assert re.search(r"<td>4</td><td>sujet inconnu « n-existe-pas »</td>", html)
    assert "Confirmer l'import" not in html
    assert experts(app) == 0


def test_preview_shows_updates_with_changed_fields(app, admin_client):
    from app.services.addressbook.importer import import_addressbook

    with app.app_context(), transaction():
        import_addressbook((DATA / "addressbook_valid.csv").read_bytes())
    changed = (DATA / "addressbook_valid.csv").read_text().replace("04 72 00 00 01", "04 72 99 99 99")

    html = text(upload(admin_client, changed.encode()))

    assert "mise à jour" in html
    assert "téléphone : 04 72 00 00 01 → 04 72 99 99 99" in html
    assert re.search(r'<th scope="row">Experts</th>\s*<td>0</td><td>1</td><td>3</td>', html)


def test_data_changed_between_preview_and_confirmation(app, admin_client):
    html = text(upload(admin_client, (DATA / "addressbook_valid.csv").read_bytes()))
    from app.services.reference.catalog import archive_subject
    from tests.factories import subject

    with app.app_context(), transaction():
        archive_subject(subject("export"))

    response = confirm(admin_client, html)

    assert response.status_code == 422
    body = text(response)
    assert "rien n'a été importé" in body
    assert "le sujet « export » est archivé" in body
    assert experts(app) == 0


@pytest.mark.parametrize(
    "token",
    ["../../etc/passwd", "0" * 32, "g" * 32, "", "abc"],
)
def test_tampered_token_is_rejected(app, admin_client, token):
    html = text(upload(admin_client, (DATA / "addressbook_valid.csv").read_bytes()))

    response = confirm(admin_client, html, token=token)

    assert response.status_code == 302
    assert "plus valable" in text(admin_client.get(response.headers["Location"]))
    assert experts(app) == 0


def test_upload_of_another_user_is_rejected(app, admin_client):
    """A well-formed token staged by someone else cannot be confirmed by this user."""
    from app.extensions import db
    from app.models import AddressbookUpload
    from app.services.accounts.users import create_user
    from app.services.addressbook.uploads import stage_upload

    html = text(upload(admin_client, (DATA / "addressbook_valid.csv").read_bytes()))
    with app.app_context(), transaction():
        colleague = create_user("collegue@place.example", role="admin", password="motdepasse-tres-long")
        other = stage_upload((DATA / "addressbook_valid.csv").read_bytes(), filename="a.csv", user_id=colleague.id)

    assert confirm(admin_client, html, token=other).status_code == 302
    assert experts(app) == 0
    with app.app_context(), transaction():
        # Both previews are still waiting for their own uploader.
        assert db.session.scalar(select(func.count()).select_from(AddressbookUpload)) == 2


def test_stale_preview_cannot_be_confirmed(app, admin_client):
    from datetime import timedelta

    from app.extensions import db
    from app.models import AddressbookUpload
    from app.services.addressbook.uploads import UPLOAD_TTL

    html = text(upload(admin_client, (DATA / "addressbook_valid.csv").read_bytes()))
    with app.app_context(), transaction():
        staged = db.session.scalar(select(AddressbookUpload))
        staged.created_at = staged.created_at - UPLOAD_TTL - timedelta(minutes=1)
        db.session.commit()

    response = confirm(admin_client, html)
    assert response.status_code == 302
    assert "plus valable" in text(admin_client.get(response.headers["Location"]))
    assert experts(app) == 0


def test_missing_csrf_is_rejected(app, admin_client):
    response = admin_client.post(
        URL,
        data={"file": (io.BytesIO((DATA / "addressbook_valid.csv").read_bytes()), "annuaire.csv")},
        content_type="multipart/form-data",
    )
    assert response.status_code == 400
    html = text(upload(admin_client, (DATA / "addressbook_valid.csv").read_bytes()))
    refused = admin_client.post(URL + "confirmer", data={"token": confirm_token(html)})
    assert refused.status_code == 400
    assert experts(app) == 0


@pytest.mark.parametrize(
    ("content", "filename", "message"),
    [
        (None, None, "Choisissez un fichier CSV à importer."),
        (b"", "annuaire.csv", "Le fichier est vide."),
        (b"  \n", "annuaire.csv", "Le fichier est vide."),
        (b"institution\n", "annuaire.xlsx", "Le fichier doit être au format CSV (extension .csv)."),
    ],
)
def test_bad_uploads_are_explained(admin_client, content, filename, message):
    token = csrf_token_from(text(admin_client.get(URL)))
    data = {"csrf_token": token}
    if content is not None:
        data["file"] = (io.BytesIO(content), filename)
    response = admin_client.post(URL, data=data, content_type="multipart/form-data")
    assert response.status_code == 422
    assert message in text(response)


def test_binary_garbage_is_an_error_in_the_preview(app, admin_client):
    response = upload(admin_client, bytes(range(256)) * 8)
    assert response.status_code == 200
    html = text(response)
    assert "UTF-8" in html
    assert "Confirmer l'import" not in html


def test_file_over_the_import_limit(app, admin_client, monkeypatch):
    monkeypatch.setitem(app.config, "ADDRESSBOOK_IMPORT_MAX_BYTES", 100 * 1024)
    response = upload(admin_client, b"x" * (100 * 1024 + 1))
    assert response.status_code == 422
    assert "dépasse la taille maximale de 100 Ko" in text(response)


def test_body_over_the_request_limit_is_answered_in_french(app, admin_client, monkeypatch):
    monkeypatch.setitem(app.config, "MAX_CONTENT_LENGTH", 2048)
    response = upload(admin_client, b"x" * 4096)
    assert response.status_code == 413
    assert "dépasse la taille maximale" in text(response)
