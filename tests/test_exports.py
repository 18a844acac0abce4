"""Exports of the request lists (« Mes exports »): the file is the filtered list as staff saw it
(search, filters, tab, French headers and labels, Paris dates), built by a job inline or by a
real RQ worker, with its progress committed batch by batch, downloadable by its owner only for
seven days, then purged."""

from __future__ import annotations

import csv
import io
import re
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import openpyxl
import pytest
from flask import current_app, g
from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.admin.export_builder import build_export
from app.models import Export, Solicitation
from app.models.base import utcnow
from app.services.errors import ServiceError
from app.services.requests import exports as service
from app.services.transactions import transaction
from tests.factories import ExpertFactory, ExportFactory, make_need, make_solicitation
from tests.helpers import body, csrf_token_from, filter_arg, login


def view_for(endpoint: str):
    return next(v for v in current_app.extensions["pde_admin"]._views if getattr(v, "endpoint", "") == endpoint)


@pytest.fixture
def needs(db):
    """Four needs; « boulangerie » taken care of: Morel (March) and Durand (January, late evening
    in UTC, so already the next day in Paris)."""
    return {
        "durand": make_need(
            0,
            company="Boulangerie Durand",
            statuses=("taking_care", "quo"),
            created_at=datetime(2026, 1, 15, 23, 30, tzinfo=UTC),
        ),
        "petit": make_need(
            0, company="Boulangerie Petit", statuses=("quo",), created_at=datetime(2026, 2, 1, 9, tzinfo=UTC)
        ),
        "martin": make_need(
            0, company="Garage Martin", statuses=("taking_care",), created_at=datetime(2026, 2, 10, 9, tzinfo=UTC)
        ),
        "morel": make_need(
            0,
            company="Boulangerie Morel",
            statuses=("taking_care", "quo", "quo"),
            created_at=datetime(2026, 3, 1, 12, tzinfo=UTC),
        ),
    }


def page_with_form(client, url: str) -> str:
    """A page whose CSRF token matches the session. The test's application context (and so
    ``g``, where Flask-WTF caches the token) outlives each request of the test client; a login
    that renews the session would otherwise leave a stale token in ``g``."""
    g.pop("csrf_token", None)
    return body(client.get(url))


def ask_export(client, kind: str, fmt: str, list_url: str, **args):
    """Click « Exporter en … » on the list at ``list_url?args``: post the form the page holds."""
    query = urlencode(args)
    page = page_with_form(client, f"{list_url}?{query}")
    assert f'value="{fmt}"' in page and "Exporter en " + fmt.upper() in page
    form = {"csrf_token": csrf_token_from(page), "kind": kind, "format": fmt, "query": query}
    return client.post("/admin/exports/demander", data=form)


def only_export(db) -> Export:
    db.session.expire_all()
    found = db.session.scalars(select(Export)).all()
    assert len(found) == 1
    return found[0]


def download(client, export: Export):
    return client.get(f"/admin/exports/{export.id}/fichier")


def read_csv(content: bytes) -> list[dict[str, str]]:
    assert content.startswith(b"\xef\xbb\xbf"), "Excel needs the BOM to read UTF-8"
    text = content.decode("utf-8-sig")
    assert "\r\n" in text
    rows = list(csv.reader(io.StringIO(text, newline=""), delimiter=";"))
    header, *lines = rows
    return [dict(zip(header, line, strict=True)) for line in lines], header


def read_xlsx(content: bytes) -> tuple[list[dict], list[str]]:
    book = openpyxl.load_workbook(io.BytesIO(content), read_only=True)
    sheet = book.worksheets[0]
    header, *lines = [list(row) for row in sheet.iter_rows(values_only=True)]
    book.close()
    return [dict(zip(header, line, strict=True)) for line in lines], header


def today_in_paris() -> str:
    return datetime.now(UTC).astimezone(service.PARIS).date().isoformat()


# ---------------------------------------------------------------- the file is the list


