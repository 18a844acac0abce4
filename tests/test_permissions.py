"""Every back-office endpoint, for every role, against one table of what each role may do.

The walker reads the endpoints Flask actually serves under ``/admin`` (and the views of the
Flask-Admin instance), builds concrete requests for each (list, details and edit with an id in
scope and one outside, creation, deletion, CSV export, each list action, each autocomplete,
each custom endpoint) and checks the answer of the policy for anonymous visitors, staff, a
referent of institution « Alpha Conseil » and a referent of its antenne « Alpha Lyon ».

A view, or an endpoint of a view, that the table below does not describe fails the test with
its name: whoever adds a view says who may use it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import pytest

from app.models import Antenne, Expert, Institution, InstitutionSubject, Match, Need
from tests.helpers import csrf_token_from

ROLES = ("anonymous", "staff", "institution", "antenne")
REFERENTS = ("institution", "antenne")

# What each referent must never read anywhere: the other institution's names (and, for the
# antenne referent, the names of their institution's other antenne).
FORBIDDEN = {"institution": ("zorglub",), "antenne": ("zorglub", "quetzal")}
# The world's sides each role sees (``scope_world``: A1 Alpha Lyon, A2 Quetzal Grenoble, B Zorglub).
SIDES = {"staff": ("A1", "A2", "B"), "institution": ("A1", "A2"), "antenne": ("A1",)}

# Flask-Admin's own endpoints of a model view.
MODEL_ENDPOINTS = {
    "index_view",
    "details_view",
    "edit_view",
    "create_view",
    "delete_view",
    "action_view",
    "export",
    "ajax_lookup",
    "ajax_update",
}


@dataclass(frozen=True)
class Custom:
    """A request to a view's own endpoint and whether each referent may make it."""

    method: str
    path: str  # relative to the view's URL
    institution: bool = False
    antenne: bool = False
    data: dict = field(default_factory=dict)
    # The request names a record that does not exist: whoever may call it gets a 404.
    missing: bool = False


@dataclass(frozen=True)
class Rule:
    """What each referent may do with a view: ``none``, ``read`` (list, details, export),
    ``edit`` (read, and edit records in scope) or ``write`` (also create, delete, actions).
    Staff may do everything the view offers; anonymous visitors are sent to the login page."""

    institution: str
    antenne: str
    custom: dict[str, tuple[Custom, ...]] = field(default_factory=dict)


def _territories(institution: bool, antenne: bool) -> dict[str, tuple[Custom, ...]]:
    return {"territories": (Custom("GET", "territoires?q=lyon", institution, antenne),)}


def _desk(*names_and_requests: tuple[str, Custom]) -> dict[str, tuple[Custom, ...]]:
    return {name: (request,) for name, request in names_and_requests}


