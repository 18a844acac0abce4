"""Findings 3, 9 and 15 of the security review: what no page accepts.

- 9: a NUL byte or an out-of-range id in any back-office list's search or filters is a clear
  French refusal, never a 500 (``app/guards.py`` and the filters' guard in ``admin/base.py``);
- 15: the public form refuses a file where text is expected and a NUL in its subject;
- 3: a referent's filter value must be one the page offers them: another institution's (or a
  sibling antenne's) id is refused, in the list and in the prepared export, instead of telling
  them which of their needs also went there.
"""

from __future__ import annotations

import io

from sqlalchemy import select

from app.models import Antenne, Export, Institution, Need
from app.services.requests.exports import request_export
from app.services.transactions import transaction
from tests.helpers import body, csrf_token_from, filter_arg, text

REFUSED_FILTER = "Valeur de filtre non valide"


def _model_views(app):
    return [v for v in app.extensions["pde_admin"]._views if getattr(v, "model", None) is not None]


def test_no_list_answers_500_to_a_nul_or_an_oversized_id(app, db, admin_client, scope_world):
    problems = []
    for view in _model_views(app):
        searched = admin_client.get(f"{view.url}/?search=a%00b")
        if searched.status_code != 400 or "caractère invalide" not in text(searched):
            problems.append(f"{view.endpoint} search: {searched.status_code}")
        for arg, (_index, flt) in (view._filter_args or {}).items():
            for value in ("%00", "99999999999999999999", "-99999999999999999999", "x" * 600):
                response = admin_client.get(f"{view.url}/?flt0_{arg}={value}")
                if response.status_code >= 500:
                    problems.append(f"{view.endpoint} « {flt.name} » {value[:25]!r}: {response.status_code}")
    assert problems == []


def test_an_oversized_id_is_refused_with_a_message(admin_client, db, scope_world):
    page = text(admin_client.get(f"/admin/need/?flt0_{filter_arg('need', 'Sujet')}=99999999999999999999"))
    assert REFUSED_FILTER in page
    nul = admin_client.get("/admin/expert/?search=%00")
    assert nul.status_code == 400
    assert "La requête contient un caractère invalide (octet nul)" in text(nul)


def test_the_public_form_refuses_a_file_and_a_nul_subject(client, db):
    assert client.get("/demande/%00").status_code == 400
    page = client.get("/demande/recrutement")
    assert page.status_code == 200
    posted = client.post(
        "/demande/recrutement",
        data={"csrf_token": csrf_token_from(body(page)), "full_name": (io.BytesIO(b"Marie"), "nom.txt")},
        content_type="multipart/form-data",
    )
    assert posted.status_code == 400
    assert "Ce formulaire n'accepte pas de fichier" in text(posted)


def test_a_back_office_form_refuses_a_nul(admin_client, db, scope_world):
    page = admin_client.get("/admin/institution/new/")
    posted = admin_client.post(
        "/admin/institution/new/", data={"csrf_token": csrf_token_from(body(page)), "name": "Alpha\x00", "slug": "a"}
    )
    assert posted.status_code == 400
    assert db.session.scalar(select(Institution).where(Institution.slug == "a")) is None


def _ids(world):
    return {
        "zorglub": world.ids[Institution]["B"],
        "quetzal": world.ids[Antenne]["A2"],
        "alpha_lyon": world.ids[Antenne]["A1"],
    }


def test_a_referent_cannot_filter_by_another_institution(scope_world, logged_in):
    ids = _ids(scope_world)
    institution_referent = logged_in(scope_world.institution_referent)
    for endpoint in ("need", "match"):
        url = f"/admin/{endpoint}/?flt0_{filter_arg(endpoint, 'Institution')}={ids['zorglub']}"
        page = text(institution_referent.get(url))
        assert REFUSED_FILTER in page, endpoint
        # The filter is ignored: the referent's own list, not the intersection with Zorglub's.
        assert "Alpha Boulangerie" in page and "Quetzal Menuiserie" in page
    antenne_referent = logged_in(scope_world.antenne_referent)
    for endpoint in ("need", "match"):
        url = f"/admin/{endpoint}/?flt0_{filter_arg(endpoint, 'Antenne')}={ids['quetzal']}"
        page = text(antenne_referent.get(url))
        assert REFUSED_FILTER in page, endpoint
        assert "quetzal" not in page.lower().replace(REFUSED_FILTER.lower(), "")
    own = text(antenne_referent.get(f"/admin/need/?flt0_{filter_arg('need', 'Antenne')}={ids['alpha_lyon']}"))
    assert REFUSED_FILTER not in own and "Alpha Boulangerie" in own


def test_the_prepared_export_ignores_a_filter_outside_the_scope(db, scope_world):
    ids = _ids(scope_world)
    # Zorglub's need also went to Alpha Lyon's expert: the filter would single it out.
    from app.models import Expert, Match

    shared = db.session.get(Need, scope_world.ids[Need]["B"])
    db.session.add(Match(need=shared, expert=db.session.get(Expert, scope_world.ids[Expert]["A1"]), status="quo"))
    db.session.commit()
    with transaction():
        export = request_export(
            scope_world.institution_referent,
            "needs",
            "csv",
            {f"flt0_{filter_arg('need', 'Institution')}": str(ids["zorglub"])},
        )
    db.session.expire_all()
    export = db.session.get(Export, export.id)
    assert export.state == "done", export.error
    content = export.content.decode("utf-8-sig")
    # Every need of the referent's scope, as without the refused filter.
    assert "Alpha Boulangerie" in content and "Quetzal Menuiserie" in content