def test_the_needs_list_offers_both_exports_and_others_do_not(admin_client, db):
    page = body(admin_client.get("/admin/need/"))
    assert "Exporter en CSV" in page and "Exporter en XLSX" in page
    assert 'action="/admin/exports/demander"' in page
    address_book = body(admin_client.get("/admin/institution/"))
    assert "Exporter en XLSX" not in address_book


def test_csv_holds_the_filtered_list_with_french_headers_and_paris_dates(admin_client, db, needs):
    status = filter_arg("need", "Statut")
    response = ask_export(
        admin_client, "needs", "csv", "/admin/need/", search="boulangerie", **{f"flt0_{status}": "taking_care"}
    )
    assert response.status_code == 303
    assert response.headers["Location"].startswith("/admin/exports/")
    export = only_export(db)
    # Without Redis the job ran inline: the file is ready when the page comes back.
    assert export.state == "done" and export.rows_done == export.rows_total == 2
    page = body(admin_client.get(response.headers["Location"]))
    assert "Prêt" in page and "Recherche « boulangerie »" in page and "Statut" in page

    file = download(admin_client, export)
    assert file.status_code == 200
    assert file.headers["Content-Disposition"] == f"attachment; filename=besoins-{today_in_paris()}.csv"
    assert file.mimetype == "text/csv"
    rows, header = read_csv(file.data)
    assert header[:6] == ["Date", "Sujet", "Entreprise", "SIRET", "Commune", "Statut"]
    assert "Mises en relation" in header and "Dont positives" in header
    # Newest first, as the list: Morel (March) then Durand; Petit (waiting) and the garage are out.
    assert [row["Entreprise"] for row in rows] == ["Boulangerie Morel", "Boulangerie Durand"]
    morel, durand = rows
    assert morel["Date"] == "01/03/2026 13:00"
    assert durand["Date"] == "16/01/2026 00:30"  # 23:30 UTC is past midnight in Paris
    assert durand["Statut"] == morel["Statut"] == "Prise en charge"
    assert (durand["Mises en relation"], durand["Dont positives"]) == ("2", "1")
    assert (morel["Mises en relation"], morel["Dont positives"]) == ("3", "1")
    assert durand["SIRET"] == needs["durand"].facility.siret
    assert durand["Commune"] == str(needs["durand"].facility.commune)
    assert durand["Sujet"] == needs["durand"].subject.label


def test_xlsx_holds_the_same_rows_with_real_dates(admin_client, db, needs):
    status = filter_arg("need", "Statut")
    ask_export(admin_client, "needs", "xlsx", "/admin/need/", search="boulangerie", **{f"flt0_{status}": "taking_care"})
    export = only_export(db)
    file = download(admin_client, export)
    assert file.headers["Content-Disposition"] == f"attachment; filename=besoins-{today_in_paris()}.xlsx"
    assert file.mimetype == "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    rows, header = read_xlsx(file.data)
    assert header[:6] == ["Date", "Sujet", "Entreprise", "SIRET", "Commune", "Statut"]
    assert [row["Entreprise"] for row in rows] == ["Boulangerie Morel", "Boulangerie Durand"]
    durand = rows[1]
    assert durand["Date"] == datetime(2026, 1, 16, 0, 30)  # Paris time
    assert durand["Statut"] == "Prise en charge"
    assert (durand["Mises en relation"], durand["Dont positives"]) == (2, 1)
    assert durand["SIRET"] == needs["durand"].facility.siret  # text, leading zeros kept


def test_the_csv_and_the_list_page_agree(admin_client, db, needs):
    """Whatever the view shows on screen, the file shows in the same order."""
    ask_export(admin_client, "needs", "csv", "/admin/need/")
    rows, _header = read_csv(download(admin_client, only_export(db)).data)
    page = body(admin_client.get("/admin/need/"))
    names = [row["Entreprise"] for row in rows]
    assert len(names) == 4
    assert sorted(names, key=page.index) == names