# One entry per registered view (its endpoint name). Add yours here with the rule it declares;
# an endpoint a view adds to Flask-Admin's own goes in ``custom`` (staff only unless stated).
EXPECTED: dict[str, Rule] = {
    "admin": Rule("read", "read"),  # the home page: the staff dashboard, or the referent's page
    "institution": Rule("read", "read"),
    "antenne": Rule("write", "edit", custom=_territories(True, True)),
    "expert": Rule("write", "write", custom=_territories(True, True)),
    "institution_subject": Rule("write", "read"),
    # Issue 14: filters of one's scope; the answers an institution takes belong to its offer.
    "routing_filter": Rule("write", "write"),
    "offer_expectation": Rule("write", "read"),
    "subject_question": Rule("none", "none"),
    "theme": Rule("read", "read"),
    "subject": Rule("read", "read"),
    # The request desk's own endpoints on a need are staff's: referents read needs and matches.
    "need": Rule(
        "read",
        "read",
        custom=_desk(
            ("comment_view", Custom("POST", "commenter/", data={"id": "{need}", "body": "Bonjour"})),
            ("expert_suggestions", Custom("GET", "experts/?q=al")),
            ("add_expert_view", Custom("POST", "ajouter-expert/", data={"id": "{need}", "expert": ""})),
            ("reassign_view", Custom("POST", "reattribuer/", data={"id": "{need}", "match_id": "x"})),
            ("star_view", Custom("POST", "suivre/", data={"id": "{need}"})),
            ("resend_view", Custom("POST", "renvoyer/", data={"id": "{need}", "email_id": "x"})),
            ("share_answer_view", Custom("POST", "partager-avis/", data={"id": "{need}"})),
            ("note_view", Custom("POST", "noter/", data={"id": "{need}", "body": ""})),
        ),
    ),
    "match": Rule("read", "read"),
    # The qualification desk (app/admin/requests/solicitations.py): staff's; an unknown request id is a 404.
    "solicitation": Rule(
        "none",
        "none",
        custom=_desk(
            ("expert_choices_view", Custom("GET", "qualifier/experts/?q=al")),
            ("correct_subject_view", Custom("POST", "qualifier/sujet/", data={"id": "0"}, missing=True)),
            ("send_view", Custom("POST", "qualifier/envoyer/", data={"id": "0"}, missing=True)),
            ("cancel_view", Custom("POST", "qualifier/abandonner/", data={"id": "0"}, missing=True)),
            ("note_view", Custom("POST", "qualifier/note/", data={"id": "0"}, missing=True)),
        ),
    ),
    "user": Rule("none", "none"),
    "journal": Rule("none", "none"),
    "outbox": Rule("none", "none"),
    "inbound_messages": Rule("none", "none"),
    "routing": Rule(
        "none",
        "none",
        custom={
            "index": (Custom("GET", ""),),
            "communes": (Custom("GET", "communes?q=lyon"),),
        },
    ),
    # The import, declared "write" in app/admin/imports.py: referents import their own experts
    # (the view limits the file to their institution or antenne).
    "addressbook_import": Rule(
        "write",
        "write",
        custom={
            "index": (Custom("GET", "", True, True), Custom("POST", "", True, True)),
            "confirm": (Custom("POST", "confirmer", True, True, data={"token": "inconnu"}),),
        },
    ),
    # « Couverture du territoire » (declared "read" in app/admin/coverage.py): a referent's own
    # institution or antenne; a département page without a subject is a 404 for everyone.
    "coverage": Rule(
        "read",
        "read",
        custom={
            "index": (Custom("GET", "", True, True),),
            "departement": (Custom("GET", "departement", True, True, missing=True),),
        },
    ),
    # « Relances » (declared "read", app/admin/reminders.py): referents read the baskets of their
    # own experts, mark, annotate and remind them; the early last chance and the failure are staff's.
    "reminders": Rule(
        "read",
        "read",
        custom={
            "index": (Custom("GET", "", True, True),),
            "needs": (Custom("GET", "besoins?panier=refuses", True, True),),
            "experts": (Custom("GET", "experts?panier=2-a-5", True, True),),
            "answers": (Custom("GET", "avis", True, True),),
            "mark_view": (
                Custom("POST", "traiter", True, True, data={"kind": "besoin", "id": "{need}", "panier": "refuses"}),
            ),
            "note_view": (Custom("POST", "noter", True, True, data={"kind": "besoin", "id": "{need}", "body": ""}),),
            "remind_view": (Custom("POST", "relancer", True, True, data={"id": "0"}, missing=True),),
            "last_chance_view": (Custom("POST", "derniere-chance", data={"id": "0"}, missing=True),),
            "failure_view": (Custom("POST", "echec", data={"id": "0"}, missing=True),),
        },
    ),
    # Issue 16: partners and landings are staff's; an institution's referent manages its own
    # API keys (an antenne's referent has none); both referents file requests for a business.
    "partner": Rule("none", "none"),
    "landing": Rule("none", "none"),
    "api_keys": Rule(
        "write",
        "write",
        custom={
            "index": (Custom("GET", "", True, False),),
            "create": (Custom("POST", "creer", True, False),),
            "revoke_key": (Custom("POST", "987654321/revoquer", True, False, missing=True),),
        },
    ),
    "file_request": Rule(
        "write",
        "write",
        custom={"index": (Custom("GET", "", True, True), Custom("POST", "", True, True))},
    ),
    # « Mes exports » (declared "read", app/admin/exports.py): referents open their own exports
    # and ask for new ones (the page names request_view in referent_endpoints).
    "exports": Rule(
        "read",
        "read",
        custom={
            "index": (Custom("GET", "", True, True),),
            "request_view": (Custom("POST", "demander", True, True, data={"kind": "", "format": ""}),),
            "status": (Custom("GET", "987654321/etat", True, True, missing=True),),
            "download": (Custom("GET", "987654321/fichier", True, True, missing=True),),
            # Issue 15: a quarterly report; one outside the person's scope (or unknown) is a 404.
            "report_download": (Custom("GET", "rapports/987654321", True, True, missing=True),),
        },
    ),
}