def ask(db, name: str, status: str, *, days_ago: int, notes: tuple[str, ...] = ()) -> Solicitation:
    return make_solicitation(
        full_name=name, status=status, qualification_notes=list(notes), created_at=utcnow() - timedelta(days=days_ago)
    )


def test_the_solicitation_tab_is_honoured(admin_client, db):
    ask(db, "Alix Récente", "in_progress", days_ago=1)
    ask(db, "Bastien Ancien", "in_progress", days_ago=5)
    ask(db, "Claude Transmis", "processed", days_ago=3)
    ask(db, "Dominique Abandon", "canceled", days_ago=2, notes=("Abandonnée : hors sujet",))
    ask_export(admin_client, "solicitations", "csv", "/admin/solicitation/", onglet="a-qualifier")
    export = only_export(db)
    assert export.params == {"onglet": "a-qualifier"}
    rows, header = read_csv(download(admin_client, export).data)
    assert "Nom" in header and "Statut" in header and "Signaux" in header
    # The queue is served oldest first, and holds only the requests to qualify.
    assert [row["Nom"] for row in rows] == ["Bastien Ancien", "Alix Récente"]
    assert {row["Statut"] for row in rows} == {"À qualifier"}
    page = body(admin_client.get("/admin/exports/"))
    assert "Onglet « À qualifier »" in page


def test_text_that_looks_like_a_formula_stays_text(admin_client, db):
    ask(db, '=HYPERLINK("http://x.example","clic")', "in_progress", days_ago=1)
    solicitation = db.session.scalars(select(Solicitation)).one()
    solicitation.description = "Ligne\x0bcassée @SOMME(A1)"
    solicitation.phone = "+33472000000"
    db.session.commit()
    ask_export(admin_client, "solicitations", "csv", "/admin/solicitation/")
    rows, _header = read_csv(download(admin_client, only_export(db)).data)
    assert rows[0]["Nom"] == '\'=HYPERLINK("http://x.example","clic")'
    assert rows[0]["Téléphone"] == "+33472000000"  # a phone number is not a formula

    db.session.execute(Export.__table__.delete())
    db.session.commit()
    ask_export(admin_client, "solicitations", "xlsx", "/admin/solicitation/")
    export = only_export(db)
    assert export.state == "done", export.error
    rows, _header = read_xlsx(download(admin_client, export).data)
    assert rows[0]["Nom"] == '=HYPERLINK("http://x.example","clic")'  # as typed, never run
    assert rows[0]["Description"] == "Lignecassée @SOMME(A1)"  # a control character Excel refuses is dropped


# ---------------------------------------------------------------- progress, failure, twice


def test_the_progress_is_committed_after_each_batch(app, db, admin_user):
    for n in range(5):
        make_need(0, company=f"Entreprise {n}", statuses=("quo",), created_at=utcnow() - timedelta(days=n))
    export = ExportFactory(user=admin_user)
    seen = []

    def read_from_elsewhere(session):
        # What the page polling the status would read, from another connection, after each commit.
        with db.engine.connect() as connection:
            seen.append(
                tuple(
                    connection.execute(
                        select(Export.state, Export.rows_done, Export.rows_total).where(Export.id == export.id)
                    ).one()
                )
            )

    event.listen(Session, "after_commit", read_from_elsewhere)
    try:
        assert build_export(export.id, batch_size=2) == "done"
    finally:
        event.remove(Session, "after_commit", read_from_elsewhere)
    progress = [step for index, step in enumerate(seen) if index == 0 or step != seen[index - 1]]
    assert progress == [
        ("running", 0, None),
        ("running", 0, 5),
        ("running", 2, 5),
        ("running", 4, 5),
        ("running", 5, 5),
        ("done", 5, 5),
    ]


def test_a_batch_costs_the_same_queries_whatever_its_length(app, db, admin_user, count_queries):
    def queries_for(count: int) -> int:
        db.session.execute(Export.__table__.delete())
        for n in range(count):
            make_need(0, company=f"Entreprise {count}-{n}", statuses=("quo", "taking_care"), created_at=utcnow())
        export = ExportFactory(user=admin_user, format="xlsx")
        with count_queries() as counter:
            assert build_export(export.id) == "done"
        return counter.count

    assert queries_for(2) == queries_for(9)