# Home page: its single endpoint, per view class.
INDEX_ENDPOINTS = {"index"}


def _admin(app):
    return app.extensions["pde_admin"]


def _views(app) -> dict[str, object]:
    return {view.endpoint: view for view in _admin(app)._views}


def _served_endpoints(app) -> dict[str, dict[str, set[str]]]:
    """``{view endpoint: {function name: HTTP methods}}`` for everything served under /admin."""
    served: dict[str, dict[str, set[str]]] = {}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/admin") or rule.endpoint == "admin.static":
            continue
        view, _, name = rule.endpoint.partition(".")
        served.setdefault(view, {}).setdefault(name, set()).update(rule.methods - {"HEAD", "OPTIONS"})
    return served


def _undescribed(app) -> list[str]:
    """Every view and endpoint the table does not describe, as readable lines."""
    problems = []
    views = _views(app)
    served = _served_endpoints(app)
    for endpoint in sorted(set(views) | set(served)):
        if endpoint not in EXPECTED:
            problems.append(f"view « {endpoint} » has no entry in EXPECTED (tests/test_permissions.py)")
            continue
        rule = EXPECTED[endpoint]
        view = views.get(endpoint)
        is_model_view = hasattr(view, "model")
        if endpoint in views and not is_model_view and endpoint != "admin" and not rule.custom:
            problems.append(f"view « {endpoint} » is a custom page: describe its endpoints in EXPECTED")
        for name, methods in sorted(served.get(endpoint, {}).items()):
            if is_model_view and name in MODEL_ENDPOINTS:
                continue
            if endpoint == "admin" and name in INDEX_ENDPOINTS:
                continue
            described = {custom.method for custom in rule.custom.get(name, ())}
            missing = methods - described
            if missing:
                problems.append(
                    f"endpoint « {endpoint}.{name} » ({', '.join(sorted(missing))}) has no request in "
                    f"EXPECTED['{endpoint}'].custom: say which roles may call it"
                )
        if is_model_view and getattr(view, "column_editable_list", None):
            problems.append(f"view « {endpoint} » edits in its list (ajax_update): add a rule for it")
    for endpoint in sorted(set(EXPECTED) - set(views)):
        problems.append(f"EXPECTED names « {endpoint} », which is no longer a registered view")
    return problems


def test_every_registered_view_and_endpoint_has_a_rule(app):
    problems = _undescribed(app)
    assert not problems, "\n".join(problems)


def test_the_table_matches_what_the_views_declare(app):
    """The table is the specification; each view's ``referent_access`` must say the same."""
    wrong = []
    for endpoint, view in _views(app).items():
        rule = EXPECTED.get(endpoint)
        if rule is None:
            continue
        declared = getattr(view, "referent_access", "none")
        widest = "write" if "write" in (rule.institution, rule.antenne) else rule.institution
        if widest == "edit":
            widest = "write"
        if declared != widest:
            wrong.append(f"{endpoint}: the view declares {declared!r}, the table expects {widest!r}")
    assert not wrong, "\n".join(wrong)


# ---------------------------------------------------------------- the walk


@dataclass
class Probe:
    """One request and the answer it must get: ``login`` (sent to the login page), ``allow``
    (200, a redirect after a POST, or 422 for a refused input), ``forbidden`` (403: the policy refuses), ``hidden`` (404,
    or 403: a record outside the scope) or ``missing`` (404: no such record or feature)."""

    label: str
    method: str
    url: str
    expect: str
    data: dict | None = None
    must_show: tuple[str, ...] = ()
    count: int | None = None


def _ids_for(world, model, role: str) -> tuple[list[int], list[int]]:
    """Ids of ``model`` in and out of ``role``'s scope (out: none for staff)."""
    sides = world.ids.get(model)
    if sides is None:
        return [], []
    inside = sorted({sides[side] for side in SIDES.get(role, SIDES["staff"])})
    outside = sorted(set(sides.values()) - set(inside))
    return inside, outside


def _any_id(db, model) -> int | None:
    from sqlalchemy import select

    pk = model.__mapper__.primary_key[0]
    return db.session.scalar(select(pk).order_by(pk).limit(1))


MISSING_ID = 987654321


def _model_probes(db, world, view, level: str, role: str) -> list[Probe]:
    anonymous = role == "anonymous"
    readable = level in ("staff", "read", "edit", "write")
    editable = level in ("staff", "edit", "write")
    writable = level in ("staff", "write")

    def verdict(allowed: bool, otherwise: str = "forbidden") -> str:
        return "login" if anonymous else ("allow" if allowed else otherwise)

    base = view.url.rstrip("/") + "/"
    model = view.model
    tagged = model in world.ids and not anonymous
    if model in world.ids:
        inside, outside = _ids_for(world, model, role)
    else:
        found = _any_id(db, model)
        inside, outside = ([found] if found is not None else []), []
    if role in ("staff", "anonymous"):
        outside = [MISSING_ID]
    show = ("Alpha",) if tagged else ()
    probes = [
        Probe("list", "GET", base, verdict(readable), must_show=show, count=len(inside) if tagged else None),
        Probe("export", "GET", f"{base}export/csv/", verdict(readable), must_show=show),
        Probe("create", "GET", f"{base}new/", verdict(writable)),
    ]
    for in_id in inside[:1]:
        probes += [
            Probe("details (in scope)", "GET", f"{base}details/?id={in_id}", verdict(readable)),
            Probe("edit (in scope)", "GET", f"{base}edit/?id={in_id}", verdict(editable)),
            Probe("delete (in scope)", "POST", f"{base}delete/", verdict(writable), data={"id": str(in_id)}),
        ]
    for out_id in outside:
        out = "login" if anonymous else ("missing" if role == "staff" else "hidden")
        probes.append(Probe(f"details #{out_id} (not theirs)", "GET", f"{base}details/?id={out_id}", out))
        if role != "staff":  # staff asking to edit a missing record: Flask-Admin's redirect
            probes.append(Probe(f"edit #{out_id} (not theirs)", "GET", f"{base}edit/?id={out_id}", out))
    for name, _text in view._actions:
        probes.append(Probe(f"action « {name} »", "POST", f"{base}action/", verdict(writable), data={"action": name}))
    loaders = getattr(view, "_form_ajax_refs", None) or {}
    for name in loaders:
        url = f"{base}ajax/lookup/?name={name}&query="
        show = ("Alpha",) if not anonymous and name == "antenne" else ()
        probes.append(Probe(f"autocomplete « {name} »", "GET", url, verdict(readable), must_show=show))
    if not loaders:
        url = f"{base}ajax/lookup/?name=x&query=a"
        probes.append(
            Probe("autocomplete (none declared)", "GET", url, verdict(False, "missing" if readable else "forbidden"))
        )
    probes.append(
        Probe(
            "in-list edit (none declared)",
            "POST",
            f"{base}ajax/update/",
            verdict(False, "missing" if editable else "forbidden"),
            data={"list_form_pk": "1"},
        )
    )
    return probes