def test_a_done_export_is_left_alone_when_the_job_runs_twice(app, db, admin_user, needs):
    export = ExportFactory(user=admin_user)
    assert build_export(export.id) == "done"
    db.session.expire_all()
    first = (export.content, export.finished_at)
    assert build_export(export.id) == "done"
    db.session.expire_all()
    assert (export.content, export.finished_at) == first


def test_a_failure_is_recorded_in_french(app, db, admin_user, needs):
    from app.services.accounts.users import create_user, delete_user

    with transaction():
        gone = create_user("parti@place.example", role="admin", password="motdepasse-tres-long")
    export = ExportFactory(user=gone)
    with transaction():
        delete_user(gone)
    assert build_export(export.id) == "failed"
    db.session.expire_all()
    assert export.state == "failed"
    assert export.error == "Le compte qui a demandé cet export n'est plus actif."
    assert export.content is None and export.finished_at is not None


def test_a_failed_export_shows_its_reason_on_the_page(admin_client, db, admin_user):
    export = ExportFactory(user=admin_user)
    export.state, export.error = "failed", "Ce compte n'a plus accès à cette liste : l'export n'a pas été préparé."
    db.session.commit()
    page = body(admin_client.get("/admin/exports/"))
    assert "Échec" in page and "Ce compte n&#39;a plus accès à cette liste" in page
    assert f"/admin/exports/{export.id}/fichier" not in page


def test_an_export_without_a_queue_fails_in_french(make_app, db, admin_user, needs):
    """Redis down when the export is asked for: the row says so instead of waiting forever."""
    down = "redis://127.0.0.1:1/0?socket_connect_timeout=1"
    other = make_app(REDIS_URL=down, RQ_CONNECTION=down, RQ_CONNECTION_CLASS="redis.Redis", RQ_ASYNC=True)
    with other.test_client() as client:
        assert login(client, admin_user.email).status_code == 302
        response = ask_export(client, "needs", "csv", "/admin/need/")
        assert response.status_code == 303
        page = body(client.get(response.headers["Location"]))
    export = only_export(db)
    assert export.state == "failed"
    assert export.error.startswith("La file des tâches est injoignable")
    assert "La file des tâches est injoignable" in page


# ---------------------------------------------------------------- asking: validation


def test_a_request_needs_its_csrf_token(admin_client, db):
    response = admin_client.post("/admin/exports/demander", data={"kind": "needs", "format": "csv", "query": ""})
    assert response.status_code == 400
    assert db.session.scalars(select(Export)).all() == []


@pytest.mark.parametrize(
    ("kind", "fmt", "message"),
    [
        ("experts", "csv", "Cette liste ne peut pas être exportée."),
        ("needs", "pdf", "Format d&#39;export inconnu : choisissez CSV ou XLSX."),
    ],
)
def test_an_unknown_list_or_format_is_explained(admin_client, db, kind, fmt, message):
    page = page_with_form(admin_client, "/admin/need/")
    response = admin_client.post(
        "/admin/exports/demander",
        data={"csrf_token": csrf_token_from(page), "kind": kind, "format": fmt, "query": ""},
        follow_redirects=True,
    )
    assert response.status_code == 200
    assert message in body(response)
    assert db.session.scalars(select(Export)).all() == []


def test_params_keep_what_selects_rows():
    assert service.clean_params(
        {
            "page": "3",
            "page_size": "100",
            "search": "durand",
            "flt0_1": "quo",
            "onglet": "spam",
            "sort": "2",
            "x y": "?",
        }
    ) == {"search": "durand", "flt0_1": "quo", "onglet": "spam", "sort": "2"}
    with pytest.raises(ServiceError, match="dépasse 1000 caractères"):
        service.clean_params({"search": "a" * 1001})