def _probes(app, db, world, role: str) -> list[Probe]:
    probes: list[Probe] = []
    served = _served_endpoints(app)
    for endpoint, view in _views(app).items():
        rule = EXPECTED[endpoint]
        level = role if role in ("staff", "anonymous") else getattr(rule, role)
        base = view.url.rstrip("/") + "/"
        if endpoint == "admin":
            expect = "login" if role == "anonymous" else ("allow" if level != "none" else "forbidden")
            probes.append(Probe("home", "GET", base, expect))
        if getattr(view, "model", None) is not None:
            probes += _model_probes(db, world, view, level, role)
        for name, customs in rule.custom.items():
            assert name in served.get(endpoint, {}), f"EXPECTED['{endpoint}'].custom names « {name} », not served"
            for custom in customs:
                allowed = role == "staff" or getattr(custom, role, False)
                if role == "anonymous":
                    expect = "login"
                elif not allowed:
                    expect = "forbidden"
                else:
                    expect = "missing" if custom.missing else "allow"
                data = {key: value.format(need=world.ids[Need]["A1"]) for key, value in custom.data.items()}
                probes.append(
                    Probe(
                        f"{name} ({custom.method})",
                        custom.method,
                        base + custom.path,
                        expect,
                        data=data if custom.method == "POST" else None,
                    )
                )
    return probes


def _client_for(role: str, world, logged_in):
    user = {
        "anonymous": None,
        "staff": getattr(world, "staff", None),
        "institution": world.institution_referent,
        "antenne": world.antenne_referent,
    }[role]
    return logged_in(user)


def _check(probe: Probe, response, role: str) -> list[str]:
    status = response.status_code
    location = response.headers.get("Location", "")
    where = f"[{role}] {probe.label}: {probe.method} {probe.url} → {status}"
    if probe.expect == "login":
        if status != 302 or "/connexion" not in location:
            return [f"{where}, expected a redirect to the login page"]
        return []
    if status == 302 and "/connexion" in location:
        return [f"{where}, sent to the login page"]
    accepted = {"forbidden": {403}, "hidden": {403, 404}, "missing": {404}, "allow": {200, 302, 303, 422}}[probe.expect]
    if status not in accepted:
        return [f"{where}, expected {probe.expect} ({' or '.join(map(str, sorted(accepted)))})"]
    problems = []
    body = response.get_data(as_text=True)
    lowered = body.lower()
    for token in FORBIDDEN.get(role, ()):
        if token in lowered:
            problems.append(f"{where} shows « {token} », outside the scope")
    if status == 200:
        for token in probe.must_show:
            if token.lower() not in lowered:
                problems.append(f"{where} does not show « {token} »")
        if probe.count is not None and "/export/" not in probe.url:
            found = re.search(r"Liste\s*\((\d+)\)", body)
            shown = int(found.group(1)) if found else 0
            if shown != probe.count:
                problems.append(f"{where} counts {shown} rows, expected {probe.count}")
    return problems


@pytest.mark.parametrize("role", ROLES)
def test_every_endpoint_answers_each_role_as_the_table_says(app, db, scope_world, logged_in, role):
    problems = _undescribed(app)
    assert not problems, "\n".join(problems)
    client = _client_for(role, scope_world, logged_in)
    # A CSRF token of this session, so a POST is judged by the policy rather than refused by the CSRF check.
    token = csrf_token_from(client.get("/connexion" if role == "anonymous" else "/admin/").get_data(as_text=True))
    failures: list[str] = []
    probes = _probes(app, db, scope_world, role)
    assert len(probes) > 50
    for probe in probes:
        if probe.method == "POST":
            response = client.post(probe.url, data={**(probe.data or {}), "csrf_token": token})
        else:
            response = client.get(probe.url)
        failures += _check(probe, response, role)
    assert not failures, "\n".join(failures)