def test_too_many_exports_at_once_are_refused(app, db, admin_user):
    for _ in range(service.MAX_PENDING_EXPORTS):
        ExportFactory(user=admin_user)
    with pytest.raises(ServiceError, match="exports en préparation"):
        service.request_export(admin_user, "needs", "csv", {})


# ---------------------------------------------------------------- the owner only


def test_only_the_owner_downloads(make_app, admin_client, db, admin_user, needs):
    from app.services.accounts.users import create_user

    ask_export(admin_client, "needs", "csv", "/admin/need/")
    export = only_export(db)
    assert download(admin_client, export).status_code == 200
    assert admin_client.get(f"/admin/exports/{export.id}/etat").json["state"] == "done"
    with transaction():
        create_user("collegue@place.example", role="admin", password="motdepasse-tres-long")

    # Other people's clients run on an app of their own: the test's application context (and
    # its ``g``, where Flask-Login keeps the current user) belongs to the staff member above.
    other = make_app()
    with other.test_client() as colleague:
        assert login(colleague, "collegue@place.example").status_code == 302
        assert colleague.get(f"/admin/exports/{export.id}/fichier").status_code == 404
        assert colleague.get(f"/admin/exports/{export.id}/etat").status_code == 404
        assert colleague.get("/admin/exports/999999/fichier").status_code == 404
        page = body(colleague.get("/admin/exports/"))
        assert f"/admin/exports/{export.id}/" not in page and "aucun export" in page

    with other.test_client() as anonymous:
        for url in ("/admin/exports/", f"/admin/exports/{export.id}/fichier", f"/admin/exports/{export.id}/etat"):
            response = anonymous.get(url)
            assert response.status_code == 302
            assert response.headers["Location"].startswith("/connexion")


def test_a_referent_exports_their_own_scope_only(referent_client, db, needs):
    """The file is built as its owner: a referent's needs list holds the needs sent to their
    institution's experts, and so does their file."""
    from app.models import Institution
    from tests.factories import AntenneFactory

    bpi = db.session.scalar(select(Institution).where(Institution.slug == "bpi"))
    expert = ExpertFactory(antenne=AntenneFactory(institution=bpi))
    make_need(
        0,
        company="Boulangerie de la BPI",
        statuses=("quo",),
        created_at=datetime(2026, 4, 1, tzinfo=UTC),
        experts=[expert],
    )
    response = ask_export(referent_client, "needs", "csv", "/admin/need/")
    assert response.status_code == 303
    export = only_export(db)
    assert export.state == "done", export.error
    rows, _header = read_csv(download(referent_client, export).data)
    assert [row["Entreprise"] for row in rows] == ["Boulangerie de la BPI"]


def test_a_referent_cannot_export_a_list_they_do_not_see(referent_client, db):
    token = csrf_token_from(page_with_form(referent_client, "/admin/need/"))
    response = referent_client.post(
        "/admin/exports/demander",
        data={"csrf_token": token, "kind": "solicitations", "format": "csv", "query": ""},
        follow_redirects=True,
    )
    assert "Vous n&#39;avez pas accès à cette liste." in body(response)
    assert db.session.scalars(select(Export)).all() == []


def test_a_referent_never_gets_a_staff_export(admin_user, referent_client, db):
    export = ExportFactory(user=admin_user)
    export.state, export.content = "done", b"x"
    db.session.commit()
    assert referent_client.get(f"/admin/exports/{export.id}/fichier").status_code in (403, 404)
    assert referent_client.get(f"/admin/exports/{export.id}/etat").status_code in (403, 404)


# ---------------------------------------------------------------- expiry and purge


def test_an_expired_export_is_not_served_then_purged(admin_client, db, admin_user, needs):
    now = utcnow()
    old = ExportFactory(user=admin_user, created_at=now - timedelta(days=8))
    recent = ExportFactory(user=admin_user, created_at=now - timedelta(days=6))
    for export in (old, recent):
        export.state, export.content, export.filename = "done", b"x", "besoins.csv"
    db.session.commit()
    old_id, recent_id = old.id, recent.id

    response = admin_client.get(f"/admin/exports/{old_id}/fichier", follow_redirects=True)
    assert "Ce fichier a expiré : demandez un nouvel export." in body(response)
    assert download(admin_client, recent).status_code == 200
    assert "Expiré" in body(admin_client.get("/admin/exports/"))

    assert service.purge_exports() == 1
    db.session.expire_all()
    assert db.session.get(Export, old_id) is None
    assert db.session.get(Export, recent_id) is not None
    assert admin_client.get(f"/admin/exports/{old_id}/fichier").status_code == 404
    # A day later, the second one goes too.
    assert service.purge_exports(now + timedelta(days=1, minutes=1)) == 1


def test_the_purge_is_a_periodic_job(app):
    from app.jobs import purge_exports_job

    registered = app.extensions["rq"]._cron_job_data
    assert any(item["func"] is purge_exports_job.func for item in registered)


# ---------------------------------------------------------------- with a real Redis worker


def test_a_real_worker_builds_the_file(make_redis_app, run_worker, db, admin_user, needs):
    worker_app = make_redis_app()
    with worker_app.test_client() as client:
        assert login(client, admin_user.email).status_code == 302
        status = filter_arg("need", "Statut")
        response = ask_export(client, "needs", "xlsx", "/admin/need/", **{f"flt0_{status}": "taking_care"})
        export = only_export(db)
        assert export.state == "queued"  # waiting in Redis
        page = body(client.get(response.headers["Location"]))
        assert "En attente" in page and "<progress" in page and "Actualiser la page" in page
        assert client.get(f"/admin/exports/{export.id}/etat").json["pending"] is True
        assert client.get(f"/admin/exports/{export.id}/fichier", follow_redirects=True).status_code == 200

        worker = run_worker(worker_app)
        assert worker.succeeded == [f"export-{export.id}"] and worker.failed == []

        state = client.get(f"/admin/exports/{export.id}/etat").json
        assert (state["state"], state["rows_done"], state["rows_total"], state["pending"]) == ("done", 3, 3, False)
        assert state["download_url"] == f"/admin/exports/{export.id}/fichier"
        rows, _header = read_xlsx(client.get(state["download_url"]).data)
    assert [row["Entreprise"] for row in rows] == ["Boulangerie Morel", "Garage Martin", "Boulangerie Durand"]


def test_status_json_for_the_progress_bar(admin_client, db, admin_user):
    export = ExportFactory(user=admin_user)
    export.state, export.rows_done, export.rows_total = "running", 1200, 5000
    db.session.commit()
    state = admin_client.get(f"/admin/exports/{export.id}/etat").json
    assert (state["percent"], state["progress_text"], state["pending"]) == (24, "1200 / 5000 ligne(s)", True)
    page = body(admin_client.get("/admin/exports/"))
    assert re.search(r'<progress[^>]*max="5000" value="1200"', page)
    assert "1200 / 5000 ligne(s)" in page


def test_a_list_too_long_for_an_immediate_export_is_sent_to_the_prepared_one(admin_client, app, db, monkeypatch):

    make_need(1)  # one row: over a limit of 0, within a limit of 1
    monkeypatch.setitem(app.config, "EXPORT_IMMEDIATE_MAX_ROWS", 0)
    response = admin_client.get("/admin/need/export/csv/", query_string={"search": ""})
    assert response.status_code == 302
    followed = admin_client.get(response.headers["Location"]).get_data(as_text=True)
    assert "au-delà des 0 d&#39;un export immédiat" in followed or "au-delà des 0 d'un export immédiat" in followed
    monkeypatch.setitem(app.config, "EXPORT_IMMEDIATE_MAX_ROWS", 1)
    response = admin_client.get("/admin/need/export/csv/")
    assert response.status_code == 200
    assert "Boulangerie Durand" in response.get_data(as_text=True)