def _filter_options(app, user, view, flt) -> set[str]:
    """The values ``flt`` offers ``user`` (read in a request of theirs, as the list page does)."""
    from flask_login import login_user

    with app.test_request_context():
        login_user(user)
        return {str(key) for key, _label in flt.get_options(view)}


@pytest.mark.parametrize("role", REFERENTS)
def test_every_filter_refuses_a_value_outside_the_referents_scope(app, db, scope_world, logged_in, role):
    """Finding 3 of the security review, over every list: for each filter with options, a value
    staff are offered but the referent is not (another institution, a sibling antenne) is
    refused with Flask-Admin's message and the list stays the referent's own, in the list and
    in its immediate export."""
    referent_user = scope_world.institution_referent if role == "institution" else scope_world.antenne_referent
    referent = logged_in(referent_user)
    probed, problems = 0, []
    for view in _views(app).values():
        if getattr(view, "model", None) is None or not (view._filter_args or {}):
            continue
        if referent.get(f"{view.url}/").status_code != 200:
            continue  # a list the referent cannot open at all
        for arg, (_index, flt) in view._filter_args.items():
            if flt.options is None:
                continue
            outside = _filter_options(app, scope_world.staff, view, flt) - _filter_options(
                app, referent_user, view, flt
            )
            for value in sorted(outside)[:3]:
                probed += 1
                page = referent.get(f"{view.url}/?flt0_{arg}={value}")
                if "Valeur de filtre non valide" not in page.get_data(as_text=True):
                    problems.append(f"{view.endpoint} « {flt.name} » = {value}: accepted")
                exported = referent.get(f"{view.url}/export/csv/?flt0_{arg}={value}").get_data(as_text=True)
                for token in FORBIDDEN[role]:
                    if token in exported.lower():
                        problems.append(f"{view.endpoint} « {flt.name} » = {value}: export shows {token}")
    assert probed >= 4, probed
    assert problems == []


def test_staff_see_every_institution_so_the_leak_checks_can_fail(scope_world, logged_in):
    """The referents' checks look for « zorglub » and « quetzal »: staff must meet both."""
    client = logged_in(scope_world.staff)
    expert_list = client.get("/admin/expert/").get_data(as_text=True)
    assert "Zoé Zorglub" in expert_list and "Quentin Quetzal" in expert_list
    export = client.get("/admin/antenne/export/csv/").get_data(as_text=True)
    assert "Zorglub Paris" in export and "Quetzal Grenoble" in export
    lookup = client.get("/admin/expert/ajax/lookup/?name=antenne&query=").get_json()
    assert {"Alpha Lyon", "Quetzal Grenoble", "Zorglub Paris"} <= {text.split(" — ")[0] for _id, text in lookup}


@pytest.mark.parametrize(
    ("role", "expected"),
    [
        ("institution", {Institution: 1, Antenne: 2, Expert: 2, InstitutionSubject: 1, Need: 2, Match: 2}),
        ("antenne", {Institution: 1, Antenne: 1, Expert: 1, InstitutionSubject: 1, Need: 1, Match: 1}),
    ],
)
def test_the_referents_home_counts_only_their_scope(scope_world, logged_in, role, expected):
    client = _client_for(role, scope_world, logged_in)
    page = client.get("/admin/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert "Espace partenaire" in html and "Demandes à qualifier" not in html
    figures = dict(re.findall(r'data-figure="([a-z-]+)">(\d+)<', html))
    assert figures == {
        "antennes": str(expected[Antenne]),
        "experts": str(expected[Expert]),
        "needs": str(expected[Need]),
        "waiting-matches": str(expected[Match]),
    }
    for hidden in ("Sollicitations", "Utilisateurs", "Journal", "Courriels", "Qui recevrait"):
        assert hidden not in html, f"the page offers « {hidden} » to a referent"
    for link in ("/admin/institution/", "/admin/institution_subject/", "/admin/subject/"):
        assert f'href="{link}"' in html
